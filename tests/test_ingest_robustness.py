"""Ill-formed, oddly encoded, redirected, compressed and hostile feeds never stop a run."""

import re

import pytest

from pipeline import config
from pipeline.ingest.model import FeedSpec
from pipeline.ingest.run import ingest
from tests.helpers import FEEDS, FIXTURES, query

FIXTURE_FILES = sorted(
    p.relative_to(FEEDS).as_posix() for p in FIXTURES.rglob("*") if p.is_file() and p.suffix in (".xml", ".gz", ".z")
)


def expect_of(rel: str) -> str:
    m = re.search(rb"Expect:\s*(.*)", (FEEDS / rel).read_bytes()[:4096])
    return m.group(1).decode("latin-1").strip() if m else ""


def by_name(summary):
    return {f["name"]: f for f in summary["feeds"]}


@pytest.fixture()
def fixture_run(db_url, feed_server):
    specs = [FeedSpec(name=rel, url=feed_server.url(rel)) for rel in FIXTURE_FILES]
    return specs, ingest(specs=specs, database_url=db_url)


def test_every_fixture_is_recorded_and_the_run_completes(db_url, fixture_run):
    specs, summary = fixture_run
    feeds = by_name(summary)
    assert len(feeds) == len(FIXTURE_FILES) > 70
    assert summary["totals"]["feeds_ok"] > 0 and summary["totals"]["new"] > 0
    rows = query(db_url, "SELECT name, last_status, last_error, last_warning FROM feeds")
    assert len(rows) == len(FIXTURE_FILES)
    for name, status, error, _warning in rows:
        assert status in ("ok", "not_modified", "error"), name
        assert (status == "error") == bool(error), (name, status, error)
        assert feeds[name]["status"] == status


def test_ill_formed_fixtures_warn_or_fail_never_silently(fixture_run):
    """feedparser's own 'bozo' expectation: parsed with a warning, or skipped with an error."""
    feeds = by_name(fixture_run[1])
    bozo = [rel for rel in FIXTURE_FILES if re.match(r"^bozo\b", expect_of(rel))]
    assert len(bozo) >= 15
    for rel in bozo:
        f = feeds[rel]
        assert (f["status"] == "ok" and f["warning"]) or (f["status"] == "error" and f["error"]), (rel, f)


def test_well_formed_fixtures_parse_cleanly(fixture_run):
    feeds = by_name(fixture_run[1])
    clean = [rel for rel in FIXTURE_FILES if expect_of(rel).startswith("not bozo")]
    assert len(clean) >= 30
    for rel in clean:
        assert feeds[rel]["status"] == "ok" and not feeds[rel]["warning"], (rel, feeds[rel])


def test_http_statuses_redirects_and_compression(db_url, fixture_run):
    feeds = by_name(fixture_run[1])
    http = "feedparser-fixtures/v6.0.14/tests/http/"
    for code in ("301", "302", "303", "307"):
        f = feeds[f"{http}http_status_{code}.xml"]
        assert f["status"] == "ok" and f["items_seen"] == 1, f
        assert f["redirects"][0].startswith(code) and f["final_url"].endswith("/tests/http/target.xml")
    assert feeds[f"{http}http_status_404.xml"]["error"] == "HTTP 404 Not Found"
    assert "without Location" in feeds[f"{http}http_status_302-no-location.xml"]["error"]
    assert feeds[f"{http}http_redirect_to_304.xml"]["status"] == "not_modified"
    final = query(db_url, "SELECT final_url FROM feeds WHERE name = %s", (f"{http}http_status_301.xml",))[0][0]
    assert final.endswith("/tests/http/target.xml")
    comp = "feedparser-fixtures/v6.0.14/tests/compression/"
    assert feeds[comp + "gzip.gz"]["status"] == "ok" and feeds[comp + "deflate.z"]["status"] == "ok"
    for bad in ("gzip-struct-error.gz", "gzip-not-compressed.gz", "deflate-not-compressed.z"):
        assert feeds[comp + bad]["error"].startswith("bad content encoding"), bad


