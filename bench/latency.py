"""Publication to alert, measured: the fast lane against the hourly-only set-up, on real Airflow processes.

Set-up (not timed): fresh pipeline and Airflow metadata databases on the embedded PostgreSQL; the active
model registered, promoted and its inference export made; a week of calm history (real held-out news
headlines, the model's own labels choosing calm and negative ones at the stream's base rate) imported,
scored and aggregated so that the detector has a baseline; an SMTP server on 127.0.0.1.

Then the real Airflow services run (api-server, scheduler, dag-processor, triggerer; LocalExecutor) with
``finsent_fast`` and ``finsent_hourly`` unpaused, while a feed server on 127.0.0.1 publishes stories at
known times in four RSS feeds (answering conditional GETs with 304): a calm stream (one story a minute,
about one in six negative), then a burst of negative stories (three a minute for ten minutes), then calm
again, ``--minutes`` in all (35 by default). Measured from the database: publish -> stored (the story's
row), publish -> scored (its score) and burst start -> alert opened (the overall surge alert), median / p95 /
max; polls per feed and how many were answered 304; alert emails. The **hourly-only baseline** in the same
run: a story published at t is stored and scored by the first hourly run after it, at the top of the next
hour plus the time that run takes to reach its ingest and classify ends, measured on an hourly run of the
same stack (the scheduled one if the stream crosses an hour, else one triggered at the end). Idle CPU:
the Airflow processes' CPU time over ``--idle-minutes`` with nothing published, fast lane on and off.

    .state/venv/bin/python -m bench.latency [--minutes 35] [--burst-at 20] [--idle-minutes 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

FEEDS = 4


class StreamServer:
    """RSS feeds whose items appear at their publication times; ETag over the items, 304 when unchanged."""

    def __init__(self, schedule: list[tuple[datetime, str, str, int]]) -> None:
        self.schedule = sorted(schedule)  # (published, guid, title, feed)
        self.polls: dict[int, int] = {f: 0 for f in range(FEEDS)}
        self.not_modified: dict[int, int] = {f: 0 for f in range(FEEDS)}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    feed = int(self.path.strip("/").split("-")[1].split(".")[0])
                except (IndexError, ValueError):
                    self.send_error(404)
                    return
                now = datetime.now(UTC)
                items = [s for s in server.schedule if s[3] == feed and s[0] <= now][-40:]
                etag = '"' + hashlib.sha256("".join(s[1] for s in items).encode()).hexdigest()[:16] + '"'
                server.polls[feed] += 1
                if self.headers.get("If-None-Match") == etag:
                    server.not_modified[feed] += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                body = (
                    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                    f"<title>stream {feed}</title><link>https://news.example/{feed}</link><description>bench</description>"
                    + "".join(
                        f"<item><title>{escape(t)}</title><link>https://news.example/{feed}/{g}</link>"
                        f'<guid isPermaLink="false">{g}</guid><pubDate>{format_datetime(p)}</pubDate></item>'
                        for p, g, t, _ in reversed(items)
                    )
                    + "</channel></rss>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, feed: int) -> str:
        return f"http://127.0.0.1:{self.port}/stream-{feed}.xml"

    def close(self) -> None:
        self.httpd.shutdown()


def labelled_pool(model_dir: str) -> tuple[list[str], list[str]]:
    """Real held-out news headlines split by the model's own label: (not negative, negative)."""
    from bench.hourly import headlines
    from pipeline.classify.model.predict import Classifier

    texts = list(dict.fromkeys(headlines(2400)))
    labels = Classifier.load(model_dir).predict(texts).sentiment
    calm = [t for t, y in zip(texts, labels, strict=True) if y != "negative"]
    neg = [t for t, y in zip(texts, labels, strict=True) if y == "negative"]
    return calm, neg


def plan_stream(start: datetime, minutes: int, burst_at: int, calm: list, neg: list, rng) -> list:
    """(published, guid, title, feed): one story a minute (1 in 6 negative), plus 3 negative a minute in the burst."""
    out = []
    for m in range(minutes):
        t = start + timedelta(minutes=m, seconds=rng.uniform(0, 59))
        title = neg.pop() if rng.random() < 1 / 6 else calm.pop()
        out.append((t, f"calm-{m}", title, m % FEEDS))
        if burst_at <= m < burst_at + 10:
            for j in range(3):
                tb = start + timedelta(minutes=m, seconds=rng.uniform(0, 59))
                out.append((tb, f"burst-{m}-{j}", neg.pop(), (m + j + 1) % FEEDS))
    return out


