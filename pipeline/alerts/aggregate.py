"""Hourly aggregates per topic, per source, per company and overall, recomputed idempotently in SQL."""

from __future__ import annotations

from datetime import datetime

from psycopg2.extensions import connection

from pipeline import windows

_RECOMPUTE = """
WITH s AS (
    SELECT date_trunc('hour', a.story_time) AS hour,
           f.name AS source, sc.topic,
           (sc.sentiment = 'negative')::int AS neg,
           sc.p_positive - sc.p_negative AS sent
    FROM scores sc
    JOIN articles a ON a.id = sc.article_id
    JOIN feeds f ON f.id = a.feed_id
    WHERE sc.model_version = %(model)s
      AND a.story_time >= %(start)s
      AND a.story_time < %(end)s
)
INSERT INTO hourly_stats (hour, dimension, key, model_version, stories, negatives, neg_share, mean_sentiment)
SELECT hour, 'overall', 'all', %(model)s, count(*), sum(neg), avg(neg), avg(sent) FROM s GROUP BY hour
UNION ALL
SELECT hour, 'topic', topic, %(model)s, count(*), sum(neg), avg(neg), avg(sent) FROM s GROUP BY hour, topic
UNION ALL
SELECT hour, 'source', source, %(model)s, count(*), sum(neg), avg(neg), avg(sent) FROM s GROUP BY hour, source
UNION ALL
SELECT date_trunc('hour', a.story_time), 'entity', es.entity_id, %(model)s, count(*),
       sum((es.sentiment = 'negative')::int), avg((es.sentiment = 'negative')::int), avg(es.p_positive - es.p_negative)
FROM entity_scores es JOIN articles a ON a.id = es.article_id
WHERE es.model_version = %(model)s AND a.story_time >= %(start)s AND a.story_time < %(end)s
GROUP BY 1, es.entity_id
"""


def recompute(conn: connection, model_version: str, start: datetime, end: datetime) -> int:
    """Rebuild the stats of every hour in [start, end) for one model; returns rows written.

    Delete-then-insert in one transaction: re-running any hour gives the same
    rows, and hours whose stories were late or re-scored are corrected.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('finsent.aggregate'), hashtext(%s))", (model_version,))
        cur.execute(
            "DELETE FROM hourly_stats WHERE model_version = %s AND hour >= %s AND hour < %s",
            (model_version, start, end),
        )
        cur.execute(_RECOMPUTE, {"model": model_version, "start": start, "end": end})
        written = cur.rowcount
    conn.commit()
    return written


def recompute_history(conn: connection, model_version: str) -> tuple[int, tuple[datetime, datetime] | None]:
    """Rebuild the stats of every hour that holds a story; returns (rows, hour span or None)."""
    with conn.cursor() as cur:
        cur.execute("SELECT min(story_time), max(story_time) FROM articles")
        lo, hi = cur.fetchone()
    conn.commit()
    if lo is None:
        return 0, None
    span = (windows.floor_hour(lo), windows.floor_hour(hi) + windows.HOUR)
    return recompute(conn, model_version, *span), span
