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
MAX_LINE_BYTES = 1 << 20  # a longer physical line is skipped unread (a file that inflates to one endless line)
MAX_RECORD_LINES = 50  # a quoted field may span lines (titles with breaks); an open quote past this never closes
csv.field_size_limit(MAX_LINE_BYTES * MAX_RECORD_LINES)


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


def _open_bytes(path: Path) -> io.BufferedIOBase:
    """Bytes of a CSV file, gzip or not (by its first two bytes, whatever its name)."""
    if not path.is_file():
        raise ArchiveError(f"archive {path} does not exist or is not a file")
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def _lines(fh: io.BufferedIOBase, summary: ImportSummary) -> Iterator[bytes | None]:
    """Physical lines of at most MAX_LINE_BYTES; a longer one is read past in pieces (never held) and given as
    None. A file that ends early (a truncated gzip) ends the lines, counted."""
    while True:
        try:
            line = fh.readline(MAX_LINE_BYTES + 1)
        except (OSError, EOFError) as exc:  # what was read is kept
            summary.skipped[f"file ends early ({type(exc).__name__})"] += 1
            return
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            try:
                while (rest := fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
            except (OSError, EOFError) as exc:
                summary.skipped[f"file ends early ({type(exc).__name__})"] += 1
                return
            yield None
            continue
        yield line


def _records(fh: io.BufferedIOBase, summary: ImportSummary) -> Iterator[tuple[list[bytes], str]]:
    """CSV records as lists of physical lines, with "" or why the record is unusable; pure reading, no decoding.

    A quoted field may run over several lines (titles with line breaks), up to MAX_RECORD_LINES; a quote still
    open after that many lines was never closed: only the line that opened it is given up, and reading resumes
    on the next line, so one broken row costs that row and no other.
    """
    pending: list[bytes] = []
    lines = _lines(fh, summary)
    while True:
        if pending:
            line, pending = pending[0], pending[1:]
        else:
            line = next(lines, False)
        if line is False:
            return
        if line is None:
            yield [], f"line over {MAX_LINE_BYTES:,} bytes"
            continue
        record = [line]
        while sum(x.count(b'"') for x in record) % 2:  # an odd count of quotes: a quoted field is still open
            if len(record) > MAX_RECORD_LINES:
                yield record[:1], "unterminated quote"
                pending = record[1:] + pending
                record = []
                break
            nxt = pending.pop(0) if pending else next(lines, False)
            if nxt is None or nxt is False:  # a quote left open to the end of the file (or before an over-long line)
                yield record[:1], "unterminated quote"
                pending = record[1:] + ([] if nxt is False else [None]) + pending
                record = []
                break
            record.append(nxt)
        if record:
            yield record, ""


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
    """Stream (source, story) from the archive, counting bad rows in ``summary.skipped`` by reason.

    Read as a feed is: UTF-8 (a byte-order mark, as Excel writes, is dropped); a row that is not UTF-8, a line
    over MAX_LINE_BYTES (skipped before it is held in memory), an unterminated quote (that row only), or a time
    outside what feeds accept ([1990, now + 48 h]) is skipped and counted; the rest is read.
    """
    path = Path(path)
    now = now or datetime.now(UTC)
    sane = (normalize.EARLIEST_DATE, now + timedelta(hours=48))
    try:
        fh = _open_bytes(path)
        header = fh.readline(MAX_LINE_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"archive {path} is not a readable file: {type(exc).__name__}") from None
    try:
        columns = next(csv.reader([header.decode("utf-8-sig").rstrip("\r\n")])) if header else []
    except (UnicodeDecodeError, csv.Error):
        fh.close()
        raise ArchiveError(f"archive {path}: its first line is not a UTF-8 CSV header: save it as CSV UTF-8") from None
    columns = [c.strip() for c in columns]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        fh.close()
        # the header is not quoted back: a path pointed at a credentials file must not echo its first line
        raise ArchiveError(
            f"archive {path} has no {missing} column(s) in its first line ({len(columns)} columns); "
            f"expected a CSV header with {list(REQUIRED)}"
        )
    return _read(fh, columns, summary, sane)


def _read(
    fh, columns: list[str], summary: ImportSummary, sane: tuple[datetime, datetime]
) -> Iterator[tuple[str, Story]]:
    with fh:
        for record, why in _records(fh, summary):
            summary.rows += 1
            if why:
                summary.skipped[why] += 1
                continue
            try:
                text = b"".join(record).decode("utf-8")
            except UnicodeDecodeError:
                summary.skipped["not UTF-8 text"] += 1
                continue
            try:
                values = next(csv.reader(io.StringIO(text, newline="")), [])
            except csv.Error as exc:  # one damaged line: skipped, the rest is read
                summary.skipped[f"unreadable line ({type(exc).__name__})"] += 1
                continue
            if not any(v.strip() for v in values):
                summary.rows -= 1  # a blank line is not a row
                continue
            row = dict(zip(columns, values))
            story, source, why = parse_row(row, sane)
            if story is None:
                summary.skipped[why] += 1
                continue
            yield source, story


def scan(path: str | Path) -> ImportSummary:
    """Read the whole archive without storing anything: its row counts, reasons and time range (a replay checks
    the span before it stores a row)."""
    summary = ImportSummary()
    for _, story in read_rows(path, summary):
        summary.first = min(summary.first or story.published_at, story.published_at)
        summary.last = max(summary.last or story.published_at, story.published_at)
    return summary


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
    rows = read_rows(path, summary)  # an unreadable file or header is refused before the database is touched
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
        for source, story in rows:
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
