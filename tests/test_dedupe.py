from datetime import UTC, datetime, timedelta

from pipeline.ingest import normalize
from pipeline.ingest.dedupe import dedupe
from pipeline.ingest.model import Story

T0 = datetime(2026, 8, 10, 12, tzinfo=UTC)
DAY = timedelta(hours=24)


def story(title, guid=None, url=None, when=T0):
    return Story(
        guid,
        url,
        normalize.canonical_url(url),
        title,
        "",
        when,
        normalize.content_hash(title, ""),
        normalize.title_hash(title),
    )


def test_same_guid_or_canonical_url_is_one_story():
    items = [
        story("A", guid="g1", url="https://x.com/1"),
        story("A again", guid="g1", url="https://x.com/1b"),
        story("B", url="https://x.com/2?utm_source=rss"),
        story("B copy", url="https://x.com/2#comments"),
    ]
    kept, dropped = dedupe(items, T0, DAY)
    assert [s.title for s in kept] == ["A", "B"] and dropped == 2


def test_syndicated_title_within_window_only():
    items = [
        story("Oil jumps 5%", url="https://a.com/1"),
        story("OIL JUMPS 5%!", url="https://b.com/9", when=T0 + timedelta(hours=3)),
        story("Oil jumps 5%", url="https://c.com/3", when=T0 + timedelta(days=3)),
    ]
    kept, dropped = dedupe(items, T0, DAY)
    assert [s.url for s in kept] == ["https://a.com/1", "https://c.com/3"] and dropped == 1
    kept, dropped = dedupe(items, T0, DAY, by_title=False)
    assert len(kept) == 3 and dropped == 0


def test_missing_dates_use_fetch_time():
    items = [story("Same", url="https://a.com/1", when=None), story("Same", url="https://b.com/1", when=None)]
    kept, dropped = dedupe(items, T0, DAY)
    assert len(kept) == 1 and dropped == 1
