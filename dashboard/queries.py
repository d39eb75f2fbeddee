"""Every query the dashboard runs: parameterized SQL, aggregates computed in PostgreSQL.

Connections use the ``finsent_dashboard`` role (SELECT everywhere, UPDATE of
an alert's acknowledgement only) and read-only transactions except for
:func:`acknowledge`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
import psycopg2
from psycopg2.pool import ThreadedConnectionPool

from pipeline import db
from pipeline.fast import OLDEST_UNSCORED

ROLE = "finsent_dashboard"


def make_pool(url: str | None = None) -> ThreadedConnectionPool:
    url = url or os.environ.get("FINSENT_DASHBOARD_DATABASE_URL") or db.database_url()
    return ThreadedConnectionPool(1, 8, url, connect_timeout=10)


@contextmanager
def session(pool: ThreadedConnectionPool, write: bool = False) -> Iterator[psycopg2.extensions.connection]:
    conn = pool.getconn()
    try:
        conn.set_session(readonly=not write, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET ROLE finsent_dashboard")
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        try:
            with conn.cursor() as cur:
                cur.execute("RESET ROLE")
            conn.commit()
        finally:
            pool.putconn(conn)


def frame(pool: ThreadedConnectionPool, sql: str, params: Sequence | dict = ()) -> pd.DataFrame:
    with session(pool) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=cols)


def active_model(pool) -> dict | None:
    df = frame(pool, "SELECT version, method, metrics, promoted_at, path FROM models WHERE is_active")
    return None if df.empty else df.iloc[0].to_dict()


def model_card(path: str | None) -> str | None:
    """The active model's card (MODEL_CARD.md, written by evaluation from its own figures), if readable here."""
    from pipeline.classify.evaluation.modelcard import CARD_FILE

    try:
        return (Path(path) / CARD_FILE).read_text(encoding="utf-8")[:50_000] if path else None
    except OSError:
        return None


def data_span(pool, model: str) -> tuple[datetime | None, datetime | None]:
    df = frame(
        pool,
        "SELECT min(hour) AS lo, max(hour) AS hi FROM hourly_stats WHERE model_version = %s AND dimension = 'overall'",
        (model,),
    )
    return (df.at[0, "lo"], df.at[0, "hi"]) if not df.empty else (None, None)


def overall_hours(pool, model: str) -> pd.DataFrame:
    """Every hour that holds stories, with its count (the Overview picks its default range and bucket from it)."""
    return frame(
        pool,
        "SELECT hour, stories FROM hourly_stats WHERE model_version = %s AND dimension = 'overall' ORDER BY hour",
        (model,),
    )


def topics(pool, model: str) -> list[str]:
    return frame(
        pool,
        "SELECT DISTINCT key FROM hourly_stats WHERE model_version = %s AND dimension = 'topic' ORDER BY 1",
        (model,),
    )["key"].tolist()


def sources(pool) -> list[str]:
    return frame(pool, "SELECT name FROM feeds ORDER BY name")["name"].tolist()


def hourly(pool, model: str, start: datetime, end: datetime, topics_: list[str], sources_: list[str]) -> pd.DataFrame:
    """Per hour and series: stories, negatives, negative share, mean sentiment.

    Without a source filter this reads the precomputed ``hourly_stats``; a
    source filter needs topic x source, so it aggregates scores in SQL.
    """
    if not sources_:
        return frame(
            pool,
            """
            SELECT hour, CASE WHEN dimension = 'overall' THEN 'overall' ELSE key END AS series,
                   stories, negatives, neg_share, mean_sentiment
            FROM hourly_stats
            WHERE model_version = %(m)s AND hour >= %(s)s AND hour < %(e)s
              AND (dimension = 'overall' OR (dimension = 'topic' AND key = ANY(%(t)s)))
            ORDER BY hour, series
            """,
            {"m": model, "s": start, "e": end, "t": topics_},
        )
    return frame(
        pool,
        """
        WITH s AS (
            SELECT date_trunc('hour', a.story_time) AS hour, sc.topic,
                   (sc.sentiment = 'negative')::int AS neg, sc.p_positive - sc.p_negative AS sent
            FROM scores sc JOIN articles a ON a.id = sc.article_id JOIN feeds f ON f.id = a.feed_id
            WHERE sc.model_version = %(m)s AND f.name = ANY(%(src)s)
              AND a.story_time >= %(s)s AND a.story_time < %(e)s
        )
        SELECT hour, 'overall' AS series, count(*) AS stories, sum(neg) AS negatives, avg(neg) AS neg_share,
               avg(sent) AS mean_sentiment FROM s GROUP BY hour
        UNION ALL
        SELECT hour, topic, count(*), sum(neg), avg(neg), avg(sent) FROM s WHERE topic = ANY(%(t)s) GROUP BY hour, topic
        ORDER BY 1, 2
        """,
        {"m": model, "s": start, "e": end, "t": topics_, "src": sources_},
    )


