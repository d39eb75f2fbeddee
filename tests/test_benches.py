"""Every bench/ script in its tiny size, so a schema or API change breaks a test, not a bench nobody ran.

Figures are not judged here (no wall-clock thresholds in tests); each run must finish and print the rows
its full size prints.
"""

from __future__ import annotations

import pytest


@pytest.fixture()
def on_test_db(db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


def test_bench_ingest_tiny(on_test_db, capsys):
    from bench import ingest

    ingest.main(["--feeds", "2", "--items", "5"])
    out = capsys.readouterr().out
    assert "finsent: full pass, concurrency 8" in out and "re-run, all duplicates" in out


def test_bench_dashboard_tiny(on_test_db, capsys):
    from bench import dashboard

    dashboard.main(["--stories", "3000", "--days", "3"])
    out = capsys.readouterr().out
    for page in dashboard.PAGES:
        assert page in out
    assert "baseline: load scores+articles into pandas" in out


def test_bench_alerts_tiny(on_test_db, capsys):
    from bench import alerts

    alerts.main(["--volumes", "10", "--sizes", "3", "--topics", "2", "--weeks", "1"])
    out = capsys.readouterr().out
    assert "baseline (same run): single-hour detector" in out


def test_bench_classify_tiny(tiny_models, capsys):
    from bench import classify

    classify.main(["--model", str(tiny_models[1]), "--n", "32", "--batch-sizes", "16", "--precisions", "fp32", "bf16"])
    out = capsys.readouterr().out
    assert "fp32" in out and "bf16" in out


def test_bench_entities_tiny(capsys):
    from bench import entities

    assert entities.main(["--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "finentity" in out and "padded catalogue" in out and "entity sentiment" in out


def test_bench_events_tiny(on_test_db, tiny_models, capsys):
    from bench import events

    report = events.main(["--tiny", "--model", str(tiny_models[0]), "--database", "bench_events_tiny"])
    assert set(report["rule_sets"]) == set(events.RULE_SETS)
    assert report["imported"]["stored"] > 500 and report["rule_sets"]
    assert all(r["calm_weeks"] >= 1 for r in report["rule_sets"].values())


def test_bench_peers_tiny(tiny_models, tmp_path, capsys):
    import shutil

    from bench import peers

    model = shutil.copytree(tiny_models[0], tmp_path / "model")  # the bench rewrites the model's report
    peers.main(["--model", str(model), "--peers", "tfidf_lr"])
    assert "tfidf_lr" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_hourly_tiny(on_test_db, tiny_models, capsys):
    from bench import hourly

    hourly.main(["--stories", "20", "--per-feed", "10", "--model", str(tiny_models[0])])
    out = capsys.readouterr().out
    assert "classify" in out and "ingest" in out


def test_bench_latency_stream_server_publishes_on_time_and_answers_304():
    """The latency bench's feed server (the whole bench runs real Airflow services for 40 minutes: not here)."""
    import random
    from datetime import UTC, datetime, timedelta

    import requests

    from bench.latency import StreamServer, plan_stream

    now = datetime.now(UTC)
    stream = plan_stream(
        now - timedelta(minutes=3),
        6,
        2,
        [f"calm {i}" for i in range(20)],
        [f"bad {i}" for i in range(40)],
        random.Random(1),
    )
    assert sum(g.startswith("burst-") for _, g, _, _ in stream) == 12  # 3 a minute for the minutes 2-5
    server = StreamServer(stream)
    try:
        first = requests.get(server.url(0), timeout=5)
        due = [t for p, _, t, f in stream if f == 0 and p <= datetime.now(UTC)]
        assert first.status_code == 200 and all(t in first.text for t in due)
        assert not any(
            t in first.text for p, _, t, f in stream if f == 0 and p > datetime.now(UTC) + timedelta(seconds=5)
        )
        again = requests.get(server.url(0), headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
        assert again.status_code == 304 and server.not_modified[0] == 1 and server.polls[0] == 2
    finally:
        server.close()