def seed_history(url: str, calm: list, neg: list, rng, now: datetime, days: int = 7) -> int:
    """A week of calm history before the stream (4 stories an hour, 1 in 6 negative): the detector's baseline."""
    import csv

    rows = []
    start = now - timedelta(days=days)
    hour = start.replace(minute=0, second=0, microsecond=0)
    end = now.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        for _ in range(4):
            title = neg.pop() if rng.random() < 1 / 6 else calm.pop()
            rows.append((hour + timedelta(minutes=rng.uniform(0, 59)), f"history-{rng.randrange(3)}", title))
        hour += timedelta(hours=1)
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["published", "source", "title"])
        for t, src, title in rows:
            w.writerow([t.isoformat(), src, title])
    from pipeline import db, tasks
    from pipeline.alerts.refresh import refresh
    from pipeline.ingest.headlines import import_csv

    os.environ["DATABASE_URL"] = url
    stored = import_csv(fh.name, database_url=url)
    tasks.classify()
    conn = db.connect(url)
    try:
        refresh(conn, (start, end), judge=False)
    finally:
        conn.close()
    os.unlink(fh.name)
    return int(stored.get("stored", 0)) if isinstance(stored, dict) else len(rows)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return f"median {statistics.median(values):.0f} s, p95 {pct(values, 0.95):.0f} s, max {max(values):.0f} s"