def topic_state(pool, model: str, at: datetime) -> pd.DataFrame:
    """Each topic at a glance: last 24 h against the 7 days before, and its live alert."""
    return frame(
        pool,
        """
        WITH recent AS (
            SELECT key, sum(stories) AS stories, sum(negatives) AS negatives, avg(mean_sentiment) AS mean_sentiment
            FROM hourly_stats WHERE model_version = %(m)s AND dimension = 'topic'
              AND hour > %(at)s - interval '24 hours' AND hour <= %(at)s GROUP BY key),
        base AS (
            SELECT key, sum(negatives)::float / nullif(sum(stories), 0) AS base_share
            FROM hourly_stats WHERE model_version = %(m)s AND dimension = 'topic'
              AND hour > %(at)s - interval '8 days' AND hour <= %(at)s - interval '24 hours' GROUP BY key),
        live AS (
            SELECT key, severity, status FROM alerts
            WHERE model_version = %(m)s AND status <> 'resolved' AND dimension = 'topic')
        SELECT r.key AS topic, r.stories AS stories_24h,
               round((r.negatives::numeric / nullif(r.stories, 0)) * 100, 1) AS negative_pct_24h,
               round((b.base_share * 100)::numeric, 1) AS baseline_pct_7d,
               round(r.mean_sentiment::numeric, 3) AS mean_sentiment_24h,
               coalesce(l.severity || ' (' || l.status || ')', '-') AS live_alert
        FROM recent r LEFT JOIN base b USING (key) LEFT JOIN live l ON l.key = r.key
        ORDER BY r.negatives::float / nullif(r.stories, 0) DESC NULLS LAST, r.key
        """,
        {"m": model, "at": at},
    )


def alerts(pool, model: str, statuses: list[str]) -> pd.DataFrame:
    from pipeline.alerts.notify import SUBJECT_SQL

    return frame(
        pool,
        f"""
        SELECT al.id, al.severity, al.peak_severity, al.status, al.dimension, {SUBJECT_SQL} AS subject,
               al.started_at, al.window_end, al.hours_surging, al.observed_negatives, al.observed_stories,
               round((al.observed_share * 100)::numeric, 1) AS observed_pct,
               round((al.baseline_share * 100)::numeric, 1) AS baseline_pct, al.p_value, al.notified_at,
               al.acknowledged_by, al.acknowledged_at
        FROM alerts al WHERE al.model_version = %s AND al.status = ANY(%s)
        ORDER BY (al.status = 'resolved'), al.started_at DESC, al.id DESC LIMIT 500
        """,
        (model, statuses),
    )


def trial_alerts(pool, model: str) -> pd.DataFrame:
    """Alerts of the latest trial replay (``history replay --rules``): never live, never sent; empty if none ran."""
    from pipeline.alerts.notify import SUBJECT_SQL
    from pipeline.replay import TRIAL_TABLE

    exists = frame(pool, "SELECT to_regclass(%s) IS NOT NULL AS present", (TRIAL_TABLE,))
    if exists.empty or not bool(exists["present"].iloc[0]):
        return pd.DataFrame()
    return frame(
        pool,
        f"""
        SELECT al.id, al.kind, al.severity, al.dimension, {SUBJECT_SQL} AS subject, al.started_at, al.last_hour,
               al.status, round((al.observed_share * 100)::numeric, 1) AS observed_pct,
               round((al.baseline_share * 100)::numeric, 1) AS baseline_pct
        FROM {TRIAL_TABLE} al WHERE al.model_version = %s
        ORDER BY al.started_at DESC, al.id DESC LIMIT 500
        """,
        (model,),
    )


