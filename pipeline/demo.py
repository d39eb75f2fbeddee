"""The README's main command: one real DAG run on embedded defaults, then a summary.

Starts the embedded PostgreSQL, applies migrations, prepares Airflow's
metadata DB in the same server, runs the hourly DAG once with the real
Airflow CLI (``airflow dags test``) over the bundled feed snapshots, and
prints what landed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

from pipeline import airflow_env, config, db, windows


def _airflow(args: list[str], env: dict, log_path) -> None:  # noqa: ANN001
    t0 = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ airflow {' '.join(args)}\n")
        log.flush()
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=1800)
    print(f"  airflow {' '.join(args[:2])}: exit {proc.returncode} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise SystemExit(f"airflow {' '.join(args)} failed (log: {log_path}):\n{tail}")


def run() -> dict:
    settings = config.load()
    url = db.database_url(settings)
    print(f"database: {url.split('?')[0]} ({'embedded' if not settings.database_url else 'DATABASE_URL'})", file=sys.stderr)
    db.migrate(url)
    env = airflow_env.build_env(url)
    log_dir = config.state_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"demo-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.log"
    _airflow(["db", "migrate"], env, log_path)
    logical = windows.floor_hour(datetime.now(timezone.utc))
    conf = {"feeds_file": str(settings.feeds_file)}
    _airflow(["dags", "test", "finsent_hourly", logical.isoformat(), "--conf", json.dumps(conf)], env, log_path)
    return summary(url, log_path)


def summary(url: str, log_path=None) -> dict:  # noqa: ANN001
    with db.transaction(url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            SELECT f.name, f.last_status, count(a.id), f.last_error
            FROM feeds f LEFT JOIN articles a ON a.feed_id = f.id
            GROUP BY f.id ORDER BY f.name
            """
        )
        feeds = [{"feed": n, "status": s, "stories": c, "error": e} for n, s, c, e in cur.fetchall()]
        cur.execute("SELECT run_key, window_start, window_end, items_seen, items_new, duplicates, feeds_failed "
                    "FROM ingest_runs ORDER BY id DESC LIMIT 1")
        last = cur.fetchone()
        cur.execute("SELECT count(*), min(published_at), max(published_at) FROM articles")
        total, first, newest = cur.fetchone()
    return {
        "stories_stored": total,
        "published_range": [first, newest],
        "last_run": dict(zip(["run_id", "window_start", "window_end", "items_seen", "new", "duplicates", "feeds_failed"], last))
        if last else None,
        "feeds": feeds,
        "airflow_log": str(log_path) if log_path else None,
    }
