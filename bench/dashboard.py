"""Dashboard render time on a large store: seeds N stories (default 1,000,000) with scores,
hourly stats and alerts into a fresh database, then times each page with Streamlit's AppTest,
cold (empty caches) and warm (within the cache TTL). Target: every page under 2 s.

    .state/venv/bin/python -m bench.dashboard [--stories 1000000] [--keep]

Headlines are real ones (Twitter Financial News topic set) so text search works on real words.
The baseline printed beside it is the naive approach the dashboard avoids: loading the stories
and their scores into pandas and aggregating there.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from psycopg2 import sql

from pipeline import db
from pipeline.classify.datasets import sources
from pipeline.classify.model.labels import TOPICS

ROOT = Path(__file__).resolve().parent.parent

MODEL = "bench-model"
PAGES = ["Overview", "Alerts", "Headlines", "Pipeline health", "Companies"]


def copy(cur, table: str, columns: str, rows: io.StringIO) -> None:
    rows.seek(0)
    cols = sql.SQL(", ").join(sql.Identifier(c.strip()) for c in columns.split(","))
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(sql.Identifier(table), cols).as_string(cur), rows
    )


def seed(url: str, n: int, days: int, seed_: int = 1) -> None:
    import csv

    import pandas as pd

    rng = np.random.default_rng(seed_)
    raw = pd.read_csv(sources.registry()["tfns_topic"].path)["text"].str.replace(r"https?://\S+", "", regex=True)
    titles = [t.strip() for t in raw if t.strip()]
    end = datetime(2026, 11, 1, tzinfo=UTC)
    conn = db.connect(url)
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        feeds = [f"feed-{i:02d}" for i in range(12)]
        buf = io.StringIO()
        w = csv.writer(buf)
        for name in feeds:
            w.writerow([name, f"https://example.com/{name}.xml", "ok"])
        copy(cur, "feeds", "name, url, last_status", buf)
        cur.execute("SELECT id FROM feeds ORDER BY name")
        feed_ids = [r[0] for r in cur.fetchall()]
        cur.execute(
            "INSERT INTO models (version, path, method, base_model, data_sha256, training, created_at, is_active, "
            "promoted_at) VALUES (%s, '/bench', 'heads', 'bench', 'x', '{}', now(), true, now())",
            (MODEL,),
        )
        cur.execute("SELECT coalesce(max(id), 0) FROM articles")
        first_id = cur.fetchone()[0] + 1
        chunk = 200_000
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            secs = rng.integers(0, days * 86400, m)
            feed = rng.integers(0, len(feed_ids), m)
            tix = rng.integers(0, len(titles), m)
            topic = rng.integers(0, len(TOPICS), m)
            pneg = rng.beta(1.2, 5, m)
            ppos = (1 - pneg) * rng.beta(1.5, 4, m)
            art, sc = io.StringIO(), io.StringIO()
            wa, ws = csv.writer(art), csv.writer(sc)
            for j in range(m):
                pub = end - timedelta(seconds=int(secs[j]))
                aid = first_id + start + j
                wa.writerow(
                    [
                        aid,
                        feed_ids[feed[j]],
                        uuid.uuid4().hex,
                        f"https://example.com/s/{aid}",
                        titles[tix[j]],
                        pub.isoformat(),
                        pub.isoformat(),
                        "h",
                        "t",
                    ]
                )
                sent = "negative" if pneg[j] > 0.4 else ("positive" if ppos[j] > 0.45 else "neutral")
                ws.writerow(
                    [
                        aid,
                        MODEL,
                        sent,
                        round(float(pneg[j]), 4),
                        round(float(1 - pneg[j] - ppos[j]), 4),
                        round(float(ppos[j]), 4),
                        TOPICS[topic[j]],
                        0.8,
                    ]
                )
            copy(
                cur,
                "articles",
                "id, feed_id, guid, url, title, published_at, fetched_at, content_hash, title_hash",
                art,
            )
            copy(
                cur,
                "scores",
                "article_id, model_version, sentiment, p_negative, p_neutral, p_positive, topic, topic_confidence",
                sc,
            )
            conn.commit()
            print(
                f"  seeded {start + m:,}/{n:,} stories ({(start + m) / (time.perf_counter() - t0):,.0f}/s)",
                file=sys.stderr,
            )
        cur.execute("SELECT setval('articles_id_seq', (SELECT max(id) FROM articles))")
    conn.commit()
    from pipeline.alerts import aggregate

    t1 = time.perf_counter()
    rows = aggregate.recompute(conn, MODEL, end - timedelta(days=days + 1), end + timedelta(hours=1))
    print(f"  hourly stats: {rows:,} rows in {time.perf_counter() - t1:.1f}s", file=sys.stderr)
    with conn.cursor() as cur:  # a few alerts to list
        for i, topic in enumerate(TOPICS[:6]):
            h = end - timedelta(hours=30 * (i + 1))
            cur.execute(
                "INSERT INTO alerts (dimension, key, model_version, started_at, last_hour, window_end,"
                " observed_stories, observed_negatives, observed_share, baseline_share, baseline_stories, p_value,"
                " score, severity, peak_severity, status) VALUES ('topic', %s, %s, %s, %s, %s, 40, 24, 0.6, 0.2,"
                " 3000, 1e-7, 6.1, 'critical', 'critical', %s)",
                (topic, MODEL, h, h, h + timedelta(hours=1), "open" if i < 2 else "resolved"),
            )
        cur.execute("ANALYZE")
    conn.commit()
    conn.close()


def time_pages(url: str) -> list[tuple[str, float, float]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
    st.cache_data.clear()
    st.cache_resource.clear()
    out = []
    for page in PAGES:
        runs = []
        for _ in range(2):  # cold, then warm (cache TTL 60 s)
            at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
            at.query_params["page"] = page
            t = time.perf_counter()
            at.run()
            runs.append(time.perf_counter() - t)
            if at.exception:
                raise SystemExit(f"{page}: {at.exception[0].value}")
        out.append((page, runs[0], runs[1]))
    return out


def naive_baseline(url: str) -> float:
    """What a dashboard that loads tables into pandas would pay for the overview numbers."""
    import pandas as pd

    conn = db.connect(url)
    t = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT a.published_at, s.topic, s.sentiment, s.p_positive - s.p_negative FROM scores s "
            "JOIN articles a ON a.id = s.article_id"
        )
        df = pd.DataFrame(cur.fetchall(), columns=["published_at", "topic", "sentiment", "sent"])
    df["hour"] = pd.to_datetime(df["published_at"], utc=True).dt.floor("h")
    df.groupby(["hour", "topic"]).agg(stories=("sentiment", "size"), mean=("sent", "mean"))
    conn.close()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stories", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--keep", action="store_true", help="keep the bench database")
    args = ap.parse_args(argv)
    server = db.database_url()
    name = "bench_dashboard_" + uuid.uuid4().hex[:8]
    url = db.ensure_database(server, name)
    db.migrate(url)
    try:
        t = time.perf_counter()
        seed(url, args.stories, args.days)
        print(f"seeded {args.stories:,} stories in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        pages = time_pages(url)
        naive = naive_baseline(url)
    finally:
        if not args.keep:
            import psycopg2

            c = psycopg2.connect(server)
            c.autocommit = True
            c.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            c.close()
    print(
        f"\ndashboard benchmark: {args.stories:,} stories over {args.days} days; {os.cpu_count()} CPU cores; "
        f"target < 2 s per page"
    )
    print(f"{'page':<18} {'cold (s)':>9} {'warm (s)':>9}")
    for page, cold, warm in pages:
        print(f"{page:<18} {cold:>9.2f} {warm:>9.2f}")
    print(f"{'baseline: load scores+articles into pandas and aggregate there':<60} {naive:>6.2f} s")


if __name__ == "__main__":
    main()
