"""Writes feeds and stories to PostgreSQL; every write is idempotent."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import psycopg2
from psycopg2.extensions import connection
from psycopg2.extras import Json, execute_values

from pipeline import config
from pipeline.digits import ascii_int
from pipeline.ingest.model import FeedOutcome, FeedSpec
from pipeline.redact import redact

# Errors caused by one feed's data (a value PostgreSQL or the driver refuses), as opposed to an outage
# (OperationalError, InterfaceError), which must propagate so that Airflow retries the task.
DATA_ERRORS = (psycopg2.DataError, ValueError)

_STORE_LOCK = 0x66696E01  # serialises concurrent ingestion passes (the same hour twice)

_CREATE_INCOMING = """
CREATE TEMP TABLE IF NOT EXISTS incoming (
    guid text, url text, canonical_url text, title text, summary text,
    published_at timestamptz, fetched_at timestamptz, content_hash text, title_hash text
) ON COMMIT DELETE ROWS
"""

# New stories only: known guids/URLs are skipped by the unique indexes, and a
# syndicated copy (same normalised title close in time) by the NOT EXISTS.
_INSERT_ARTICLES = """
INSERT INTO articles (feed_id, guid, url, canonical_url, title, summary, published_at,
                      fetched_at, content_hash, title_hash)
SELECT %(feed_id)s, i.guid, i.url, i.canonical_url, i.title, i.summary, i.published_at,
       i.fetched_at, i.content_hash, i.title_hash
FROM incoming i
WHERE NOT (%(by_title)s AND EXISTS (
    SELECT 1 FROM articles a
    WHERE a.title_hash = i.title_hash
      AND abs(extract(epoch FROM a.story_time
                                 - coalesce(i.published_at, i.fetched_at))) <= %(window_s)s))