def alert_deliveries(pool, alert_id: int) -> pd.DataFrame:
    """Where the alert went: one row per channel (email, each Slack channel) with its status and attempts."""
    return frame(
        pool,
        "SELECT channel, target, status, attempts, sent_at, last_error FROM alert_deliveries "
        "WHERE alert_id = %s ORDER BY channel",
        (alert_id,),
    )


def alert_stories(pool, alert_id: int) -> pd.DataFrame:
    """The stories behind an alert: every negative story of its subject in its surging span (a company's by
    its own per-entity label; a company's span starts a window before the first surging hour)."""
    return frame(
        pool,
        """
        SELECT a.story_time AS published, f.name AS source, a.title, a.url,
               sc.topic, coalesce(es.sentiment, sc.sentiment) AS sentiment,
               round(coalesce(es.p_negative, sc.p_negative)::numeric, 3) AS p_negative
        FROM alerts al
        JOIN scores sc ON sc.model_version = al.model_version
             AND (al.dimension IN ('overall', 'entity') OR (al.dimension = 'topic' AND sc.topic = al.key))
        JOIN articles a ON a.id = sc.article_id
        JOIN feeds f ON f.id = a.feed_id
        LEFT JOIN entity_scores es ON al.dimension = 'entity' AND es.article_id = a.id
             AND es.entity_id = al.key AND es.model_version = al.model_version
        WHERE al.id = %s AND coalesce(es.sentiment, sc.sentiment) = 'negative'
          AND (al.dimension <> 'entity' OR es.article_id IS NOT NULL)
          AND a.story_time >= al.started_at - CASE WHEN al.kind = 'regime' THEN interval '71 hours'
                                                   WHEN al.dimension = 'entity' THEN interval '23 hours'
                                                   ELSE interval '0 hours' END
          AND a.story_time < al.window_end
        ORDER BY 7 DESC, a.id LIMIT 200
        """,
        (alert_id,),
    )


def acknowledge(pool, alert_id: int, who: str) -> bool:
    """Mark an open alert acknowledged (who and when); False if it was not open.

    ``who`` must be an authenticated user's name (``dashboard.auth``); it is checked here too, not only in
    the form. Acknowledging records attention only: the alert's email still goes out.
    """
    from dashboard.auth import check_name

    who = check_name(who)
    with session(pool, write=True) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE alerts SET status = 'acknowledged', acknowledged_by = %s, acknowledged_at = now(), updated_at = now() "
            "WHERE id = %s AND status = 'open'",
            (who, alert_id),
        )
        return cur.rowcount == 1


def headlines(
    pool, model: str, search: str, sentiments: list[str], topics_: list[str], sources_: list[str], limit: int = 200
) -> pd.DataFrame:
    return frame(
        pool,
        """
        SELECT a.story_time AS published, f.name AS source, a.title, a.url,
               sc.topic, sc.sentiment, round(sc.p_negative::numeric, 3) AS p_negative,
               round(sc.p_neutral::numeric, 3) AS p_neutral, round(sc.p_positive::numeric, 3) AS p_positive
        FROM scores sc JOIN articles a ON a.id = sc.article_id JOIN feeds f ON f.id = a.feed_id
        WHERE sc.model_version = %(m)s
          AND (%(q)s = '' OR to_tsvector('english', a.title) @@ plainto_tsquery('english', %(q)s))
          AND (cardinality(%(sent)s::text[]) = 0 OR sc.sentiment = ANY(%(sent)s))
          AND (cardinality(%(t)s::text[]) = 0 OR sc.topic = ANY(%(t)s))
          AND (cardinality(%(src)s::text[]) = 0 OR f.name = ANY(%(src)s))
        ORDER BY a.story_time DESC, a.id DESC
        LIMIT %(n)s
        """,
        {"m": model, "q": search_text(search), "sent": sentiments, "t": topics_, "src": sources_, "n": limit},
    )


def search_text(raw: str | None, limit: int = 200) -> str:
    """Search box text PostgreSQL can take: no NUL, control characters or lone surrogates; bounded length."""
    from pipeline.ingest.normalize import clean_field

    return " ".join(clean_field(raw).split())[:limit]


