"""Plain records passed between the ingestion steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class FeedSpec:
    """One registry entry."""

    name: str
    url: str
    timezone: str | None = None  # zone for dates without one; None = global default
    dedupe_titles: bool = True  # off for feeds whose distinct items share titles (SEC)
    enabled: bool = True
    timeout_s: float | None = None
    max_bytes: int | None = None
    tags: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()  # hosts (and their redirects) exempt from the non-public-address refusal
    root: str | None = None  # the registry's folder: file: URLs may read under it
    min_interval_s: float | None = None  # fast lane: at least this long between polls (None = the global default)


@dataclass(frozen=True)
class Story:
    guid: str | None
    url: str | None
    canonical_url: str | None
    title: str
    summary: str
    published_at: datetime | None
    content_hash: str
    title_hash: str


@dataclass
class FetchResult:
    status: str  # ok | not_modified | error
    http_status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    final_url: str | None = None
    redirects: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass
class ParseResult:
    stories: list[Story]
    skipped: int = 0  # items dropped: no title/link, or unreadable (see skip_reasons)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    warning: str | None = None
    error: str | None = None


@dataclass
class FeedOutcome:
    spec: FeedSpec
    fetch: FetchResult
    parsed: ParseResult | None
    fetched_at: datetime

    @property
    def error(self) -> str | None:
        """Why this feed yielded nothing: the download's error, else the parser's."""
        return self.fetch.error or (self.parsed.error if self.parsed else None)
