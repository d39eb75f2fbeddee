"""Fuzz: thousands of mutated real feed items through fetch (file:), parse, normalise, dedupe and store.

The items come from the real snapshots in tests/data/feeds/real; each is mutated a few times with a
seeded generator (control characters, NUL and surrogate references, broken markup, hostile dates, huge
fields, odd encodings). One ingest run takes them all: no exception may escape, the run is recorded,
every document ends as an ok or failed feed, and the untouched control feed lands in full.
"""

from __future__ import annotations

import random
import re

from pipeline import config
from pipeline.ingest.model import FeedSpec
from pipeline.ingest.parse import parse
from pipeline.ingest.run import ingest
from tests.feedserver import synthetic_feed
from tests.helpers import REAL, query

ITEMS = re.compile(rb"<(item|entry)\b.*?</\1>", re.S)
DATES = [
    b"Mon, 10 Aug 2026 12:00:00 +9999",
    b"Mon, 10 Aug 0000 12:00:00 GMT",
    b"31 Feb 2026 25:61:61 GMT",
    b"9999-12-31T23:59:59-23:59",
    b"0001-01-01T00:00:00+14:00",
    b"Fri, 01 Jan 2100 00:00:00 GMT",
    b"yesterday",
    b"",
    b"1e308",
    b"2026-08-10T12:00:00\x00Z",
]
JUNK = [
    b"\x00",
    b"&#0;",
    b"&#xD800;",
    b"&#xDFFF;",
    b"\xed\xa0\x80",  # a surrogate in CESU-8 / invalid UTF-8
    b"\xff\xfe",
    b"<![CDATA[",
    b"]]>",
    b"<script>alert(1)</script>",
    b"&amp;#x202E;",
    b"\x1b[31m",
    b"&bogus;",
    b"<",
    b"\r\n\r\n",
    "\u202e\u200b\ufeff".encode(),
    b"%00",
]


def mutate(rng: random.Random, item: bytes) -> bytes:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        if op == 0:  # insert junk anywhere
            at = rng.randrange(len(item) + 1)
            item = item[:at] + rng.choice(JUNK) + item[at:]
        elif op == 1:  # replace the date
            item = re.sub(
                rb"(<(pubDate|published|updated|dc:date)>).*?(</\2>)",
                lambda m: m.group(1) + rng.choice(DATES) + m.group(3),
                item,
                count=1,
                flags=re.S,
            )
        elif op == 2:  # truncate
            item = item[: rng.randrange(1, len(item) + 1)]
        elif op == 3:  # duplicate a tag (two guids, two links)
            m = re.search(rb"<(guid|link|id)\b[^>]*>.*?</\1>", item, re.S)
            if m:
                item = item[: m.end()] + m.group(0) + item[m.end() :]
        elif op == 4:  # a huge title
            item = re.sub(rb"<title>", b"<title>" + b"A" * rng.randint(1000, 200_000), item, count=1)
        elif op == 5:  # random bytes
            at = rng.randrange(len(item) + 1)
            item = item[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 20))) + item[at:]
        elif op == 6:  # drop the guid and link: nothing stable identifies it
            item = re.sub(rb"<(guid|link|id)\b[^>]*(/>|>.*?</\1>)", b"", item, flags=re.S)
        else:  # a javascript: or credential link
            item = re.sub(
                rb"<link>.*?</link>",
                rng.choice(
                    [
                        b"<link>javascript:alert(1)</link>",
                        b"<link>http://u:p@[::1]:99999/x</link>",
                        b"<link>http://%zz/</link>",
                    ]
                ),
                item,
                count=1,
                flags=re.S,
            )
    return item


def corpus(seed: int = 20261124, copies: int = 4) -> list[bytes]:
    rng = random.Random(seed)
    items = [m.group(0) for path in sorted(REAL.glob("*.xml")) for m in ITEMS.finditer(path.read_bytes())]
    assert len(items) > 400
    return [mutate(rng, it) for _ in range(copies) for it in items]


def document(items: list[bytes], atom: bool) -> bytes:
    if atom:
        return b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>f</title>' + (
            b"".join(items) + b"</feed>"
        )
    return b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>f</title>' + (
        b"".join(items) + b"</channel></rss>"
    )


def test_parse_never_raises_on_mutated_items():
    mutated = corpus()
    assert len(mutated) >= 2000
    stories = 0
    for i in range(0, len(mutated), 25):
        chunk = mutated[i : i + 25]
        result = parse(document(chunk, atom=b"<entry" in chunk[0][:10]))
        stories += len(result.stories)
        for s in result.stories:
            for text in (s.title, s.summary, s.guid or "", s.url or "", s.canonical_url or ""):
                assert "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    assert stories > len(mutated) // 3  # many mutated items stay readable; none may crash the parser


def test_ingest_of_mutated_feeds_records_every_feed_and_lands_the_control(db_url, tmp_path):
    mutated = corpus(seed=7, copies=3)
    specs = []
    for n, i in enumerate(range(0, len(mutated), 40)):
        chunk = mutated[i : i + 40]
        path = tmp_path / f"fuzz-{n}.xml"
        path.write_bytes(document(chunk, atom=b"<entry" in chunk[0][:10]))
        specs.append(FeedSpec(name=f"fuzz-{n}", url=path.as_uri(), root=str(tmp_path)))
    control = tmp_path / "control.xml"
    control.write_bytes(synthetic_feed(999, 30))  # distinct from every fuzzed item
    specs.append(FeedSpec(name="control", url=control.as_uri(), root=str(tmp_path)))
    summary = ingest(specs=specs, database_url=db_url, settings=config.load())
    feeds = {f["name"]: f for f in summary["feeds"]}
    assert len(feeds) == len(specs) and summary["run_id"]
    assert feeds["control"]["status"] == "ok" and feeds["control"]["new"] == 30
    assert all(f["status"] in ("ok", "error") for f in feeds.values())
    assert sum(f["status"] == "ok" for f in feeds.values()) > len(specs) // 2
    stored = query(db_url, "SELECT count(*) FROM articles")[0][0]
    assert stored == summary["totals"]["new"] and stored > 500
    assert query(db_url, "SELECT count(*) FROM ingest_runs") == [(1,)]
    # a second pass over the same documents stores nothing twice
    again = ingest(specs=specs, database_url=db_url, settings=config.load())
    assert again["totals"]["new"] == 0