def test_conditional_get_answers_not_modified_on_second_run(db_url, feed_server, fixture_run):
    specs, first = fixture_run
    second = by_name(ingest(specs=specs, database_url=db_url))
    f304 = "feedparser-fixtures/v6.0.14/tests/http/http_status_304.xml"
    assert by_name(first)[f304]["status"] == "ok" and second[f304]["status"] == "not_modified"
    sent = [h for path, h in feed_server.requests if path.endswith("http_status_304.xml")]
    assert sent[-1]["if-none-match"] == '"abc123"'
    assert sum(f["new"] for f in second.values()) == 0


def test_encodings_are_decoded_and_markup_is_neutralised(db_url, fixture_run):
    def summary_of(rel):
        rows = query(
            db_url,
            "SELECT a.title, a.summary FROM articles a JOIN feeds f ON f.id = a.feed_id WHERE f.name = %s",
            (rel,),
        )
        return rows[0]

    assert summary_of("feedparser-fixtures/tests/encoding/euc-kr-item.xml")[1] == "\ub144"
    # demoronize-1 and -2 are one story (same title); whichever arrived first holds it
    assert query(db_url, "SELECT count(*) FROM articles WHERE summary = %s", ("don\u2019t",))[0][0] == 1
    texts = query(db_url, "SELECT title || ' ' || summary FROM articles")
    assert texts
    for (text,) in texts:
        low = text.lower()
        assert "<script" not in low and "javascript:" not in low and "onerror=" not in low, text


def test_server_errors_timeouts_and_oversized_bodies_do_not_stop_the_run(db_url, feed_server, monkeypatch):
    monkeypatch.setenv("FINSENT_FETCH_TIMEOUT_S", "1.5")
    monkeypatch.setenv("FINSENT_FETCH_MAX_BYTES", str(2 * 1024 * 1024))
    good = "real/cnbc_finance_2026-08-14.xml"
    specs = [
        FeedSpec(name="http-500", url=feed_server.url("-/status/500")),
        FeedSpec(name="slow-headers", url=feed_server.url("-/slow?seconds=4")),
        FeedSpec(name="trickle", url=feed_server.url("-/trickle?interval=0.2")),
        FeedSpec(name="big-chunked", url=feed_server.url("-/big?bytes=8000000")),
        FeedSpec(name="big-declared", url=feed_server.url("-/big-declared")),
        FeedSpec(name="not-a-feed", url=feed_server.url("-/status/200")),
        FeedSpec(name="refused", url="http://127.0.0.1:9/feed.xml"),
        FeedSpec(name="good", url=feed_server.url(good)),
    ]
    summary = ingest(specs=specs, database_url=db_url, settings=config.load())
    feeds = by_name(summary)
    assert feeds["good"]["status"] == "ok" and feeds["good"]["new"] == 30
    assert feeds["http-500"]["error"] == "HTTP 500 Internal Server Error"
    assert feeds["slow-headers"]["error"].startswith("timeout")
    assert feeds["trickle"]["error"].startswith("timeout")
    assert feeds["big-chunked"]["error"].startswith("body too large")
    assert feeds["big-declared"]["error"].startswith("body too large: Content-Length")
    assert feeds["not-a-feed"]["status"] == "error"
    assert feeds["refused"]["error"].startswith("ConnectionError")
    assert summary["totals"] == {
        "feeds": 8,
        "feeds_ok": 1,
        "feeds_failed": 7,
        "items_seen": 30,
        "new": 30,
        "duplicates": 0,
    }
    failures = query(db_url, "SELECT name, consecutive_failures FROM feeds WHERE last_status = 'error' ORDER BY name")
    assert len(failures) == 7 and all(n == 1 for _, n in failures)
