"""Ingestion throughput: stories/s for N feeds x M items served on loopback.

Measures the full path (HTTP fetch + feedparser + normalise/dedupe + store in
PostgreSQL) into a fresh database, and, in the same run, two baselines:
feedparser alone on the same bytes (the parsing floor) and the same pass
with concurrency 1 (what the thread pool buys). A second pass over the same
feeds measures the re-run (all duplicates) cost.

    .state/venv/bin/python -m bench.ingest --feeds 20 --items 100 [--latency 0.3]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

import feedparser

from pipeline import config, db
from pipeline.ingest.model import FeedSpec
from pipeline.ingest.run import ingest
from tests.feedserver import FeedServer, synthetic_feed

ROOT = Path(__file__).resolve().parent.parent


def fresh_db(server_url: str) -> str:
    url = db.ensure_database(server_url, "bench_" + uuid.uuid4().hex[:10])
    db.migrate(url)
    return url


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=20)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds each feed response is delayed")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    server_url = db.database_url()
    n_items = args.feeds * args.items
    settings = config.load()
    rows = []
    with FeedServer(ROOT / "tests" / "data" / "feeds", conditional=False) as srv:
        specs = [
            FeedSpec(  # the local server is loopback: allowed for these feeds only, as a registry entry would say
                name=f"bench-{i}",
                url=srv.url(f"-/synthetic/{i}.xml?items={args.items}&delay={args.latency}"),
                allow_hosts=("127.0.0.1",),
            )
            for i in range(args.feeds)
        ]

        docs = [synthetic_feed(i, args.items) for i in range(args.feeds)]
        t = time.perf_counter()
        parsed = sum(len(feedparser.parse(d).entries) for d in docs)
        rows.append(("baseline: feedparser.parse only (no I/O)", parsed, time.perf_counter() - t))

        for conc in (1, args.concurrency):
            s = replace(settings, ingest=replace(settings.ingest, concurrency=conc))
            url = fresh_db(server_url)
            t = time.perf_counter()
            out = ingest(specs=specs, database_url=url, settings=s)
            el = time.perf_counter() - t
            assert out["totals"]["new"] == n_items, out["totals"]
            label = "baseline: full pass, concurrency 1" if conc == 1 else f"finsent: full pass, concurrency {conc}"
            rows.append((label, n_items, el))
            if conc != 1:
                t = time.perf_counter()
                again = ingest(specs=specs, database_url=url, settings=s)
                assert again["totals"]["new"] == 0
                rows.append((f"finsent: re-run, all duplicates, concurrency {conc}", n_items, time.perf_counter() - t))

    print(
        f"\ningest benchmark: {args.feeds} feeds x {args.items} items = {n_items} stories; "
        f"{args.latency:g}s simulated latency per feed; {os.cpu_count()} CPU cores; PostgreSQL {server_url.split('?')[0]}"
    )
    print(f"{'path':<52} {'stories':>8} {'seconds':>8} {'stories/s':>10}")
    for label, n, el in rows:
        print(f"{label:<52} {n:>8} {el:>8.2f} {n / el:>10.0f}")


if __name__ == "__main__":
    main()
