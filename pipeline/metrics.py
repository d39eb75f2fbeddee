"""Prometheus metrics of the pipeline, read from PostgreSQL (the system of record), for scraping.

Gauges rather than in-process counters: tasks run in short-lived Airflow
worker processes, so every figure is recomputed from the database, where it
is true whichever worker did the work. Two ways out:

* ``python -m pipeline metrics --textfile /var/lib/node_exporter/finsent.prom``
  (node_exporter's textfile collector; the hourly DAG's last task writes it
  when ``FINSENT_METRICS_TEXTFILE`` is set);
* ``python -m pipeline metrics --serve 9464`` (``/metrics`` on 127.0.0.1).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest, write_to_textfile
from psycopg2.extensions import connection

from pipeline import fast

log = logging.getLogger(__name__)

_QUERIES = {
    "stories": "SELECT f.name, count(a.id) FROM feeds f LEFT JOIN articles a ON a.feed_id = f.id GROUP BY f.name",
    "stories_24h": "SELECT f.name, count(a.id) FROM feeds f LEFT JOIN articles a ON a.feed_id = f.id "
    "AND a.fetched_at > now() - interval '24 hours' GROUP BY f.name",
    "feed_failing": "SELECT name, (last_status = 'error')::int, consecutive_failures FROM feeds",
    "last_run": "SELECT extract(epoch FROM finished_at), feeds_ok, feeds_failed, items_new FROM ingest_runs "
    "ORDER BY id DESC LIMIT 1",
    "active": "SELECT version FROM models WHERE is_active",
    "alerts": "SELECT dimension, severity, status, count(*), count(notified_at) FROM alerts "
    "WHERE model_version = %(m)s GROUP BY 1, 2, 3",
    "unsent": "SELECT count(*), coalesce(max(notify_attempts), 0) FROM alerts WHERE model_version = %(m)s "
    "AND status <> 'resolved' AND notified_at IS NULL",
    "deliveries": "SELECT d.channel, d.status, count(*), coalesce(sum(d.attempts), 0) FROM alert_deliveries d "
    "JOIN alerts al ON al.id = d.alert_id WHERE al.model_version = %(m)s GROUP BY 1, 2",
    "digests": "SELECT channel, status, count(*) FROM digest_deliveries GROUP BY 1, 2",
}


def collect(conn: connection) -> CollectorRegistry:
    """A fresh registry holding every figure, read in one read-only pass."""
    reg = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"finsent_{name}", doc, labels, registry=reg)

    stored = gauge("stories_stored", "Stories stored, per feed (all time).", ("feed",))
    recent = gauge("stories_fetched_24h", "Stories stored in the last 24 hours, per feed.", ("feed",))
    failing = gauge("feed_failing", "1 when the feed's last fetch failed.", ("feed",))
    streak = gauge("feed_consecutive_failures", "Failed fetches in a row, per feed.", ("feed",))
    last_run = gauge("ingest_last_run_timestamp_seconds", "When the last ingestion pass finished (Unix time).")
    last_new = gauge("ingest_last_run_new_stories", "New stories stored by the last ingestion pass.")
    last_failed = gauge("ingest_last_run_feeds_failed", "Feeds that failed in the last ingestion pass.")
    backlog = gauge("unscored_backlog", "Stored stories the active model has not scored.")
    oldest = gauge(
        "oldest_unscored_story_age_seconds", "How long the oldest unscored story has waited (fast-lane lag)."
    )
    polled = gauge("feed_last_poll_timestamp_seconds", "When each feed was last polled (Unix time).", ("feed",))
    age = gauge("newest_scored_story_age_seconds", "Age of the newest story the active model has scored.")
    rate = gauge("classify_stories_per_second", "Scoring throughput over the last hour of scoring (stories/s).")
    alerts = gauge(
        "alerts", "Alerts of the active model by dimension, severity and status.", ("dimension", "severity", "status")
    )
    sent = gauge(
        "alerts_notified",
        "Alerts delivered on every routed channel, by dimension, severity and status.",
        ("dimension", "severity", "status"),
    )
    deliveries = gauge(
        "alert_deliveries", "Alert deliveries by channel and status (sent, failed, pending).", ("channel", "status")
    )
    delivery_attempts = gauge(
        "alert_delivery_attempts", "Delivery attempts by channel and the deliveries' status.", ("channel", "status")
    )
    digests = gauge("digest_deliveries", "Daily digests by channel and status.", ("channel", "status"))
    unsent = gauge("alerts_unsent_live", "Live alerts not yet delivered on every routed channel.")
    attempts = gauge("alerts_max_notify_attempts", "Most delivery attempts of a live, undelivered alert.")
    with conn.cursor() as cur:
        cur.execute(_QUERIES["stories"])
        for feed, n in cur.fetchall():
            stored.labels(feed).set(n)
        cur.execute(_QUERIES["stories_24h"])
        for feed, n in cur.fetchall():
            recent.labels(feed).set(n)
        cur.execute(_QUERIES["feed_failing"])
        for feed, bad, n in cur.fetchall():
            failing.labels(feed).set(bad)
            streak.labels(feed).set(n or 0)
        cur.execute(_QUERIES["last_run"])
        row = cur.fetchone()
        if row:
            last_run.set(float(row[0]))
            last_new.set(row[3])
            last_failed.set(row[2])
        cur.execute(_QUERIES["active"])
        row = cur.fetchone()
        if row:
            model = row[0]
            cur.execute(
                "SELECT count(*) FROM articles a WHERE NOT EXISTS "
                "(SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.model_version = %s)",
                (model,),
            )
            backlog.set(cur.fetchone()[0])
            cur.execute(fast.OLDEST_UNSCORED, (model,))
            since = cur.fetchone()[0]
            oldest.set((datetime.now(UTC) - since).total_seconds() if since else 0.0)
            cur.execute(
                "SELECT extract(epoch FROM now() - max(a.story_time)), "
                "count(*) FILTER (WHERE s.scored_at > (SELECT max(scored_at) FROM scores WHERE model_version = %(m)s)"
                " - interval '1 hour'), extract(epoch FROM max(s.scored_at) - min(s.scored_at) FILTER "
                "(WHERE s.scored_at > (SELECT max(scored_at) FROM scores WHERE model_version = %(m)s)"
                " - interval '1 hour')) FROM scores s JOIN articles a ON a.id = s.article_id WHERE s.model_version = %(m)s",
                {"m": model},
            )
            a, n, secs = cur.fetchone()
            if a is not None:
                age.set(float(a))
            if n and secs:
                rate.set(n / float(secs))
            cur.execute(_QUERIES["alerts"], {"m": model})
            for dim, sev, status, n, k in cur.fetchall():
                alerts.labels(dim, sev, status).set(n)
                sent.labels(dim, sev, status).set(k)
            cur.execute(_QUERIES["deliveries"], {"m": model})
            for channel, status, n, tries in cur.fetchall():
                deliveries.labels(channel, status).set(n)
                delivery_attempts.labels(channel, status).set(tries)
            cur.execute(_QUERIES["unsent"], {"m": model})
            n, most = cur.fetchone()
            unsent.set(n)
            attempts.set(most)
        cur.execute("SELECT name, extract(epoch FROM last_fetched_at) FROM feeds WHERE last_fetched_at IS NOT NULL")
        for feed, at in cur.fetchall():
            polled.labels(feed).set(float(at))
        cur.execute(_QUERIES["digests"])
        for channel, status, n in cur.fetchall():
            digests.labels(channel, status).set(n)
    conn.commit()
    return reg


def write_textfile(conn: connection, path: str | Path) -> Path:
    """Write atomically (node_exporter never reads half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), collect(conn))
    return path


def render(conn: connection) -> bytes:
    return generate_latest(collect(conn))
