"""Import a headline archive (CSV: ``published``, ``source``, ``title``; optional ``url``, ``summary``).

A risk team checks a threshold against history, and a new user meets real
news, only if history can be loaded. Each row becomes a story at its
published time, filed under a feed named after its ``source`` (an
archive-only feed: no live state is touched), with the usual keys (guid =
the URL, or the content key when there is none), so re-importing adds
nothing. Rows are streamed (a gzip file is read as such), bad rows are
skipped and counted by reason, and progress is logged with counts and rates.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import config, db
from pipeline.ingest import normalize, store
from pipeline.ingest.dedupe import dedupe
from pipeline.ingest.model import FeedOutcome, FeedSpec, FetchResult, ParseResult, Story
from pipeline.ingest.parse import MAX_SUMMARY_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS

log = logging.getLogger(__name__)
REQUIRED = ("published", "source", "title")
MAX_SOURCE_CHARS = 120
CHUNK = 2_000  # rows stored per transaction
csv.field_size_limit(1 << 20)  # one oversized cell is a bad row, not a crash of the whole import


class ArchiveError(ValueError):
    """The file cannot be read as a headline archive (missing, not CSV, columns absent)."""


@dataclass
class ImportSummary:
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    outside_window: int = 0
    skipped: Counter = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "outside_window": self.outside_window,
            "skipped": sum(self.skipped.values()),
            "skip_reasons": dict(self.skipped),
            "first_published": self.first.isoformat() if self.first else None,
            "last_published": self.last.isoformat() if self.last else None,
            "seconds": round(self.seconds, 2),
        }


def _open_text(path: Path) -> io.TextIOBase:
    """Text of a CSV file, gzip or not (by its first two bytes, whatever its name)."""
    if not path.is_file():
        raise ArchiveError(f"archive {path} does not exist or is not a file")
    with path.open("rb") as fh:
        magic = fh.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


def parse_row(row: dict, sane: tuple[datetime, datetime]) -> tuple[Story | None, str, str]:
    """(story, source, "") or (None, "", why it is skipped); pure."""
    title = normalize.clean_text(row.get("title"), MAX_TITLE_CHARS)
    if not title:
        return None, "", "no title"
    source = normalize.clean_text(row.get("source"), MAX_SOURCE_CHARS)
    if not source:
        return None, "", "no source"
    published = normalize.parse_date(normalize.clean_field(row.get("published") or "").strip() or None, None, "UTC")
    if published is None:
        return None, "", "no readable published time"
    if not sane[0] <= published <= sane[1]:
        return None, "", "published time out of range"
    summary = normalize.clean_text(row.get("summary"), MAX_SUMMARY_CHARS)
    link = normalize.clean_field(row.get("url") or "").strip()[:MAX_URL_CHARS] or None
    canonical = normalize.canonical_url(link)
    guid = canonical or normalize.content_key(f"{source}|{published.isoformat()}", title, summary)
    story = Story(
        guid=guid,
        url=link,
        canonical_url=canonical,
        title=title,
        summary=summary if summary != title else "",
        published_at=published,
        content_hash=normalize.content_hash(title, summary),
        title_hash=normalize.title_hash(title),
    )
    return story, source, ""


def read_rows(path: str | Path, summary: ImportSummary, now: datetime | None = None) -> Iterator[tuple[str, Story]]:
    """Stream (source, story) from the archive, counting bad rows in ``summary.skipped``."""
    path = Path(path)
    now = now or datetime.now(UTC)
    sane = (datetime(1900, 1, 1, tzinfo=UTC), now + timedelta(hours=48))
    try:
        fh = _open_text(path)
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
    except UnicodeDecodeError:
        raise ArchiveError(f"archive {path} is not UTF-8 text: save it as UTF-8") from None
    except (OSError, csv.Error, EOFError) as exc:
        raise ArchiveError(f"archive {path} is not a readable CSV: {type(exc).__name__}: {str(exc)[:200]}") from None
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        fh.close()
        raise ArchiveError(f"archive {path} has no {missing} column(s) (columns: {columns[:20]})")
    with fh:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise ArchiveError(f"archive {path} is not UTF-8 text near row {summary.rows + 1}") from None
            except csv.Error as exc:  # one damaged line: skipped, the rest is read
                summary.rows += 1
                summary.skipped[f"unreadable line ({type(exc).__name__})"] += 1
                continue
            except (OSError, EOFError) as exc:  # a truncated gzip: what was read is kept
                summary.skipped[f"file ends early ({type(exc).__name__})"] += 1
                return
            summary.rows += 1
            story, source, why = parse_row(row, sane)
            if story is None:
                summary.skipped[why] += 1
                continue
            yield source, story


def import_csv(
    path: str | Path,
    *,
    database_url: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    settings: config.Settings | None = None,
) -> dict:
    """Store every row (inside ``window`` when given) as a story; returns counts (see ImportSummary)."""
    settings = settings or config.load()
    url = database_url or db.database_url(settings)
    title_window = timedelta(hours=settings.ingest.title_window_h)
    summary = ImportSummary()
    t0 = last_log = time.monotonic()
    conn = db.connect(url)
    feed_ids: dict[str, int] = {}
    pending: dict[str, list[Story]] = {}

    def flush() -> None:
        for source, stories in pending.items():
            if source not in feed_ids:
                feed_ids[source] = store.feed_id_for(conn, source)
            kept, dropped = dedupe(stories, stories[0].published_at, title_window)
            outcome = FeedOutcome(
                spec=FeedSpec(name=source, url=f"archive:{source}"),
                fetch=FetchResult(status="ok"),
                parsed=ParseResult(kept),
                fetched_at=max(s.published_at for s in stories),
            )
            new = store.store_outcome(conn, feed_ids[source], outcome, title_window, kept, record_fetch=False)
            summary.stored += new
            summary.duplicates += len(stories) - new
        pending.clear()

    try:
        held = 0
        for source, story in read_rows(path, summary):
            if window and not window[0] <= story.published_at < window[1]:
                summary.outside_window += 1
                continue
            summary.first = min(summary.first or story.published_at, story.published_at)
            summary.last = max(summary.last or story.published_at, story.published_at)
            pending.setdefault(source, []).append(story)
            held += 1
            if held >= CHUNK:
                flush()
                held = 0
                if time.monotonic() - last_log > 5:
                    last_log = time.monotonic()
                    rate = summary.rows / max(last_log - t0, 1e-9)
                    log.info("imported %d rows (%d new) at %.0f rows/s", summary.rows, summary.stored, rate)
        flush()
    finally:
        conn.close()
    summary.seconds = time.monotonic() - t0
    log.info(
        "archive %s: %d rows, %d stored, %d duplicates, %d skipped, %d outside the window in %.1f s",
        path,
        summary.rows,
        summary.stored,
        summary.duplicates,
        sum(summary.skipped.values()),
        summary.outside_window,
        summary.seconds,
    )
    return summary.as_dict()