ON CONFLICT DO NOTHING
RETURNING id
"""


def sync_feeds(conn: connection, specs: list[FeedSpec]) -> dict[str, dict]:
    """Register the feeds; return name -> {id, etag, last_modified, last_fetched_at, retry_after_until}.

    A feed whose URL changed forgets its validators, so the first fetch of the
    new URL is unconditional.
    """
    with conn.cursor() as cur:
        for spec in specs:
            cur.execute(
                """
                INSERT INTO feeds (name, url) VALUES (%s, %s)
                ON CONFLICT (name) DO UPDATE
                SET url = EXCLUDED.url,
                    etag = CASE WHEN feeds.url = EXCLUDED.url THEN feeds.etag END,
                    last_modified = CASE WHEN feeds.url = EXCLUDED.url THEN feeds.last_modified END,
                    updated_at = now()
                WHERE feeds.url IS DISTINCT FROM EXCLUDED.url
                """,
                (spec.name, redact(spec.url)),
            )
        cur.execute(
            "SELECT name, id, etag, last_modified, last_fetched_at, retry_after_until FROM feeds WHERE name = ANY(%s)",
            ([s.name for s in specs],),
        )
        rows = {
            name: {"id": fid, "etag": etag, "last_modified": lm, "last_fetched_at": at, "retry_after_until": until}
            for name, fid, etag, lm, at, until in cur.fetchall()
        }
    conn.commit()
    return rows


def store_outcome(
    conn: connection,
    feed_id: int,
    outcome: FeedOutcome,
    title_window: timedelta,
    stories: list,
    record_fetch: bool = True,
) -> int:
    """Record the fetch on the feed row and insert new stories, in one transaction.

    Validators (ETag, Last-Modified) are saved together with the stories, so a
    crash can never leave a feed "not modified" with its items unsaved.
    Returns the number of stories inserted.
    """
    new_ids: list = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_STORE_LOCK,))
            if stories:
                rows = [
                    (
                        s.guid,
                        s.url,
                        s.canonical_url,
                        s.title,
                        s.summary,
                        s.published_at,
                        outcome.fetched_at,
                        s.content_hash,
                        s.title_hash,
                    )
                    for s in stories
                ]
                cur.execute(_CREATE_INCOMING)
                execute_values(cur, "INSERT INTO incoming VALUES %s", rows, page_size=500)
                cur.execute(
                    _INSERT_ARTICLES,
                    {
                        "feed_id": feed_id,
                        "by_title": outcome.spec.dedupe_titles,
                        "window_s": title_window.total_seconds(),
                    },
                )
                new_ids = cur.fetchall()
            if record_fetch:  # archive replays leave the live feed's state alone
                _record_fetch(cur, feed_id, outcome)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return len(new_ids)


def _record_fetch(cur, feed_id: int, outcome: FeedOutcome) -> None:
    fetch, parsed = outcome.fetch, outcome.parsed
    error = outcome.error
    until = retry_after(fetch.headers, outcome.fetched_at)
    if error:
        cur.execute(
            """
            UPDATE feeds SET last_fetched_at = %s, last_status = 'error', last_http_status = %s,
                   last_error = %s, final_url = %s, consecutive_failures = consecutive_failures + 1,
                   retry_after_until = %s, updated_at = now()
            WHERE id = %s
            """,
            (outcome.fetched_at, fetch.http_status, redact(error), redact(fetch.final_url), until, feed_id),
        )
        return
    status = fetch.status  # ok | not_modified
    cur.execute(
        """
        UPDATE feeds SET last_fetched_at = %(at)s, last_success_at = %(at)s, last_status = %(status)s,
               last_http_status = %(http)s, last_error = NULL, last_warning = %(warning)s,
               final_url = %(final)s, consecutive_failures = 0, updated_at = now(),
               etag = CASE WHEN %(status)s = 'ok' THEN %(etag)s ELSE etag END,
               last_modified = CASE WHEN %(status)s = 'ok' THEN %(lm)s ELSE last_modified END,
               last_items = CASE WHEN %(status)s = 'ok' THEN %(items)s ELSE last_items END,
               retry_after_until = %(until)s
        WHERE id = %(id)s
        """,
        {
            "at": outcome.fetched_at,
            "status": status,
            "http": fetch.http_status,
            "warning": redact(parsed.warning) if parsed else None,
            "final": redact(fetch.final_url),
            "etag": fetch.headers.get("etag"),
            "lm": fetch.headers.get("last-modified"),
            "items": len(parsed.stories) if parsed else 0,
            "until": until,
            "id": feed_id,
        },
    )


def retry_after(headers: dict, at: datetime, cap_s: float | None = None) -> datetime | None:
    """When a publisher's ``Retry-After`` (seconds or an HTTP date) lets the next poll happen; None if it says nothing.

    Capped (``FINSENT``'s ``max_retry_after_s``, a day) so that a hostile header cannot silence a feed for good.
    """
    value = (headers or {}).get("retry-after")
    if not value:
        return None
    cap = timedelta(seconds=cap_s if cap_s is not None else config.load().ingest.max_retry_after_s)
    value = str(value).strip()
    seconds = ascii_int(value, max_digits=64)
    if seconds is not None:
        return at + min(timedelta(seconds=min(seconds, 10**9)), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # a malformed header says nothing
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(when, at), at + cap)


def record_failure(conn: connection, name: str, error: str) -> None:
    """A feed that could not even be tried (e.g. its registry entry is invalid): status error, failures counted."""
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO feeds (name, url, last_fetched_at, last_status, last_error, consecutive_failures)
            VALUES (%(name)s, 'invalid:', now(), 'error', %(error)s, 1)
            ON CONFLICT (name) DO UPDATE SET last_fetched_at = now(), last_status = 'error',
                last_error = %(error)s, consecutive_failures = feeds.consecutive_failures + 1, updated_at = now()
            """,
            {"name": name, "error": redact(error)},
        )
    conn.commit()


def feed_id_for(conn: connection, name: str) -> int:
    """Id of a feed by name, registering it (as an archive-only feed) if unknown."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO feeds (name, url) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, f"archive:{name}")
        )
        cur.execute("SELECT id FROM feeds WHERE name = %s", (name,))
        fid = cur.fetchone()[0]
    conn.commit()
    return fid


def record_run(
    conn: connection,
    summary: dict,
    run_key: str | None,
    window: tuple[datetime, datetime] | None,
    started_at: datetime,
    finished_at: datetime,
) -> int:
    totals = summary["totals"]
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO ingest_runs (run_key, window_start, window_end, started_at, finished_at,
                                     feeds_ok, feeds_failed, items_seen, items_new, duplicates, summary)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
            """,
            (
                run_key,
                window[0] if window else None,
                window[1] if window else None,
                started_at,
                finished_at,
                totals["feeds_ok"],
                totals["feeds_failed"],
                totals["items_seen"],
                totals["new"],
                totals["duplicates"],
                Json(summary, dumps=lambda o: json.dumps(o, default=str)),
            ),
        )
        run_id = cur.fetchone()[0]
    conn.commit()
    return run_id
