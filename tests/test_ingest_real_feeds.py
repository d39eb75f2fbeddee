"""Real feed snapshots served over loopback HTTP into a real PostgreSQL."""

from datetime import UTC, datetime

import pytest

from pipeline.ingest.model import FeedSpec
from pipeline.ingest.run import ingest
from tests.helpers import REAL, query

# items in the file -> distinct stories, with the reason where they differ
EXPECTED = {
    "bbc_business_2026-08-14.xml": (52, 50),  # 2 stories repeated under guid fragments #0/#3
    "bloomberg_markets_2026-08-11.xml": (20, 20),
    "cnbc_finance_2026-08-14.xml": (30, 30),
    "coindesk_2026-08-11.xml": (25, 25),
    "fed_press_all_2026-06-18.xml": (20, 20),
    "googlenews_reuters_2026-08-11.xml": (100, 100),
    "investing_stock_market_news_2026-08-14.xml": (10, 10),
    "sec_edgar_getcurrent_atom_2016-02-17.xml": (100, 99),  # one filing listed for two filers
    "sec_edgar_getcurrent_atom_2016-02-25.xml": (40, 32),  # 8 filings listed for two filers
    "sec_xbrlrss-2006-02.xml": (2, 2),
    "sec_xbrlrss-2009-02.xml": (32, 32),  # repeated titles are distinct filings days apart
    "wsj_world_news_2025-01-27.xml": (20, 20),
    "yahoo_finance_headline_NVDA_2026-09-26.xml": (20, 20),
    "yahoo_finance_news_2026-08-14.xml": (48, 48),  # 7 share one junk guid, yet are distinct
}


def spec(server, name: str, **kw) -> FeedSpec:
    dedupe_titles = not name.startswith("sec_")
    return FeedSpec(name=name, url=server.url(f"real/{name}"), dedupe_titles=dedupe_titles, **kw)


def test_all_snapshots_are_listed():
    assert sorted(p.name for p in REAL.glob("*.xml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_snapshot_yields_one_row_per_distinct_story(db_url, feed_server, name):
    seen, distinct = EXPECTED[name]
    summary = ingest(specs=[spec(feed_server, name)], database_url=db_url)
    feed = summary["feeds"][0]
    assert (feed["status"], feed["items_seen"], feed["new"], feed["duplicates"]) == (
        "ok",
        seen,
        distinct,
        seen - distinct,
    )
    assert query(db_url, "SELECT count(*) FROM articles")[0][0] == distinct
    # every stored time is UTC-aware and no story is stored twice
    assert query(db_url, "SELECT count(*) FROM articles WHERE published_at IS NULL")[0][0] == 0
    assert query(db_url, "SELECT count(*), count(DISTINCT canonical_url) FROM articles")[0] == (distinct, distinct)


def test_second_run_adds_nothing_with_and_without_conditional_get(db_url, feed_server):
    specs = [spec(feed_server, n) for n in sorted(EXPECTED)]
    first = ingest(specs=specs, database_url=db_url)
    total = sum(d for _, d in EXPECTED.values())
    assert first["totals"]["new"] == total == query(db_url, "SELECT count(*) FROM articles")[0][0]
    assert first["totals"]["feeds_failed"] == 0

    # The server honours If-None-Match: every feed answers 304 and nothing is parsed.
    second = ingest(specs=specs, database_url=db_url)
    assert {f["status"] for f in second["feeds"]} == {"not_modified"}
    assert second["totals"]["new"] == 0
    sent = [h for path, h in feed_server.requests if path.startswith("/real/")]
    assert sum("if-none-match" in h for h in sent) == len(EXPECTED)
    assert all(h["user-agent"].startswith("finsent/") for h in sent)

    # A server that ignores validators: everything re-downloaded, all duplicates.
    feed_server.conditional = False
    third = ingest(specs=specs, database_url=db_url)
    assert {f["status"] for f in third["feeds"]} == {"ok"}
    assert third["totals"]["new"] == 0 and third["totals"]["duplicates"] == third["totals"]["items_seen"]
    assert query(db_url, "SELECT count(*) FROM articles")[0][0] == total
    assert query(db_url, "SELECT count(*) FROM ingest_runs")[0][0] == 3


def test_same_snapshot_under_two_feed_names_is_stored_once(db_url, feed_server):
    name = "cnbc_finance_2026-08-14.xml"
    a = FeedSpec(name="cnbc", url=feed_server.url(f"real/{name}"))
    b = FeedSpec(name="cnbc-mirror", url=feed_server.url(f"real/{name}?mirror=1"))
    summary = ingest(specs=[a, b], database_url=db_url)
    assert summary["totals"]["new"] == 30 and summary["totals"]["duplicates"] == 30


def test_times_are_stored_in_utc(db_url, feed_server):
    names = [
        "sec_edgar_getcurrent_atom_2016-02-25.xml",
        "sec_xbrlrss-2006-02.xml",
        "investing_stock_market_news_2026-08-14.xml",
    ]
    specs = [spec(feed_server, n) for n in names[:2]]
    specs.append(FeedSpec(name=names[2], url=feed_server.url(f"real/{names[2]}"), timezone="America/New_York"))
    ingest(specs=specs, database_url=db_url)

    def published(title_like: str):
        return query(
            db_url,
            "SELECT published_at FROM articles WHERE title LIKE %s ORDER BY published_at DESC LIMIT 1",
            (title_like,),
        )[0][0]

    utc = UTC
    # Atom -05:00 -> UTC
    assert query(
        db_url,
        "SELECT max(published_at) FROM articles a JOIN feeds f ON f.id = a.feed_id WHERE f.name = %s",
        (names[0],),
    )[0][0] == datetime(2016, 2, 25, 22, 29, 49, tzinfo=utc)
    # RFC 822 with the zone name EST -> UTC
    assert query(
        db_url,
        "SELECT max(published_at) FROM articles a JOIN feeds f ON f.id = a.feed_id WHERE f.name = %s",
        (names[1],),
    )[0][0] == datetime(2006, 2, 8, 21, 29, 5, tzinfo=utc)
    # no zone at all ("2026-08-14 07:54:20"): read in the feed's configured zone
    assert query(
        db_url,
        "SELECT max(published_at) FROM articles a JOIN feeds f ON f.id = a.feed_id WHERE f.name = %s",
        (names[2],),
    )[0][0] == datetime(2026, 8, 14, 11, 54, 20, tzinfo=utc)
    assert published("%") is not None


def test_tracking_parameters_and_html_are_stripped(db_url, feed_server):
    ingest(specs=[spec(feed_server, "bbc_business_2026-08-14.xml")], database_url=db_url)
    rows = query(db_url, "SELECT url, canonical_url, title, summary FROM articles")
    assert all("at_medium" in url for url, *_ in rows)  # kept as published
    assert not any("at_medium" in c or "#" in c for _, c, *_ in rows)  # canonical form
    assert not any("<" in t or "&amp;" in t or "<" in s for _, _, t, s in rows)
    feeds = query(
        db_url, "SELECT last_status, etag IS NOT NULL, last_modified IS NOT NULL, last_items, last_error FROM feeds"
    )
    assert feeds == [("ok", True, True, 52, None)]
