"""Feed bytes -> normalised Story records (feedparser does the XML)."""

from __future__ import annotations

from collections import Counter

import feedparser

from pipeline.ingest import normalize
from pipeline.ingest.model import ParseResult, Story

MAX_SUMMARY_CHARS = 4000
MAX_TITLE_CHARS = 1000


def parse(
    body: bytes, headers: dict[str, str] | None = None, base_url: str | None = None, default_tz: str = "UTC"
) -> ParseResult:
    """Parse one feed document.

    A document feedparser flags as ill-formed ("bozo") still yields its items
    with a warning; one that yields no items at all is an error.
    """
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    if base_url and "content-location" not in response_headers:
        response_headers["content-location"] = base_url
    try:
        doc = feedparser.parse(body, response_headers=response_headers)
    except Exception as exc:  # feedparser is defensive, but never trust input
        return ParseResult([], error=f"parser crashed: {type(exc).__name__}: {exc}")
    warning = None
    if doc.get("bozo"):
        exc = doc.get("bozo_exception")
        warning = f"ill-formed feed: {type(exc).__name__}: {exc}"[:500]
    entries = doc.get("entries") or []
    if not entries:
        if warning:
            return ParseResult([], error=warning)
        if not doc.get("version"):
            return ParseResult([], error="not a feed: no RSS/Atom document found")
        return ParseResult([])
    guid_counts = Counter((e.get("id") or "").strip() for e in entries)
    stories: list[Story] = []
    skipped = 0
    for entry in entries:
        story = _story(entry, guid_counts, default_tz)
        if story is None:
            skipped += 1
        else:
            stories.append(story)
    return ParseResult(stories, skipped=skipped, warning=warning)


def _story(entry, guid_counts: Counter, default_tz: str) -> Story | None:
    link = (entry.get("link") or "").strip() or None
    summary = normalize.clean_text(entry.get("summary") or _first_content(entry), MAX_SUMMARY_CHARS)
    title = normalize.clean_text(entry.get("title"), MAX_TITLE_CHARS)
    if not title:
        title = summary[:200]
    if not title:
        return None
    raw_guid = (entry.get("id") or "").strip()
    guid = normalize.trusted_guid(raw_guid, guid_counts.get(raw_guid, 0) > 1)
    raw_date = entry.get("published") or entry.get("updated") or entry.get("created")
    parsed = entry.get("published_parsed") or entry.get("updated_parsed") or entry.get("created_parsed")
    return Story(
        guid=guid,
        url=link,
        canonical_url=normalize.canonical_url(link),
        title=title,
        summary=summary,
        published_at=normalize.parse_date(raw_date, parsed, default_tz),
        content_hash=normalize.content_hash(title, summary),
        title_hash=normalize.title_hash(title),
    )


def _first_content(entry) -> str:
    content = entry.get("content") or []
    return content[0].get("value", "") if content else ""
