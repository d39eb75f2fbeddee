"""The fast lane: polls only what is due (Retry-After, min_interval_s), judges the hour under way without
resolving anything, and shares every key with the hourly lane (one alert, one email)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline import fast, tasks
from pipeline.ingest import registry, store
from pipeline.ingest.model import FeedSpec
from pipeline.ingest.run import ingest, is_due
from tests.helpers import SMTPServer, query
from tests.seeding import H, seed, week_of_normal, window

NOW = datetime(2026, 8, 10, 14, 30, tzinfo=UTC)


def test_is_due_honours_retry_after_and_the_minimum_interval():
    spec = FeedSpec(name="a", url="http://x")
    assert is_due(spec, {}, NOW, 120)
    assert not is_due(spec, {"last_fetched_at": NOW - timedelta(seconds=60)}, NOW, 120)
    assert is_due(spec, {"last_fetched_at": NOW - timedelta(seconds=60)}, NOW, None)  # hourly lane: no interval
    assert is_due(
        FeedSpec(name="a", url="http://x", min_interval_s=30),
        {"last_fetched_at": NOW - timedelta(seconds=60)},
        NOW,
        120,
    )
    held = {"retry_after_until": NOW + timedelta(minutes=5)}
    assert not is_due(spec, held, NOW, None) and not is_due(spec, held, NOW, 120)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("120", NOW + timedelta(seconds=120)),
        ("Mon, 10 Aug 2026 15:00:00 GMT", datetime(2026, 8, 10, 15, tzinfo=UTC)),
        ("Mon, 10 Aug 2026 13:00:00 GMT", NOW),  # in the past: now
        ("99999999999", NOW + timedelta(days=1)),  # capped at a day
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_parsing(value, want):
    assert store.retry_after({"retry-after": value}, NOW, cap_s=86400) == want


def test_min_interval_is_a_registry_key_with_bounds(tmp_path):
    f = tmp_path / "feeds.yaml"
    f.write_text(
        "feeds:\n  - {name: a, url: 'http://127.0.0.1/a', min_interval_s: 300}\n  - {name: b, url: 'http://127.0.0.1/b', min_interval_s: -1}\n"
    )
    reg = registry.read(f)
    assert [s.min_interval_s for s in reg.specs] == [300.0]
    assert "min_interval_s" in reg.invalid[0].error


def test_fast_poll_skips_feeds_not_due_and_a_publisher_that_asked_to_wait(db_url, feed_server, tmp_path, monkeypatch):
    busy = feed_server.add("busy.xml", b"slow down", 429, [("Retry-After", "600"), ("Content-Type", "text/plain")])
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        "feeds:\n"
        f"  - {{name: cnbc, url: '{feed_server.url('real/cnbc_finance_2026-08-14.xml')}', min_interval_s: 3600}}\n"
        f"  - {{name: busy, url: '{busy}'}}\n"
    )
    first = fast.poll(str(feeds))
    assert first["not_due"] == [] and first["new"] > 0 and first["failed_feeds"] == ["busy"]
    until = query(db_url, "SELECT retry_after_until - last_fetched_at FROM feeds WHERE name = 'busy'")[0][0]
    assert timedelta(seconds=590) <= until <= timedelta(seconds=610)
    second = fast.poll(str(feeds))
    assert second["not_due"] == ["busy", "cnbc"] and second["feeds"] == 0
    # the hourly lane ignores the fast lane's interval but not the publisher's Retry-After
    hourly = ingest(feeds, database_url=db_url)
    assert hourly["not_due"] == ["busy"] and [f["name"] for f in hourly["feeds"]] == ["cnbc"]
    assert hourly["totals"]["new"] == 0  # conditional GET / dedupe: nothing twice
    requests_to_busy = [p for p, _ in feed_server.requests if "busy" in p]
    assert len(requests_to_busy) == 1


def test_partial_hour_opens_the_alert_the_hourly_run_then_extends_and_nothing_resolves_early(db_url, smtp_port):
    from pipeline import db
    from pipeline.alerts.refresh import refresh

    seed(db_url, week_of_normal(H))
    with db.connect(db_url) as conn:  # the hourly lane has built the week's stats
        refresh(conn, (H - timedelta(days=7), H), judge=False)
    seed(db_url, [(H, "Energy | Oil", 20, 14)])  # 20 minutes into a bad hour
    judged = fast.judge(now=H + timedelta(minutes=20))
    assert judged["opened"], judged
    opened = query(db_url, "SELECT id, dimension, key FROM alerts ORDER BY id")
    with SMTPServer(smtp_port) as smtp:
        tasks.notify(window(H), {}, now=H + timedelta(minutes=21))  # the fast lane's notify, minutes in
        emailed = len(smtp.messages)
        assert emailed >= len(opened)
        again = fast.judge(now=H + timedelta(minutes=22))  # the next poll: same alert, nothing new
        assert again["opened"] == [] and query(db_url, "SELECT id, dimension, key FROM alerts ORDER BY id") == opened
        seed(db_url, [(H, "Energy | Oil", 30, 18)])  # the rest of the hour lands; the hourly run rebuilds it whole
        hourly = tasks.detect(window(H))
        assert hourly["opened"] == [] and query(db_url, "SELECT id, dimension, key FROM alerts ORDER BY id") == opened
        tasks.notify(window(H), {}, now=H + timedelta(hours=1, minutes=3))  # the hourly run's notify
        assert len(smtp.messages) == emailed  # each alert emailed once, whichever lane saw it first
    # a calm first minutes of the next hour resolve nothing in the fast lane
    seed(db_url, [(H + timedelta(hours=1), "Energy | Oil", 3, 0)])
    calm = fast.judge(now=H + timedelta(hours=1, minutes=3))
    assert calm["resolved"] == []
    assert {s for (s,) in query(db_url, "SELECT status FROM alerts")} == {"open"}
    assert query(db_url, "SELECT count(*) FROM alerts WHERE kind = 'regime'")[0][0] == 0  # slow view: hourly only


def test_lag_reports_the_oldest_unscored_story_and_each_feeds_last_poll(db_url):
    from pipeline import db

    seed(db_url, [(H, "Earnings", 3, 0)])
    with db.connect(db_url) as conn:
        conn.cursor().execute(
            "INSERT INTO articles (feed_id, guid, url, title, fetched_at, content_hash, title_hash) "
            "SELECT id, 'u1', 'https://news.example/u1', 'unscored', now() - interval '5 minutes', 'c', 't' FROM feeds LIMIT 1"
        )
        conn.commit()
        out = fast.lag(conn)
    assert 290 <= out["oldest_unscored_age_s"] <= 400
    assert [f["feed"] for f in out["feeds"]] == ["wire"]