def health(pool, model: str | None) -> dict:
    out = {
        "last_run": frame(
            pool,
            "SELECT finished_at, window_start, window_end, feeds_ok, feeds_failed, items_seen, "
            "items_new, duplicates FROM ingest_runs ORDER BY id DESC LIMIT 1",
        ),
        "feeds": frame(
            pool,
            "SELECT name, last_status, last_http_status, last_fetched_at, last_success_at, last_items, "
            "consecutive_failures, last_error, last_warning FROM feeds ORDER BY (last_status = 'error') DESC, name",
        ),
        "per_hour": frame(
            pool,
            "SELECT date_trunc('hour', fetched_at) AS hour, count(*) AS stories FROM articles "
            "WHERE fetched_at > (SELECT max(fetched_at) FROM articles) - interval '48 hours' "
            "GROUP BY 1 ORDER BY 1",
        ),
        "articles": int(frame(pool, "SELECT count(*) AS n FROM articles").at[0, "n"]),
    }
    out["oldest_unscored"] = frame(pool, OLDEST_UNSCORED, (model,)).iat[0, 0] if model else None
    out["backlog"] = (
        int(
            frame(
                pool,
                "SELECT count(*) AS n FROM articles a WHERE NOT EXISTS (SELECT 1 FROM scores s "
                "WHERE s.article_id = a.id AND s.model_version = %s)",
                (model,),
            ).at[0, "n"]
        )
        if model
        else out["articles"]
    )
    return out


def find_companies(pool, text: str, limit: int = 50) -> pd.DataFrame:
    """Companies whose name, alias or ticker contains ``text`` (exact ticker or name first), with story counts."""
    needle = search_text(text, 80).lstrip("$")
    return frame(
        pool,
        """
        SELECT e.id, e.name, array_to_string(e.tickers, ', ') AS tickers, e.sector,
               (SELECT count(*) FROM story_entities se WHERE se.entity_id = e.id) AS stories
        FROM entities e
        WHERE %(q)s = '' OR e.name ILIKE '%%' || %(like)s || '%%' OR e.id = lower(%(q)s)
           OR EXISTS (SELECT 1 FROM unnest(e.aliases || e.tickers) f
                      WHERE f ILIKE '%%' || %(like)s || '%%' OR split_part(f, ':', 2) = upper(%(q)s))
        ORDER BY (upper(%(q)s) = ANY(SELECT split_part(t, ':', 2) FROM unnest(e.tickers) t)) DESC,
                 (lower(e.name) = lower(%(q)s)) DESC, 5 DESC, e.name
        LIMIT %(n)s
        """,
        {"q": needle, "like": _like(needle), "n": limit},
    )


def unlinked_names(pool, text: str, limit: int = 50) -> pd.DataFrame:
    """Company names found in headlines that no catalogue entry holds, most-told first (``text`` filters)."""
    needle = search_text(text, 80)
    return frame(
        pool,
        """
        SELECT sn.name_key AS key, min(sn.name) AS name, count(DISTINCT sn.article_id) AS stories,
               max(a.story_time) AS last_seen
        FROM story_names sn JOIN articles a ON a.id = sn.article_id
        WHERE %(q)s = '' OR sn.name_key ILIKE '%%' || %(like)s || '%%'
        GROUP BY sn.name_key ORDER BY 3 DESC, 1 LIMIT %(n)s
        """,
        {"q": needle, "like": _like(needle.casefold()), "n": limit},
    )


def name_series(pool, model: str, key: str, bucket: str = "hour") -> pd.DataFrame:
    """Stories per bucket naming one unlinked company name (by its folded key), with how many ``model``
    scored negative."""
    if bucket not in ("hour", "day", "week"):
        raise ValueError(f"bucket must be hour, day or week, not {bucket!r}")
    return frame(
        pool,
        """
        SELECT date_trunc(%(b)s, a.story_time) AS period, count(DISTINCT a.id) AS stories,
               count(DISTINCT a.id) FILTER (WHERE sc.sentiment = 'negative') AS negatives
        FROM story_names sn JOIN articles a ON a.id = sn.article_id
        LEFT JOIN scores sc ON sc.article_id = a.id AND sc.model_version = %(m)s
        WHERE sn.name_key = %(k)s
        GROUP BY 1 ORDER BY 1
        """,
        {"m": model, "k": key, "b": bucket},
    )


