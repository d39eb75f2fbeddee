"""Scale-out on a real CeleryExecutor: Redis broker, PostgreSQL metadata DB, api-server, scheduler,
dag-processor, one worker on the default queue and one on the gpu queue. `airflow dags trigger`
runs the hourly DAG; the classify task must run on the gpu worker, everything else elsewhere."""

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import db, windows
from pipeline.classify.release import registry
from tests.helpers import free_port, query

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="redis-server not installed (make test installs it as root)"
    ),
]


class Procs:
    def __init__(self, logdir: Path) -> None:
        self.logdir, self.procs = logdir, []

    def start(self, name: str, cmd: list[str], env: dict) -> Path:
        log = self.logdir / f"{name}.log"
        self.procs.append(
            (
                name,
                subprocess.Popen(
                    cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
                ),
            )
        )
        return log

    def stop(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def airflow(*args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"airflow {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def backfill_counts(db_url: str) -> tuple:
    """Rows that a re-run must never duplicate."""
    return tuple(
        query(db_url, f"SELECT count(*) FROM {t}")[0][0] for t in ("articles", "scores", "alerts", "hourly_stats")
    )


def test_trigger_runs_on_celery_with_classify_on_the_gpu_worker(
    airflow_env, db_url, feed_server, tmp_path, tiny_models
):
    conn = db.connect(db_url)
    registry.promote(conn, registry.register(conn, tiny_models[0]))
    conn.close()
    names = ["cnbc_finance_2026-08-14.xml", "coindesk_2026-08-11.xml"]
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        "feeds:\n" + "".join(f"  - {{name: {n[:5]}, url: '{feed_server.url('real/' + n)}'}}\n" for n in names)
    )

    meta = airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    redis_port, api_port = free_port(), free_port()
    env = {
        **airflow_env,
        "DATABASE_URL": db_url,
        "FINSENT_FEEDS_FILE": str(feeds),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta.replace("postgresql+psycopg2", "postgresql"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    procs = Procs(tmp_path)
    try:
        procs.start(
            "redis",
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            env,
        )
        airflow("dags", "reserialize", env=env)
        procs.start("api-server", [sys.executable, "-m", "airflow", "api-server", "--port", str(api_port)], env)
        procs.start("scheduler", [sys.executable, "-m", "airflow", "scheduler"], env)
        procs.start("dag-processor", [sys.executable, "-m", "airflow", "dag-processor"], env)
        default_log = procs.start(
            "worker-default",
            [sys.executable, "-m", "airflow", "celery", "worker", "--queues", "default", "--concurrency", "2"],
            {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
        )
        gpu_log = procs.start(
            "worker-gpu",
            [
                sys.executable,
                "-m",
                "airflow",
                "celery",
                "worker",
                "--queues",
                "gpu",
                "--concurrency",
                "1",
                "--celery-hostname",
                "gpu-worker@%h",
            ],
            {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
        )
        logical = windows.floor_hour(datetime.now(UTC)) - timedelta(hours=3)
        run_id = f"celery-test-{int(time.time())}"
        airflow(
            "dags",
            "trigger",
            "finsent_hourly",
            "--logical-date",
            logical.isoformat(),
            "--run-id",
            run_id,
            "--conf",
            '{"ingest_live": true}',
            env=env,
        )
        airflow("dags", "unpause", "finsent_hourly", env=env)

        meta_url = meta.replace("postgresql+psycopg2", "postgresql")
        state = None
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            rows = query(
                meta_url, "SELECT state FROM dag_run WHERE dag_id = 'finsent_hourly' AND run_id = %s", (run_id,)
            )
            state = rows[0][0] if rows else None
            if state in ("success", "failed"):
                break
            time.sleep(3)
        tis = dict(
            (t, (s, q))
            for t, s, q in query(
                meta_url,
                "SELECT task_id, state, queue FROM task_instance WHERE dag_id = 'finsent_hourly' AND run_id = %s",
                (run_id,),
            )
        )
        logs = {p.name: p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*.log")}
        assert state == "success", (state, tis, logs)
        assert tis["classify"] == ("success", "gpu")
        assert all(s == "success" for s, _ in tis.values()), tis
        assert {q for t, (s, q) in tis.items() if t != "classify"} == {"default"}
        gpu_text, default_text = gpu_log.read_text(errors="replace"), default_log.read_text(errors="replace")
        assert "classify" in gpu_text and "ingest_feeds" not in gpu_text
        assert "ingest_feeds" in default_text and "classify" not in default_text
        assert query(db_url, "SELECT count(*) FROM articles")[0][0] == 55
        assert query(db_url, "SELECT count(*) FROM scores")[0][0] == 55
        counts = backfill_counts(db_url)

        # `airflow backfill create` over three hours, one of them the hour just run (reprocessed):
        # every run succeeds on the same queues and nothing is stored, scored or alerted twice.
        airflow(
            "backfill",
            "create",
            "--dag-id",
            "finsent_hourly",
            "--from-date",
            (logical - timedelta(hours=2)).isoformat(),
            "--to-date",
            logical.isoformat(),
            "--reprocess-behavior",
            "completed",
            "--max-active-runs",
            "1",
            env=env,
        )
        runs: list = []
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            runs = query(
                meta_url,
                "SELECT dr.logical_date, dr.state, b.exception_reason FROM backfill_dag_run b "
                "LEFT JOIN dag_run dr ON dr.id = b.dag_run_id "
                "WHERE b.backfill_id = (SELECT max(id) FROM backfill) ORDER BY b.sort_ordinal",
            )
            if len(runs) == 3 and all(state in ("success", "failed") for _, state, _ in runs):
                break
            time.sleep(3)
        logs = {p.name: p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*.log")}
        assert [(d, s, e) for d, s, e in runs] == [
            (logical + timedelta(hours=h), "success", None) for h in (-2, -1, 0)
        ], (runs, logs)
        assert backfill_counts(db_url) == counts
        gpu_runs = query(
            meta_url,
            "SELECT count(*) FROM task_instance ti JOIN dag_run dr ON dr.run_id = ti.run_id "
            "AND dr.dag_id = ti.dag_id WHERE ti.task_id = 'classify' AND ti.queue = 'gpu' "
            "AND ti.state = 'success' AND dr.backfill_id IS NOT NULL",
        )[0][0]
        assert gpu_runs == 3
    finally:
        procs.stop()
