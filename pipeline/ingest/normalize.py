"""Pure text, URL and date normalisation for feed items (no I/O)."""

from __future__ import annotations

import email.utils
import hashlib
import html
import re
import time
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

_WS = re.compile(r"\s+")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
_RFC822_ZONE = re.compile(r"\d{1,2}:\d{2}(:\d{2})?\s*([+-]\d{4}|[A-Za-z]{1,5})\s*$")
_RFC822_YEAR = re.compile(r"\b\d{1,2}\s+[A-Za-z]{3,9}\.?\s+(\d{2,4})\b")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S")
_BLOCK_TAGS = {"p", "br", "div", "li", "ul", "ol", "tr", "td", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}
_SKIP_TAGS = {"script", "style", "noscript", "template"}

# Query parameters that identify a campaign or a click, never the story.
TRACKING_PREFIXES = ("utm_", "at_", "mc_", "_hs", "pk_", "mtm_")
TRACKING_PARAMS = {
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "yclid",
    "igshid",
    "ocid",
    "cmpid",
    "ncid",
    "guccounter",
    "guce_referrer",
    "guce_referrer_sig",
    "yptr",
    "mkt_tok",
    "spm",
    "rss",
    "feedtype",
    "cmp",
    "ref_src",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)  # item dates before this are taken for junk


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def clean_text(value: str | None, max_chars: int | None = None) -> str:
    """Plain text from feed HTML: tags stripped, entities unescaped, spaces collapsed.

    Entities are unescaped a second time when the first pass leaves some
    behind, because many feeds double-escape (``&amp;#39;``).
    """
    if not value:
        return ""
    parser = _TextExtractor()
    parser.feed(value)
    parser.close()
    text = "".join(parser.parts)
    if _ENTITY.search(text):
        text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if ch in "\t\n" or unicodedata.category(ch)[0] != "C")
    text = _WS.sub(" ", text).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


def clean_field(value: str | None) -> str:
    """Identifier-like text (guid, link, header, error) without NUL, control characters or lone surrogates."""
    if not value:
        return ""
    return "".join(ch for ch in value if unicodedata.category(ch)[0] != "C")


def content_key(raw_guid: str, title: str, summary: str) -> str:
    """A stable guid for an item with no trusted guid and no link: its (guid,) title and summary."""
    return "urn:finsent:content:" + sha256(f"{raw_guid}\n{normalized_title(title)}\n{_WS.sub(' ', summary)}")[:40]


def canonical_url(url: str | None) -> str | None:
    """The story's address without tracking parameters, fragment or default port."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return url if _URI_SCHEME.match(url) else None
    host = (parts.hostname or "").lower()
    if not host:
        return None
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
    ]
    query.sort()
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, urlencode(query, doseq=True), ""))


def trusted_guid(guid: str | None, shared_in_document: bool) -> str | None:
    """A guid we can key stories on, or None.

    Absolute URIs (URLs, ``urn:``, ``tag:``) are trusted. A bare token is
    trusted only when no other item of the same document carries it: some
    feeds put one constant (e.g. a query string) in every item's guid.
    """
    if not guid:
        return None
    guid = guid.strip()
    if not guid:
        return None
    if _URI_SCHEME.match(guid):
        return guid
    return None if shared_in_document else guid


def normalized_title(title: str) -> str:
    """Title reduced for syndication matching: case, punctuation and spacing removed."""
    text = unicodedata.normalize("NFKC", title).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return _WS.sub(" ", text).strip()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def title_hash(title: str) -> str:
    return sha256(normalized_title(title))


def content_hash(title: str, summary: str) -> str:
    return sha256(normalized_title(title) + "\n" + _WS.sub(" ", summary).strip())


def parse_date(
    raw: str | None,
    parsed_utc: time.struct_time | None = None,
    default_tz: str = "UTC",
) -> datetime | None:
    """Feed date -> aware UTC datetime.

    Handles RFC 822 (with zone names such as EST) and ISO 8601. A date that
    carries no zone is read in ``default_tz`` (the feed's configured zone).
    Falls back to feedparser's own parse (already UTC) for exotic formats.
    """
    try:
        tz = ZoneInfo(default_tz)
    except (ValueError, KeyError, OSError):
        tz = UTC
    if raw:
        dt = _parse_text_date(raw.strip())
        if dt is _INVALID:
            return None  # a date we recognise but whose fields are out of range: unknown, not a guess
        if dt is not None:
            try:
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=tz)
                return dt.astimezone(UTC)
            except (OverflowError, ValueError):
                return None
    if parsed_utc is not None:
        try:
            return datetime(*parsed_utc[:6], tzinfo=UTC)
        except (TypeError, ValueError, OverflowError):
            return None
    return None


_INVALID = datetime.min.replace(tzinfo=UTC)  # sentinel: recognised as a date, but out of range


def _parse_text_date(text: str) -> datetime | None:
    """ISO 8601 or RFC 822; ``_INVALID`` for one out of range (zone offset past 24 h, year 0, hour 25...);
    None for a format we do not know (feedparser's own parse is tried then)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        pass
    try:
        parsed = email.utils.parsedate_tz(text)
    except (ValueError, OverflowError, TypeError, IndexError):
        return None
    if parsed is None:
        return None
    written = _RFC822_YEAR.search(text)
    if not 1900 < parsed[0] < 10000 or (written and len(written.group(1)) == 4 and int(written.group(1)) != parsed[0]):
        return _INVALID  # email.utils reads "0000" as 2000
    try:
        naive = datetime(*parsed[:6])
        if parsed[9] is None or not _RFC822_ZONE.search(text):
            return naive
        return naive.replace(tzinfo=timezone(timedelta(seconds=parsed[9])))
    except (ValueError, OverflowError):
        return _INVALID