def _like(text: str) -> str:
    """``text`` for ILIKE, its wildcards taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def company_series(pool, model: str, entity_id: str, bucket: str = "day") -> pd.DataFrame:
    """Per bucket: the company's stories, negatives (by its own per-entity label) and mean sentiment."""
    if bucket not in ("hour", "day", "week"):
        raise ValueError(f"bucket must be hour, day or week, not {bucket!r}")
    return frame(
        pool,
        """
        SELECT date_trunc(%(b)s, a.story_time) AS period, count(*) AS stories,
               sum((es.sentiment = 'negative')::int) AS negatives,
               round(avg((es.sentiment = 'negative')::int) * 100, 1) AS negative_pct,
               round(avg(es.p_positive - es.p_negative)::numeric, 3) AS mean_sentiment
        FROM entity_scores es JOIN articles a ON a.id = es.article_id
        WHERE es.model_version = %(m)s AND es.entity_id = %(e)s
        GROUP BY 1 ORDER BY 1
        """,
        {"m": model, "e": entity_id, "b": bucket},
    )


def company_headlines(pool, model: str, entity_id: str, limit: int = 200) -> pd.DataFrame:
    """The company's stories: its per-entity label beside the story's own label."""
    return frame(
        pool,
        """
        SELECT a.story_time AS published, f.name AS source, a.title, a.url,
               es.sentiment AS company_sentiment, round(es.p_negative::numeric, 3) AS company_p_negative,
               sc.sentiment AS story_sentiment, sc.topic,
               (SELECT string_agg(DISTINCT se.matched, ', ') FROM story_entities se
                WHERE se.article_id = a.id AND se.entity_id = es.entity_id) AS matched
        FROM entity_scores es
        JOIN articles a ON a.id = es.article_id
        JOIN feeds f ON f.id = a.feed_id
        LEFT JOIN scores sc ON sc.article_id = a.id AND sc.model_version = es.model_version
        WHERE es.model_version = %(m)s AND es.entity_id = %(e)s
        ORDER BY a.story_time DESC, a.id DESC LIMIT %(n)s
        """,
        {"m": model, "e": entity_id, "n": limit},
    )


def watchlist_overview(pool, model: str, at: datetime, recent_days: int = 7, baseline_days: int = 28) -> pd.DataFrame:
    """Watchlist companies ranked by the change in negative share: the last ``recent_days`` against the
    ``baseline_days`` before them (per-entity labels)."""
    return frame(
        pool,
        """
        WITH w AS (SELECT DISTINCT entity_id FROM watchlist_entities),
        s AS (
            SELECT es.entity_id, a.story_time >= %(at)s - make_interval(days => %(r)s) AS recent,
                   (es.sentiment = 'negative')::int AS neg
            FROM entity_scores es JOIN articles a ON a.id = es.article_id JOIN w USING (entity_id)
            WHERE es.model_version = %(m)s AND a.story_time < %(at)s
              AND a.story_time >= %(at)s - make_interval(days => %(r)s + %(b)s)),
        agg AS (
            SELECT entity_id, count(*) FILTER (WHERE recent) AS stories_recent,
                   avg(neg) FILTER (WHERE recent) AS share_recent,
                   count(*) FILTER (WHERE NOT recent) AS stories_baseline,
                   avg(neg) FILTER (WHERE NOT recent) AS share_baseline
            FROM s GROUP BY entity_id)
        SELECT e.name AS company, array_to_string(e.tickers, ', ') AS tickers,
               (SELECT string_agg(watchlist, ', ' ORDER BY watchlist) FROM watchlist_entities we
                WHERE we.entity_id = e.id) AS watchlists,
               coalesce(g.stories_recent, 0) AS stories_recent,
               round((g.share_recent * 100)::numeric, 1) AS negative_pct_recent,
               coalesce(g.stories_baseline, 0) AS stories_baseline,
               round((g.share_baseline * 100)::numeric, 1) AS negative_pct_baseline,
               round(((coalesce(g.share_recent, 0) - coalesce(g.share_baseline, 0)) * 100)::numeric, 1)
                   AS change_pts,
               coalesce((SELECT al.severity || ' (' || al.status || ')' FROM alerts al
                         WHERE al.dimension = 'entity' AND al.key = e.id AND al.model_version = %(m)s
                           AND al.status <> 'resolved' LIMIT 1), '-') AS live_alert,
               e.id
        FROM w JOIN entities e ON e.id = w.entity_id LEFT JOIN agg g ON g.entity_id = e.id
        ORDER BY (g.share_recent IS NULL), change_pts DESC, stories_recent DESC, e.name
        """,
        {"m": model, "at": at, "r": recent_days, "b": baseline_days},
    )