class Services:
    def __init__(self, env: dict, logdir: Path) -> None:
        self.env, self.logdir, self.procs = env, logdir, []

    def start(self, name: str, *args: str) -> None:
        log = open(self.logdir / f"{name}.log", "wb")
        cmd = [sys.executable, "-m", "airflow", *args]
        self.procs.append(
            subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def cpu_seconds(self) -> float:
        import psutil

        total = 0.0
        for p in self.procs:
            try:
                proc = psutil.Process(p.pid)
                for q in [proc, *proc.children(recursive=True)]:
                    t = q.cpu_times()
                    total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        import signal

        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def airflow(env: dict, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=600
    )
    if proc.returncode:
        raise SystemExit(f"airflow {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def hourly_offsets(meta_url: str) -> dict | None:
    """For the latest finished hourly run: seconds from its scheduled start to its ingest and classify ends."""
    import psycopg2

    conn = psycopg2.connect(meta_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT dr.run_id, dr.run_after, dr.start_date, dr.state, "
                "max(ti.end_date) FILTER (WHERE ti.task_id = 'ingest_feeds'), "
                "max(ti.end_date) FILTER (WHERE ti.task_id = 'classify'), "
                "max(ti.end_date) FILTER (WHERE ti.task_id = 'notify') "
                "FROM dag_run dr JOIN task_instance ti ON ti.run_id = dr.run_id AND ti.dag_id = dr.dag_id "
                "WHERE dr.dag_id = 'finsent_hourly' AND dr.state = 'success' "
                "AND dr.start_date - dr.run_after < interval '10 minutes' GROUP BY 1, 2, 3, 4 "
                "ORDER BY dr.start_date DESC LIMIT 1"
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if not row:
        return None
    run_id, run_after, started, _, ingest_end, classify_end, notify_end = row
    t0 = run_after
    return {
        "run_id": run_id,
        "queued_s": (started - t0).total_seconds(),
        "stored_s": (ingest_end - t0).total_seconds(),
        "scored_s": (classify_end - t0).total_seconds(),
        "alerted_s": (notify_end - t0).total_seconds(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=35, help="length of the published stream")
    ap.add_argument("--burst-at", type=int, default=20, help="minute at which the negative burst starts")
    ap.add_argument("--idle-minutes", type=float, default=3.0, help="each idle CPU measurement (fast lane on, off)")
    ap.add_argument("--schedule", default="*/2 * * * *", help="the fast lane's cron")
    ap.add_argument("--model", default=None)
    args = ap.parse_args(argv)

    import psycopg2
    from psycopg2 import sql

    from bench.classify import active_model_dir
    from bench.peers import cpu_info
    from pipeline import airflow_env, db
    from pipeline.classify.model.predict import Classifier
    from pipeline.classify.release import registry
    from tests.helpers import SMTPServer, free_port

    rng = random.Random(20261201)
    model_dir = args.model or active_model_dir()
    server = db.database_url()
    tag = uuid.uuid4().hex[:8]
    url = db.ensure_database(server, f"bench_latency_{tag}")
    meta = db.ensure_database(server, f"bench_latency_af_{tag}")
    db.migrate(url)
    conn = db.connect(url)
    registry.promote(conn, registry.register(conn, model_dir))
    conn.close()
    Classifier.load(model_dir)  # the backend's export is made here, not during the stream
    calm, neg = labelled_pool(model_dir)
    rng.shuffle(calm)
    rng.shuffle(neg)
    print(f"pool: {len(calm)} calm and {len(neg)} negative headlines (the model's labels)", flush=True)
    now = datetime.now(UTC)
    seeded = seed_history(url, calm, neg, rng, now)
    print(f"history: {seeded} stories over 7 days imported, scored and aggregated", flush=True)

    logdir = Path(tempfile.mkdtemp(prefix="finsent-latency-"))
    env = airflow_env.build_env(url, home=logdir / "home")
    smtp_port, api_port = free_port(), free_port()
    env.update(
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_env.sqlalchemy_url(meta),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "FINSENT_FETCH_ALLOW_HOSTS": "127.0.0.1",
            "FINSENT_FAST_SCHEDULE": args.schedule,
            "FINSENT_FEED_MIN_INTERVAL_S": "60",
            "AIRFLOW_CONN_SMTP_ALERTS": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "extra": {"disable_tls": True, "disable_ssl": True},
                }
            ),
        }
    )
    start = (datetime.now(UTC) + timedelta(minutes=3)).replace(second=0, microsecond=0)
    stream = plan_stream(start, args.minutes, args.burst_at, calm, neg, rng)
    feeds = StreamServer(stream)
    registry_file = logdir / "feeds.yaml"
    registry_file.write_text(
        "feeds:\n" + "".join(f"  - {{name: stream-{f}, url: '{feeds.url(f)}'}}\n" for f in range(FEEDS))
    )
    env["FINSENT_FEEDS_FILE"] = str(registry_file)
    airflow(env, "db", "migrate")
    services = Services(env, logdir)
    with SMTPServer(smtp_port) as smtp:
        try:
            services.start("api-server", "api-server", "--port", str(api_port))
            services.start("scheduler", "scheduler")
            services.start("dag-processor", "dag-processor")
            services.start("triggerer", "triggerer")
            for _ in range(60):  # the DAGs are parsed by the dag-processor
                if (
                    "finsent_fast"
                    in subprocess.run(
                        [sys.executable, "-m", "airflow", "dags", "list", "-o", "plain"],
                        env=env,
                        capture_output=True,
                        text=True,
                    ).stdout
                ):
                    break
                time.sleep(5)
            airflow(env, "dags", "unpause", "finsent_fast")
            airflow(env, "dags", "unpause", "finsent_hourly")
            end = start + timedelta(minutes=args.minutes)
            print(
                f"stream: {len(stream)} stories from {start:%H:%M:%S} to {end:%H:%M:%S} UTC, burst at minute {args.burst_at}",
                flush=True,
            )
            while datetime.now(UTC) < end + timedelta(minutes=4):
                time.sleep(30)
                c = psycopg2.connect(url)
                with c.cursor() as cur:
                    cur.execute(
                        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM scores), (SELECT count(*) FROM alerts)"
                    )
                    n, s, a = cur.fetchone()
                c.close()
                print(f"{datetime.now(UTC):%H:%M:%S} stored {n - seeded}, scored {s - seeded}, alerts {a}", flush=True)
            cpu_on0 = services.cpu_seconds()
            time.sleep(args.idle_minutes * 60)
            cpu_on = services.cpu_seconds() - cpu_on0
            airflow(env, "dags", "pause", "finsent_fast")
            time.sleep(30)
            cpu_off0 = services.cpu_seconds()
            time.sleep(args.idle_minutes * 60)
            cpu_off = services.cpu_seconds() - cpu_off0
            hourly = hourly_offsets(airflow_env.sqlalchemy_url(meta).replace("postgresql+psycopg2", "postgresql"))
            if hourly is None:  # the stream did not cross an hour: time one hourly run of the same stack
                airflow(env, "dags", "trigger", "finsent_hourly")
                for _ in range(120):
                    time.sleep(10)
                    hourly = hourly_offsets(
                        airflow_env.sqlalchemy_url(meta).replace("postgresql+psycopg2", "postgresql")
                    )
                    if hourly:
                        break
        finally:
            services.stop()
            feeds.close()
        emails = len(smtp.messages)

    c = psycopg2.connect(url)
    with c.cursor() as cur:
        cur.execute(
            "SELECT a.guid, a.fetched_at, min(s.scored_at) FROM articles a LEFT JOIN scores s ON s.article_id = a.id "
            "WHERE a.guid LIKE 'calm-%%' OR a.guid LIKE 'burst-%%' GROUP BY 1, 2"
        )
        seen = {g: (f, s) for g, f, s in cur.fetchall()}
        cur.execute(
            "SELECT count(*), count(DISTINCT guid) FROM articles WHERE guid LIKE 'calm-%%' OR guid LIKE 'burst-%%'"
        )
        rows, distinct = cur.fetchone()
        cur.execute("SELECT dimension, key, kind, created_at, started_at FROM alerts ORDER BY created_at")
        alerts = cur.fetchall()
        cur.execute("SELECT count(*), count(DISTINCT (alert_id, channel)) FROM alert_deliveries WHERE status = 'sent'")
        sent, sent_distinct = cur.fetchone()
    c.close()
    published = {g: p for p, g, _, _ in stream}
    stored = [(seen[g][0] - published[g]).total_seconds() for g in published if g in seen]
    scored = [(seen[g][1] - published[g]).total_seconds() for g in published if g in seen and seen[g][1]]
    burst_start = min(p for p, g, _, _ in stream if g.startswith("burst-"))
    overall = [a for a in alerts if a[0] == "overall" and a[3] >= burst_start]
    first_alert = [a for a in alerts if a[3] >= burst_start]
    print(f"\nmachine: {json.dumps(cpu_info())}; model {Path(model_dir).name}; fast lane cron {args.schedule!r}")
    print(f"published {len(stream)}, stored {len(seen)} (rows {rows}, distinct guids {distinct}), scored {len(scored)}")
    print(f"polls per feed: {feeds.polls}, answered 304: {feeds.not_modified}")
    print(
        f"alerts: {[(a[0], a[1], a[2], a[3].strftime('%H:%M:%S')) for a in alerts]}; emails {emails}; deliveries sent {sent} (distinct {sent_distinct})"
    )
    print("\n| lane | publish -> stored | publish -> scored | burst start -> alert opened |\n|---|---|---|---|")
    alert_s = (overall[0][3] - burst_start).total_seconds() if overall else None
    any_s = (first_alert[0][3] - burst_start).total_seconds() if first_alert else None
    print(
        f"| fast lane ({args.schedule}) | {summary(stored)} | {summary(scored)} | overall {alert_s if alert_s is None else round(alert_s)} s (first alert of any subject {any_s if any_s is None else round(any_s)} s) |"
    )
    if hourly:
        base_stored = [
            (_ceil_hour(published[g]) - published[g]).total_seconds() + hourly["stored_s"] for g in published
        ]
        base_scored = [
            (_ceil_hour(published[g]) - published[g]).total_seconds() + hourly["scored_s"] for g in published
        ]
        base_alert = (_ceil_hour(burst_start) - burst_start).total_seconds() + hourly["alerted_s"]
        print(
            f"| hourly only (measured run {hourly['run_id']}) | {summary(base_stored)} | {summary(base_scored)} | {base_alert:.0f} s |"
        )
    print(
        f"\nidle CPU of the Airflow services over {args.idle_minutes:g} min: fast lane on {cpu_on:.1f} s "
        f"({100 * cpu_on / (args.idle_minutes * 60):.1f} % of one core), off {cpu_off:.1f} s "
        f"({100 * cpu_off / (args.idle_minutes * 60):.1f} %)"
    )
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        for name in (f"bench_latency_{tag}", f"bench_latency_af_{tag}"):
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


def _ceil_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


if __name__ == "__main__":
    main()
