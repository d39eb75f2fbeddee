"""Backfill from archived feed files: stories published in a past window.

Live feeds only show recent items, so a backfill of last month cannot fetch
them again. Archived documents (e.g. saved by a crawler) can be replayed:
``<folder>/<feed name>/*.xml`` files are filed under that feed, or
``<folder>/*.xml`` under a feed named after the file. Only stories published
inside the window are stored (undated ones cannot be placed and are
skipped); the usual keys make a replay idempotent, and the live feed's
status, ETag and Last-Modified are left untouched.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import config, db
from pipeline.ingest import store
from pipeline.ingest.dedupe import dedupe
from pipeline.ingest.model import FeedOutcome, FeedSpec, FetchResult
from pipeline.ingest.parse import parse

log = logging.getLogger(__name__)
SUFFIXES = {".xml", ".rss", ".atom"}


def archive_files(folder: Path) -> list[tuple[str, Path]]:
    """(feed name, file) pairs, sorted for a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"archive folder not found: {folder}")
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            rel = path.relative_to(folder)
            out.append((rel.parts[0] if len(rel.parts) > 1 else path.stem, path))
    return out


def ingest_archive(
    folder: str | Path,
    window: tuple[datetime, datetime],
    *,
    database_url: str | None = None,
    run_key: str | None = None,
    settings: config.Settings | None = None,
) -> dict:
    settings = settings or config.load()
    start, end = window
    url = database_url or db.database_url(settings)
    title_window = timedelta(hours=settings.ingest.title_window_h)
    t0 = time.monotonic()
    started = datetime.now(UTC)
    files_out = []
    conn = db.connect(url)
    try:
        for name, path in archive_files(Path(folder)):
            try:
                entry = _replay_file(conn, name, path, (start, end), title_window, settings)
            except store.DATA_ERRORS + (OSError,) as exc:  # one bad file is recorded; the replay goes on
                conn.rollback()
                entry = _failed(name, path, f"{type(exc).__name__}: {str(exc).strip()[:300]}")
            if entry["status"] == "error":
                log.warning("archive %s: %s", path, entry["error"])
            files_out.append(entry)
        summary = {
            "started_at": started.isoformat(),
            "elapsed_s": round(time.monotonic() - t0, 3),
            "archive": str(folder),
            "totals": {
                "feeds": len(files_out),
                "feeds_ok": sum(f["status"] == "ok" for f in files_out),
                "feeds_failed": sum(f["status"] == "error" for f in files_out),
                "items_seen": sum(f["items_seen"] for f in files_out),
                "new": sum(f["new"] for f in files_out),
                "duplicates": sum(f["duplicates"] for f in files_out),
            },
            "feeds": files_out,
        }
        summary["run_id"] = store.record_run(conn, summary, run_key, window, started, datetime.now(UTC))
    finally:
        conn.close()
    return summary


def _failed(name: str, path: Path, error: str) -> dict:
    return {
        "name": name,
        "file": str(path),
        "status": "error",
        "error": error,
        "items_seen": 0,
        "new": 0,
        "duplicates": 0,
    }


def _replay_file(
    conn, name: str, path: Path, window: tuple[datetime, datetime], title_window: timedelta, settings: config.Settings
) -> dict:
    """Store one archived document's stories published inside the window."""
    start, end = window
    if not path.is_file():
        return _failed(name, path, "not a regular file")
    with path.open("rb") as fh:
        body = fh.read(settings.ingest.max_bytes + 1)
    if len(body) > settings.ingest.max_bytes:
        return _failed(name, path, "file too large")
    fetched = FetchResult(status="ok", body=body, headers={"content-type": "application/xml"}, final_url=path.as_uri())
    fetched_at = datetime.now(UTC)
    parsed = parse(
        body,
        fetched.headers,
        path.as_uri(),
        settings.ingest.default_timezone,
        fetched_at=fetched_at,
        max_future=timedelta(hours=settings.ingest.max_future_h),
    )
    if parsed.error:
        return _failed(name, path, parsed.error)
    in_window = [s for s in parsed.stories if s.published_at and start <= s.published_at < end]
    spec = FeedSpec(name=name, url=path.as_uri())
    outcome = FeedOutcome(spec=spec, fetch=fetched, parsed=parsed, fetched_at=fetched_at)
    kept, _ = dedupe(in_window, outcome.fetched_at, title_window, spec.dedupe_titles)
    new = store.store_outcome(conn, store.feed_id_for(conn, name), outcome, title_window, kept, record_fetch=False)
    log.info("archive %s -> %s: %d in window, %d new", path.name, name, len(in_window), new)
    return {
        "name": name,
        "file": str(path),
        "status": "ok",
        "error": None,
        "items_seen": len(in_window),
        "new": new,
        "duplicates": len(in_window) - new,
        "outside_window": len(parsed.stories) - len(in_window),
    }
