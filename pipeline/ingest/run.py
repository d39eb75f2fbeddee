"""One ingestion pass: fetch all feeds concurrently, store each as it arrives."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import config, db
from pipeline.ingest import registry, store
from pipeline.ingest.dedupe import dedupe
from pipeline.ingest.fetch import fetch
from pipeline.ingest.model import FeedOutcome, FeedSpec, FetchResult
from pipeline.ingest.parse import parse
from pipeline.redact import redact

log = logging.getLogger(__name__)


def fetch_and_parse(spec: FeedSpec, validators: dict, settings: config.IngestSettings) -> FeedOutcome:
    """Network and CPU work for one feed; touches no database and never raises (a bug is that feed's error)."""
    fetched_at = datetime.now(UTC)
    try:
        result = fetch(
            spec.url,
            etag=validators.get("etag"),
            last_modified=validators.get("last_modified"),
            timeout_s=spec.timeout_s or settings.timeout_s,
            max_bytes=spec.max_bytes or settings.max_bytes,
            user_agent=settings.user_agent,
            allow_hosts=settings.allow_hosts + spec.allow_hosts,
            file_roots=settings.file_roots + ((Path(spec.root),) if spec.root else ()),
        )
        parsed = None
        if result.status == "ok":
            parsed = parse(
                result.body,
                result.headers,
                result.final_url,
                default_tz=spec.timezone or settings.default_timezone,
                fetched_at=fetched_at,
                max_future=timedelta(hours=settings.max_future_h),
            )
            result.body = b""  # release memory early
    except Exception as exc:  # isolation: one feed's surprise must not stop the others
        log.exception("feed %s: unexpected failure", spec.name)
        result = FetchResult(status="error", final_url=spec.url, error=f"internal error: {type(exc).__name__}: {exc}")
        parsed = None
    return FeedOutcome(spec=spec, fetch=result, parsed=parsed, fetched_at=fetched_at)


def ingest(
    feeds_file: str | Path | None = None,
    *,
    specs: list[FeedSpec] | None = None,
    database_url: str | None = None,
    run_key: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    settings: config.Settings | None = None,
    due_only: bool = False,
) -> dict:
    """Run one pass over the registry and return a JSON-able summary.

    A feed whose publisher asked to wait (Retry-After) is not polled before then; ``due_only`` (the fast
    lane) also skips feeds polled within their ``min_interval_s``. Skipped feeds are listed under ``not_due``.

    A feed that fails is recorded with its error and skipped; the others land.
    Database errors propagate (the caller retries; every write is idempotent).
    """
    settings = settings or config.load()
    invalid: list[registry.InvalidEntry] = []
    if specs is None:
        reg = registry.read(feeds_file or settings.feeds_file)
        specs, invalid = reg.specs, reg.invalid
    specs = [s for s in specs if s.enabled]
    url = database_url or db.database_url(settings)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    window_td = timedelta(hours=settings.ingest.title_window_h)
    feeds_out: list[dict] = []
    conn = db.connect(url)
    try:
        known = store.sync_feeds(conn, specs)
        # every pass honours a publisher's Retry-After; the fast lane also each feed's minimum interval
        now, interval = datetime.now(UTC), settings.ingest.min_interval_s if due_only else None
        not_due = [s.name for s in specs if not is_due(s, known[s.name], now, interval)]
        specs = [s for s in specs if s.name not in not_due]
        feeds_out += [_record_invalid(conn, entry) for entry in invalid]
        with ThreadPoolExecutor(
            max_workers=max(1, min(settings.ingest.concurrency, len(specs) or 1)),
            thread_name_prefix="fetch",
        ) as pool:
            futures = {pool.submit(fetch_and_parse, spec, known[spec.name], settings.ingest): spec for spec in specs}
            for future in as_completed(futures):
                outcome = future.result()
                feeds_out.append(_store_one(conn, known[outcome.spec.name]["id"], outcome, window_td))
        feeds_out.sort(key=lambda f: f["name"])
        summary = _summary(feeds_out, started, time.monotonic() - t0)
        summary["not_due"] = sorted(not_due)
        summary["run_id"] = store.record_run(conn, summary, run_key, window, started, datetime.now(UTC))
    finally:
        conn.close()
    t = summary["totals"]
    log.info(
        "ingest done: %d feeds ok, %d failed, %d items seen, %d new, %d duplicates in %.1fs (%.0f items/s)",
        t["feeds_ok"],
        t["feeds_failed"],
        t["items_seen"],
        t["new"],
        t["duplicates"],
        summary["elapsed_s"],
        t["items_seen"] / max(summary["elapsed_s"], 1e-9),
    )
    return summary


def is_due(spec: FeedSpec, known: dict, now: datetime, default_interval_s: float | None) -> bool:
    """May this feed be polled now? Never before its Retry-After; with an interval (the fast lane), not within
    its ``min_interval_s`` (else ``default_interval_s``) of its last fetch."""
    until = known.get("retry_after_until")
    if until is not None and until > now:
        return False
    if default_interval_s is None:
        return True
    last = known.get("last_fetched_at")
    interval = spec.min_interval_s if spec.min_interval_s is not None else default_interval_s
    return last is None or (now - last).total_seconds() >= interval


# A feed entry of the run summary for a feed that was never fetched (its keys match _store_one's).
_NOTHING_FETCHED = {
    "http_status": None,
    "items_seen": 0,
    "new": 0,
    "duplicates": 0,
    "skipped": 0,
    "skip_reasons": {},
    "warning": None,
    "final_url": None,
    "redirects": [],
    "elapsed_s": 0.0,
}


def _record_invalid(conn, entry: registry.InvalidEntry) -> dict:
    """A registry entry that failed validation: a failed feed (on its row, if it has a usable name)."""
    log.warning("feed registry: %s", entry.error)
    if entry.has_name:
        store.record_failure(conn, entry.name, f"invalid registry entry: {entry.error}")
    error = redact(f"invalid registry entry: {entry.error}")
    return {**_NOTHING_FETCHED, "name": entry.name, "status": "error", "error": error}


def _store_one(conn, feed_id: int, outcome: FeedOutcome, window_td: timedelta) -> dict:
    fetch_res, parsed = outcome.fetch, outcome.parsed
    kept, dropped = [], 0
    if parsed and not outcome.error:
        kept, dropped = dedupe(parsed.stories, outcome.fetched_at, window_td, outcome.spec.dedupe_titles)
    try:
        new = store.store_outcome(conn, feed_id, outcome, window_td, kept)
    except store.DATA_ERRORS as exc:  # bad data in this feed: record it and go on; outages propagate
        fetch_res.error = f"cannot store this feed's items: {type(exc).__name__}: {str(exc).strip()[:300]}"
        log.warning("feed %s: %s", outcome.spec.name, fetch_res.error)
        new = store.store_outcome(conn, feed_id, outcome, window_td, [])
    error = outcome.error
    seen = len(parsed.stories) if parsed and not error else 0
    status = "error" if error else fetch_res.status
    entry = {
        "name": outcome.spec.name,
        "status": status,
        "http_status": fetch_res.http_status,
        "items_seen": seen,
        "new": new,
        "duplicates": seen - new,
        "skipped": parsed.skipped if parsed else 0,
        "skip_reasons": parsed.skip_reasons if parsed else {},
        "error": redact(error),
        "warning": redact(parsed.warning) if parsed else None,
        "final_url": redact(fetch_res.final_url) if fetch_res.redirects else None,
        "redirects": [redact(r) for r in fetch_res.redirects],
        "elapsed_s": round(fetch_res.elapsed_s, 3),
    }
    if error:
        log.warning("feed %s: %s", outcome.spec.name, redact(error))
    else:
        log.info(
            "feed %s: %s, %d items, %d new, %d duplicates%s",
            outcome.spec.name,
            status,
            seen,
            new,
            seen - new,
            f" (warning: {entry['warning']})" if entry["warning"] else "",
        )
    return entry


def _summary(feeds_out: list[dict], started: datetime, elapsed: float) -> dict:
    return {
        "started_at": started.isoformat(),
        "elapsed_s": round(elapsed, 3),
        "totals": {
            "feeds": len(feeds_out),
            "feeds_ok": sum(f["status"] != "error" for f in feeds_out),
            "feeds_failed": sum(f["status"] == "error" for f in feeds_out),
            "items_seen": sum(f["items_seen"] for f in feeds_out),
            "new": sum(f["new"] for f in feeds_out),
            "duplicates": sum(f["duplicates"] for f in feeds_out),
        },
        "feeds": feeds_out,
    }
