"""One real ``finsent_hourly`` run over 1,000 new stories, end to end, with the time each task takes.

Set-up (not timed): a fresh pipeline database and a fresh Airflow metadata
database on the embedded PostgreSQL, the active model registered and
promoted there, its inference export made beforehand (the classify task then
finds it, as on a worker that has run before), and 10 RSS feeds of 100 real
held-out news headlines each (SEntFiN test and FinEntity, dated inside the
run's hour) served by a local HTTP server on 127.0.0.1.

Timed: ``airflow dags test finsent_hourly`` as a cold process (Airflow start,
DAG parse, plan, ingest, classify with company linking and labels, detect,
notify), the wall time of the whole command and, from Airflow's metadata DB,
each task's duration and share. An SMTP server on 127.0.0.1 takes any alert
email. The CPU flags and the backend are printed with the figures.

    .state/venv/bin/python -m bench.hourly                          # automatic backend
    FINSENT_PRECISION=fp32 .state/venv/bin/python -m bench.hourly   # the torch fp32 path, for comparison
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FINSENT_PRECISION=onnx-fp32 .state/venv/bin/python -m bench.hourly
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent


def headlines(n: int) -> list[str]:
    """Real news headlines from the held-out sets (never training rows), cycled to ``n``."""
    from pipeline.classify.evaluation.evaluate import heldout_sets

    sets = heldout_sets()
    texts = sets["sentfin_test"][1]["text"].tolist() + sets["finentity"][1]["text"].tolist()
    return [texts[i % len(texts)] + (f" ({i // len(texts)})" if i >= len(texts) else "") for i in range(n)]


def write_feeds(folder: Path, titles: list[str], per_feed: int, hour: datetime) -> list[str]:
    names = []
    for f in range(0, len(titles), per_feed):
        items = []
        for i, title in enumerate(titles[f : f + per_feed]):
            when = format_datetime(hour + timedelta(seconds=(f + i) % 3500 + 30))
            items.append(
                f"<item><title>{escape(title)}</title><link>https://news.example/{f}/{i}</link>"
                f'<guid isPermaLink="false">bench-{f}-{i}</guid><pubDate>{when}</pubDate></item>'
            )
        name = f"bench-{f // per_feed}.xml"
        (folder / name).write_text(
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>bench</title>'
            f"<link>https://news.example/</link><description>bench</description>{''.join(items)}</channel></rss>",
            encoding="utf-8",
        )
        names.append(name)
    return names


def task_times(meta_url: str, dag_id: str = "finsent_hourly") -> list[tuple[str, float, str]]:
    import psycopg2

    conn = psycopg2.connect(meta_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ti.task_id, extract(epoch FROM ti.end_date - ti.start_date), ti.state FROM task_instance ti "
                "WHERE ti.dag_id = %s AND ti.run_id = (SELECT run_id FROM dag_run WHERE dag_id = %s "
                "ORDER BY id DESC LIMIT 1) ORDER BY ti.start_date",
                (dag_id, dag_id),
            )
            return [(t, float(s or 0), st) for t, s, st in cur.fetchall()]
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stories", type=int, default=1000)
    ap.add_argument("--per-feed", type=int, default=100)
    ap.add_argument("--model", default=None, help="model directory (default: the active model of the demo database)")
    args = ap.parse_args(argv)

    import psycopg2
    from psycopg2 import sql

    from bench.classify import active_model_dir
    from bench.peers import cpu_info
    from pipeline import airflow_env, db
    from pipeline.classify.model.predict import Classifier
    from pipeline.classify.release import registry
    from tests.feedserver import FeedServer
    from tests.helpers import SMTPServer, free_port

    model_dir = args.model or active_model_dir()
    server = db.database_url()
    tag = uuid.uuid4().hex[:8]
    url = db.ensure_database(server, f"bench_hourly_{tag}")
    meta = db.ensure_database(server, f"bench_airflow_{tag}")
    t_setup = time.monotonic()
    db.migrate(url)
    conn = db.connect(url)
    version = registry.register(conn, model_dir)
    registry.promote(conn, version)
    conn.close()
    clf = Classifier.load(model_dir)  # the export (if the backend has one) is made here, before timing
    backend = clf.backend
    del clf
    env = airflow_env.build_env(url)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = airflow_env.sqlalchemy_url(meta)
    env["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="finsent-bench-airflow-")
    env["FINSENT_FETCH_ALLOW_HOSTS"] = "127.0.0.1"
    smtp_port = free_port()
    env["AIRFLOW_CONN_SMTP_ALERTS"] = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp_port,
            "extra": {"disable_tls": True, "disable_ssl": True},
        }
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=900
    )
    if migrate.returncode:
        raise SystemExit(migrate.stderr[-3000:])
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    logical = hour + timedelta(hours=1)  # covers [hour, hour + 1h): the stories' hour
    with tempfile.TemporaryDirectory() as tmp, SMTPServer(smtp_port) as smtp:
        folder = Path(tmp)
        names = write_feeds(folder, headlines(args.stories), args.per_feed, hour)
        with FeedServer(folder, conditional=False) as feeds:
            registry_file = folder / "feeds.yaml"
            registry_file.write_text(
                "feeds:\n" + "".join(f"  - {{name: {n[:-4]}, url: '{feeds.url(n)}'}}\n" for n in names)
            )
            setup_s = time.monotonic() - t_setup
            conf = {"feeds_file": str(registry_file), "ingest_live": True}
            env["FINSENT_CONF_FILE_ROOTS"] = str(folder)  # a run's conf may name files under this folder only
            t0 = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", "finsent_hourly", logical.isoformat()]
                + ["--conf", json.dumps(conf)],
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            wall = time.monotonic() - t0
        emails = len(smtp.messages)
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    tasks = task_times(meta)
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM articles")
        stored = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM scores")
        scored = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM story_entities")
        linked = cur.fetchone()[0]
    conn.close()

    print(
        f"\nhourly run benchmark: {args.stories} new stories in {len(names)} feeds on 127.0.0.1; model "
        f"{Path(model_dir).name}; backend {backend}; {os.cpu_count()} CPU cores; set-up {setup_s:.0f} s (not timed)"
    )
    print(f"CPU: {json.dumps(cpu_info())}")
    print(f"stored {stored}, scored {scored}, company mentions {linked}, alert emails {emails}")
    in_tasks = sum(s for _, s, _ in tasks)
    print(f"{'step':<40} {'seconds':>8} {'share':>7}")
    for task, secs, state in tasks:
        print(f"{task + ' (' + state + ')':<40} {secs:>8.1f} {100 * secs / wall:>6.1f}%")
    print(
        f"{'Airflow start, DAG parse, scheduling':<40} {wall - in_tasks:>8.1f} {100 * (wall - in_tasks) / wall:>6.1f}%"
    )
    print(f"{'whole run (airflow dags test, cold)':<40} {wall:>8.1f} {100.0:>6.1f}%   target < 60 s")
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        for name in (f"bench_hourly_{tag}", f"bench_airflow_{tag}"):
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


if __name__ == "__main__":
    main()
