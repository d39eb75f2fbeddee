"""Faults: a killed classify worker, PostgreSQL restarts mid-ingest, mid-classify and mid-refresh, runs at once."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from pipeline import config, db, tasks, windows
from pipeline.classify.release import registry
from pipeline.ingest.model import FeedSpec
from pipeline.ingest.run import ingest
from tests.helpers import query, seed_articles


def promote(url, model_dir):
    conn = db.connect(url)
    version = registry.register(conn, model_dir)
    registry.promote(conn, version)
    conn.close()
    return version


def test_classify_worker_killed_mid_batch_leaves_the_rest_for_the_next_run(db_url, tiny_models):
    total = 12000
    seed_articles(db_url, [f"Lender {i} cuts guidance as defaults rise" for i in range(total)])
    promote(db_url, tiny_models[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "classify", "--chunk-size", "100", "--batch-size", "50"],
        cwd=config.REPO_ROOT,
        env={**os.environ, "DATABASE_URL": db_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = query(db_url, "SELECT count(*) FROM scores")[0][0]
        if done >= 300:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no clean-up, no final commit
    proc.wait()
    at_kill = query(db_url, "SELECT count(*) FROM scores")[0][0]
    assert 0 < at_kill < total, f"worker scored {at_kill} of {total} before the kill: not mid-batch"
    assert at_kill % 100 == 0  # only whole committed chunks survive

    rest = tasks.classify()  # the next run
    assert rest["scored"] == total - at_kill and rest["remaining"] == 0
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id) FROM scores") == [(total, total)]


def _postmaster_pid(datadir: Path) -> int:
    return int((datadir / "postmaster.pid").read_text().splitlines()[0])


@pytest.mark.skipif(
    os.environ.get("FINSENT_TEST_DATABASE_URL") is not None, reason="needs the embedded server to restart"
)
def test_postgres_restart_mid_run_then_retry_loses_and_duplicates_nothing(db_url, pg_server_url, feed_server):
    datadir = Path(psycopg2.extensions.parse_dsn(pg_server_url)["host"])
    names = ["cnbc_finance_2026-08-14.xml", "coindesk_2026-08-11.xml", "bbc_business_2026-08-14.xml"]
    specs = [FeedSpec(name=n, url=feed_server.url("real/" + n)) for n in names]
    # a feed that answers after the restart: its stories must be stored after the outage
    specs.append(FeedSpec(name="late", url=feed_server.url("-/synthetic/7.xml?items=40&delay=3")))
    errors = []

    def run():
        try:
            ingest(specs=specs, database_url=db_url)
        except Exception as exc:  # what makes the Airflow task fail and retry
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.2)
    os.kill(_postmaster_pid(datadir), signal.SIGINT)  # fast shutdown: every connection is cut
    for _ in range(100):
        if not (datadir / "postmaster.pid").exists():
            break
        time.sleep(0.05)
    db.start_embedded(datadir)  # back up before the late feed answers
    worker.join(timeout=60)
    assert errors and isinstance(errors[0], psycopg2.Error), errors

    retry = ingest(specs=specs, database_url=db_url)  # the task's retry
    assert retry["totals"]["feeds_failed"] == 0
    expected = 30 + 25 + 50 + 40
    assert query(db_url, "SELECT count(*), count(DISTINCT canonical_url) FROM articles") == [(expected, expected)]
    # validators were saved only with their stories: no feed is stuck as "not modified" with items missing
    per_feed = dict(
        query(
            db_url, "SELECT f.name, count(a.id) FROM feeds f LEFT JOIN articles a ON a.feed_id = f.id GROUP BY f.name"
        )
    )
    assert per_feed == {names[0]: 30, names[1]: 25, names[2]: 50, "late": 40}


def test_the_same_hour_twice_at_once_stores_scores_and_alerts_once(
    db_url, feed_server, tmp_path, tiny_models, monkeypatch
):
    monkeypatch.setenv("FINSENT_CONF_FILE_ROOTS", str(tmp_path))  # the conf's feeds_file lies there
    registry_file = tmp_path / "feeds.yaml"
    registry_file.write_text(
        "feeds:\n"
        + "".join(
            f"  - {{name: {n}, url: '{feed_server.url('real/' + n)}'}}\n"
            for n in [
                "cnbc_finance_2026-08-14.xml",
                "googlenews_reuters_2026-08-11.xml",
                "yahoo_finance_news_2026-08-14.xml",
            ]
        )
    )
    feed_server.conditional = False
    promote(db_url, tiny_models[0])
    start, end = windows.run_window(datetime.now(UTC))
    window = {"start": start.isoformat(), "end": end.isoformat()}
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            out = {
                "ingest": tasks.ingest(
                    window, {"feeds_file": str(registry_file)}, run_key=threading.current_thread().name
                )
            }
            out["classify"] = tasks.classify()
            out["detect"] = tasks.detect(window)
            results.append(out)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, name=f"run-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    distinct = 30 + 100 + 48
    assert query(db_url, "SELECT count(*) FROM articles")[0][0] == distinct
    # which run stores each feed first is a race; together they store each story once
    assert sum(r["ingest"]["live"]["new"] for r in results) == distinct
    assert sum(r["classify"]["scored"] for r in results) == distinct
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id) FROM scores") == [(distinct, distinct)]
    assert query(db_url, "SELECT count(*) FROM ingest_runs")[0][0] == 2
    keys = query(db_url, "SELECT count(*), count(DISTINCT (hour, dimension, key)) FROM hourly_stats")[0]
    assert keys[0] == keys[1]


def _restart_postgres(datadir: Path) -> None:
    """Fast shutdown (every connection cut), then start again: what a PostgreSQL restart does to a run."""
    os.kill(_postmaster_pid(datadir), signal.SIGINT)
    for _ in range(200):
        if not (datadir / "postmaster.pid").exists():
            break
        time.sleep(0.05)
    db.start_embedded(datadir)


def _in_thread(fn) -> tuple[threading.Thread, list]:
    errors: list = []

    def run():
        try:
            fn()
        except Exception as exc:  # what makes the Airflow task fail, so that Airflow retries it
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, errors


@pytest.mark.skipif(
    os.environ.get("FINSENT_TEST_DATABASE_URL") is not None, reason="needs the embedded server to restart"
)
def test_postgres_restart_mid_classify_fails_the_task_and_the_retry_scores_each_story_once(
    db_url, pg_server_url, tiny_models
):
    from pipeline.classify.score import score_pending

    datadir = Path(psycopg2.extensions.parse_dsn(pg_server_url)["host"])
    total = 6000
    seed_articles(db_url, [f"Lender {i} cuts guidance as defaults rise" for i in range(total)])
    promote(db_url, tiny_models[0])
    worker, errors = _in_thread(lambda: score_pending(db_url, chunk_size=100, batch_size=50))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and query(db_url, "SELECT count(*) FROM scores")[0][0] < 300:
        time.sleep(0.02)
    _restart_postgres(datadir)
    worker.join(timeout=120)
    assert errors and isinstance(errors[0], psycopg2.Error), errors
    at_fault = query(db_url, "SELECT count(*) FROM scores")[0][0]
    assert 0 < at_fault < total and at_fault % 100 == 0  # whole chunks only: nothing half-written
    retry = tasks.classify()
    assert retry["scored"] == total - at_fault and retry["remaining"] == 0
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id) FROM scores") == [(total, total)]


@pytest.mark.skipif(
    os.environ.get("FINSENT_TEST_DATABASE_URL") is not None, reason="needs the embedded server to restart"
)
def test_postgres_restart_mid_alert_refresh_then_retry_raises_each_alert_once(db_url, pg_server_url):
    from tests.seeding import H, seed, week_of_normal, window

    datadir = Path(psycopg2.extensions.parse_dsn(pg_server_url)["host"])
    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30), (H, "Earnings", 50, 10)])
    blocker = psycopg2.connect(db_url)  # holds the alerts table, so the refresh is caught mid-way for sure
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")
    worker, errors = _in_thread(lambda: tasks.detect(window(H)))
    deadline = time.monotonic() + 60
    waiting = []
    while time.monotonic() < deadline and not waiting:
        waiting = query(
            db_url, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        time.sleep(0.05)
    assert waiting, "the refresh never reached the alerts table"
    _restart_postgres(datadir)
    worker.join(timeout=60)
    blocker.close()
    assert errors and isinstance(errors[0], psycopg2.Error), errors
    assert query(db_url, "SELECT count(*) FROM alerts")[0][0] == 0  # the cut transaction left nothing
    retry = tasks.detect(window(H))
    assert len(retry["opened"]) == 2
    again = tasks.detect(window(H))  # and a second retry changes nothing
    assert again["opened"] == [] and query(db_url, "SELECT count(*) FROM alerts")[0][0] == 2
    keys = query(db_url, "SELECT count(*), count(DISTINCT (hour, dimension, key, model_version)) FROM hourly_stats")
    assert keys[0][0] == keys[0][1] > 0


def test_two_classify_runs_at_once_score_each_story_once(db_url, tiny_models):
    total = 3000
    seed_articles(db_url, [f"Refiner {i} warns on margins" for i in range(total)])
    promote(db_url, tiny_models[0])
    results: list = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        results.append(tasks.classify())

    pairs = [_in_thread(run) for _ in range(2)]
    for t, _ in pairs:
        t.join(timeout=300)
    assert [e for _, errs in pairs for e in errs] == []
    assert sum(r["scored"] for r in results) == total  # the two runs split the work; neither scored a story twice
    assert query(db_url, "SELECT count(*), count(DISTINCT article_id) FROM scores") == [(total, total)]
