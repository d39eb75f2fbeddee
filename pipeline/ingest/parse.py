"""Feed bytes -> normalised Story records (feedparser does the XML)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import feedparser

from pipeline.ingest import normalize
from pipeline.ingest.model import ParseResult, Story

MAX_SUMMARY_CHARS = 4000
MAX_TITLE_CHARS = 1000
MAX_URL_CHARS = 4000


def parse(
    body: bytes,
    headers: dict[str, str] | None = None,
    base_url: str | None = None,
    default_tz: str = "UTC",
    fetched_at: datetime | None = None,
    max_future: timedelta = timedelta(hours=48),
) -> ParseResult:
    """Parse one feed document; never raises.

    A document feedparser flags as ill-formed ("bozo") still yields its items
    with a warning; one that yields no items at all is an error. One item that
    cannot be read is skipped and counted with its reason; the rest land. Item
    dates outside [1990, fetch time + ``max_future``] are stored as unknown
    (the story then sorts by its fetch time), with a warning.
    """
    now = fetched_at or datetime.now(UTC)
    sane = (normalize.EARLIEST_DATE, now + max_future)
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    if base_url and "content-location" not in response_headers:
        response_headers["content-location"] = base_url
    body = defuse_char_refs(body)
    try:
        doc = feedparser.parse(body, response_headers=response_headers)
    except Exception as exc:  # feedparser is defensive, but never trust input
        return ParseResult([], error=normalize.clean_field(f"parser crashed: {type(exc).__name__}: {exc}")[:500])
    warning = None
    if doc.get("bozo"):
        exc = doc.get("bozo_exception")
        warning = normalize.clean_field(f"ill-formed feed: {type(exc).__name__}: {exc}")[:500]
    entries = doc.get("entries") or []
    if not entries:
        if warning:
            return ParseResult([], error=warning)
        if not doc.get("version"):
            return ParseResult([], error="not a feed: no RSS/Atom document found")
        return ParseResult([])
    guid_counts = Counter(_guid(e) for e in entries)
    stories: list[Story] = []
    skipped: Counter = Counter()
    undated = 0
    for entry in entries:
        try:
            story, note = _story(entry, guid_counts, default_tz, sane)
        except Exception as exc:  # isolation: one unreadable item never drops its feed
            story, note = None, f"unreadable item ({type(exc).__name__})"
        if story is None:
            skipped[note] += 1
        else:
            stories.append(story)
            undated += note == _BAD_DATE
    if undated:
        note = f"{undated} item date(s) outside 1990..now+{max_future} stored as unknown"
        warning = f"{warning}; {note}" if warning else note
    return ParseResult(stories, skipped=sum(skipped.values()), skip_reasons=dict(skipped), warning=warning)


_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")


def defuse_char_refs(body: bytes) -> bytes:
    """Character references no text may hold (NUL, lone surrogates, beyond U+10FFFF) become U+FFFD.

    feedparser raises on ``&#xD800;`` and would drop the whole feed for one item.
    """

    def fix(m: re.Match) -> bytes:
        code = int(m.group(1), 16) if m.group(1) else int(m.group(2))
        return b"&#xFFFD;" if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else m.group(0)

    return _CHAR_REF.sub(fix, body) if b"&#" in body else body


def _guid(entry) -> str:
    raw = entry.get("id")
    return normalize.clean_field(raw).strip() if isinstance(raw, str) else ""


_BAD_DATE = "date out of range"


def _story(entry, guid_counts: Counter, default_tz: str, sane: tuple[datetime, datetime]) -> tuple[Story | None, str]:
    """(story, "") or (story, _BAD_DATE) when its date was dropped, or (None, why it was skipped)."""
    raw_link = entry.get("link")
    link = normalize.clean_field(raw_link).strip() if isinstance(raw_link, str) else ""
    link = link[:MAX_URL_CHARS] or None
    summary = normalize.clean_text(entry.get("summary") or _first_content(entry), MAX_SUMMARY_CHARS)
    title = normalize.clean_text(entry.get("title"), MAX_TITLE_CHARS)
    if not title:
        title = summary[:200]
    if not title:
        return None, "no title or summary"
    raw_guid = _guid(entry)[:MAX_URL_CHARS]
    guid = normalize.trusted_guid(raw_guid, guid_counts.get(raw_guid, 0) > 1)
    canonical = normalize.canonical_url(link)
    if guid is None and canonical is None:
        # Nothing stable identifies the item: key it on its content, so a re-run (or an undated copy
        # after the title window) finds it again, and distinct items that share a junk guid stay apart.
        guid = normalize.content_key(raw_guid, title, summary)
    raw_date = entry.get("published") or entry.get("updated") or entry.get("created")
    parsed = entry.get("published_parsed") or entry.get("updated_parsed") or entry.get("created_parsed")
    published = normalize.parse_date(raw_date if isinstance(raw_date, str) else None, parsed, default_tz)
    note = ""
    if published is not None and not sane[0] <= published <= sane[1]:
        published, note = None, _BAD_DATE
    return (
        Story(
            guid=guid,
            url=link,
            canonical_url=canonical,
            title=title,
            summary=summary,
            published_at=published,
            content_hash=normalize.content_hash(title, summary),
            title_hash=normalize.title_hash(title),
        ),
        note,
    )


def _first_content(entry) -> str:
    content = entry.get("content") or []
    return content[0].get("value", "") if content else ""
