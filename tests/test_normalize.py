"""Pure normalisation: text, URLs, guids and dates."""

from datetime import UTC, datetime

import pytest

from pipeline.ingest import normalize as n


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<p>Stocks <b>rally</b></p><p>again</p>", "Stocks rally again"),
        ("AT&amp;T &lt;beats&gt; estimates", "AT&T <beats> estimates"),
        ("Investors&amp;#39; mood", "Investors' mood"),  # double-escaped entity
        ("safe<script>alert('x')</script> text", "safe text"),
        ("  spaced\n\t out  ", "spaced out"),
        ("caf\u0065\u0301 bell\x07", "caf\u00e9 bell"),  # NFC, control char dropped
        (None, ""),
    ],
)
def test_clean_text(raw, expected):
    assert n.clean_text(raw) == expected


def test_clean_text_truncates_with_ellipsis():
    out = n.clean_text("word " * 100, max_chars=20)
    assert len(out) <= 20 and out.endswith("…")


@pytest.mark.parametrize(
    "url, expected",
    [
        (
            "https://www.bbc.co.uk/news/articles/ckg6x3n5erpo?at_medium=RSS&at_campaign=rss",
            "https://www.bbc.co.uk/news/articles/ckg6x3n5erpo",
        ),
        ("HTTPS://Example.COM:443/a/b?utm_source=x&id=7&utm_medium=rss#frag", "https://example.com/a/b?id=7"),
        ("http://example.com:8080/x?b=2&a=1", "http://example.com:8080/x?a=1&b=2"),
        ("https://www.investors.com/news/x/?src=A00220&yptr=yahoo", "https://www.investors.com/news/x/?src=A00220"),
        ("https://example.com", "https://example.com/"),
        ("urn:tag:sec.gov,2008:accession-number=1", "urn:tag:sec.gov,2008:accession-number=1"),
        ("", None),
        ("not a url", None),
        (None, None),
    ],
)
def test_canonical_url(url, expected):
    assert n.canonical_url(url) == expected


def test_trusted_guid():
    assert n.trusted_guid("urn:tag:sec.gov,2008:accession-number=1", shared_in_document=True)
    assert n.trusted_guid("https://x.com/a#0", shared_in_document=True)
    assert n.trusted_guid("108123456", shared_in_document=False) == "108123456"
    assert n.trusted_guid("?src=A00220&yptr=yahoo", shared_in_document=True) is None
    assert n.trusted_guid("   ", shared_in_document=False) is None


UTC = UTC


@pytest.mark.parametrize(
    "raw, tz, expected",
    [
        ("Fri, 14 Aug 2026 07:45:51 GMT", "UTC", datetime(2026, 8, 14, 7, 45, 51, tzinfo=UTC)),
        ("Mon, 27 Jan 2025 14:23:00 -0500", "UTC", datetime(2025, 1, 27, 19, 23, tzinfo=UTC)),
        ("Wed, 08 Feb 2006 16:29:05 EST", "UTC", datetime(2006, 2, 8, 21, 29, 5, tzinfo=UTC)),
        ("2016-02-25T17:29:49-05:00", "UTC", datetime(2016, 2, 25, 22, 29, 49, tzinfo=UTC)),
        ("2026-08-12T22:17:00Z", "UTC", datetime(2026, 8, 12, 22, 17, tzinfo=UTC)),
        # no zone: read in the feed's configured zone
        ("2026-08-14 07:54:20", "UTC", datetime(2026, 8, 14, 7, 54, 20, tzinfo=UTC)),
        ("2026-08-14 07:54:20", "America/New_York", datetime(2026, 8, 14, 11, 54, 20, tzinfo=UTC)),
        ("Fri, 14 Aug 2026 07:45:51", "Europe/London", datetime(2026, 8, 14, 6, 45, 51, tzinfo=UTC)),
    ],
)
def test_parse_date_to_utc(raw, tz, expected):
    got = n.parse_date(raw, None, tz)
    assert got == expected and got.tzinfo == UTC


def test_parse_date_falls_back_to_feedparser_then_none():
    import time

    parsed = time.struct_time((2026, 8, 1, 3, 4, 5, 0, 0, 0))
    assert n.parse_date("garbage date", parsed) == datetime(2026, 8, 1, 3, 4, 5, tzinfo=UTC)
    assert n.parse_date("garbage date", None) is None
    assert n.parse_date(None, None) is None


def test_title_hash_ignores_case_punctuation_spacing():
    assert n.title_hash("Fed Holds Rates Steady!") == n.title_hash("  fed holds rates   steady ")
    assert n.title_hash("Fed holds rates") != n.title_hash("Fed cuts rates")
