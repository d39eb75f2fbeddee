"""Prometheus metrics from a seeded real PostgreSQL: the textfile, the CLI and the hourly notify task."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline import db, tasks
from pipeline.cli import main as cli
from tests.helpers import SMTPServer, query
from tests.seeding import H, seed, week_of_normal, window


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_reflect_the_database(db_url, tmp_path, smtp_port, monkeypatch):
    from pipeline import metrics

    seed(db_url, week_of_normal(H) + [(H, "Energy | Oil", 50, 30)])
    tasks.detect(window(H))
    conn = db.connect(db_url)
    try:
        got = samples(metrics.render(conn).decode())
    finally:
        conn.close()
    total = query(db_url, "SELECT count(*) FROM articles")[0][0]
    assert got[("finsent_stories_stored", (("feed", "wire"),))] == total
    assert got[("finsent_unscored_backlog", ())] == 0
    assert got[("finsent_alerts", (("dimension", "topic"), ("severity", "critical"), ("status", "open")))] == 1
    assert got[("finsent_alerts_unsent_live", ())] == 2  # the topic and the overall stream, not yet emailed
    assert got[("finsent_feed_failing", (("feed", "wire"),))] == 0
    assert got[("finsent_newest_scored_story_age_seconds", ())] > 0

    # the hourly notify task refreshes the textfile after delivery
    prom = tmp_path / "node_exporter" / "finsent.prom"
    monkeypatch.setenv("FINSENT_METRICS_TEXTFILE", str(prom))
    with SMTPServer(smtp_port):
        result = tasks.notify(window(H), {"notify": True})
    assert len(result["sent"]) == 2, result
    after = samples(prom.read_text())
    assert after[("finsent_alerts_unsent_live", ())] == 0
    assert after[("finsent_alert_deliveries", (("channel", "email"), ("status", "sent")))] == 2
    assert (
        after[("finsent_alerts_notified", (("dimension", "topic"), ("severity", "critical"), ("status", "open")))] == 1
    )

    out = tmp_path / "cli.prom"
    assert cli(["metrics", "--textfile", str(out)]) == 0
    assert samples(out.read_text())[("finsent_alerts_unsent_live", ())] == 0
