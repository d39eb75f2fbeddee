"""Pure de-duplication of stories within one batch (the database handles runs)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pipeline.ingest.model import Story


def story_time(story: Story, fetched_at: datetime) -> datetime:
    return story.published_at or fetched_at


def dedupe(
    stories: Iterable[Story],
    fetched_at: datetime,
    title_window: timedelta,
    by_title: bool = True,
) -> tuple[list[Story], int]:
    """Keep the first of each story; return (kept, number dropped).

    Two items are the same story when they share a guid, a canonical URL, or
    (if ``by_title``) a normalised title within ``title_window`` of each other.
    """
    kept: list[Story] = []
    guids: set[str] = set()
    urls: set[str] = set()
    titles: dict[str, list[datetime]] = {}
    dropped = 0
    for story in stories:
        when = story_time(story, fetched_at)
        if story.guid and story.guid in guids:
            dropped += 1
            continue
        if story.canonical_url and story.canonical_url in urls:
            dropped += 1
            continue
        if by_title and any(abs(when - t) <= title_window for t in titles.get(story.title_hash, ())):
            dropped += 1
            continue
        kept.append(story)
        if story.guid:
            guids.add(story.guid)
        if story.canonical_url:
            urls.add(story.canonical_url)
        titles.setdefault(story.title_hash, []).append(when)
    return kept, dropped
