"""`make stack-test`: the production stack built and run end to end on this host, then two faults survived.

    .state/venv/bin/python -m tests.stack            # as root; FINSENT_STACK_TEST=1 pytest tests/test_stack.py too

Builds the images without a registry (deploy/local/build.sh), starts deploy/docker-compose.host.yml on fresh
volumes (every container on the host's network, 127.0.0.1 only), serves bundled feed snapshots from a real HTTP
server on 127.0.0.1 and takes alert mail on a real SMTP server, triggers ``finsent_hourly`` through the Airflow
API server and checks what a data engineer would: the run succeeded, classify ran on the gpu-queue worker,
stories and scores (with the model version) are in PostgreSQL, the dashboard shows them in a real browser,
``/metrics`` and the API server's health answer. Then: the gpu worker is killed in the middle of classify, and
PostgreSQL is restarted in the middle of a run; each time the run must still succeed with nothing lost or
scored twice. Tears everything down (volumes included) and prints the figures. It starts ``dockerd`` only if
none answers, and stops only the daemon it started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline import config, windows
from tests.feedserver import FeedServer
from tests.helpers import SMTPServer, free_port, query

log = logging.getLogger("stack")
ROOT = config.REPO_ROOT
COMPOSE = ROOT / "deploy" / "docker-compose.host.yml"
FEEDS = ROOT / "tests" / "data" / "feeds"
PROJECT = "finsent-stacktest"
DAG = "finsent_hourly"
# each service and the state `up -d` must bring it to (the services without a health check: running)
SERVICES = {
    "postgres": "healthy",
    "redis": "healthy",
    "init": "exited",
    "api-server": "healthy",
    "scheduler": "healthy",
    "dag-processor": "healthy",
    "worker-default": "running",
    "worker-gpu": "running",
    "dashboard": "healthy",
    "metrics": "running",
}


class StackError(AssertionError):
    """A check of the stack failed (AssertionError, so pytest shows it as a failed check)."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise StackError(what)
    log.info("ok: %s", what)


def run(cmd: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if proc.returncode != 0:
        raise StackError(
            f"{' '.join(cmd[:6])} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def wait_for(what: str, probe: Callable[[], object], timeout_s: float, every_s: float = 2.0) -> object:
    """Poll ``probe`` until it returns something truthy; raise with ``what`` when the time is up."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, StackError, ValueError) as exc:  # not up yet
            last = exc
        else:
            if last:
                return last
        time.sleep(every_s)
    raise StackError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


# -- the Docker Engine ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def docker_engine(workdir: Path) -> Iterator[None]:
    """A running dockerd: the one that answers, or one started here (``--bridge=none --iptables=false``)."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        yield
        return
    if os.geteuid() != 0:
        raise StackError("no Docker Engine answers and starting one needs root")
    if not shutil.which("dockerd") or not shutil.which("debootstrap") or not shutil.which("docker-compose"):
        log.info("installing docker.io, docker-compose and debootstrap (Debian packages)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "docker.io", "docker-compose", "debootstrap"], env=env)
    logfile = open(workdir / "dockerd.log", "ab")  # held open for the daemon's life
    daemon = subprocess.Popen(
        ["dockerd", "--bridge=none", "--iptables=false"],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.info("started dockerd (pid %d)", daemon.pid)
    try:
        wait_for("dockerd", lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, 60, 1)
        yield
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        logfile.close()
        log.info("stopped the dockerd this run started")


# -- the stack -----------------------------------------------------------------------------------------------------
class Stack:
    """deploy/docker-compose.host.yml under one project name, with its own secrets and free ports."""

    def __init__(self, workdir: Path, smtp_port: int) -> None:
        self.workdir = workdir
        self.ports = {
            name: free_port() for name in ("PG", "REDIS", "API", "DASHBOARD", "METRICS", "WORKER_LOG", "GPU_WORKER_LOG")
        }
        self.secrets = {
            k: secrets.token_hex(16)
            for k in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "FINSENT_DB_PASSWORD", "DASHBOARD_DB_PASSWORD")
        }
        smtp = {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp_port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "alerts@example.com"},
        }
        env = {
            **self.secrets,
            "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW_CONN_SMTP_ALERTS": json.dumps(smtp),
            "AIRFLOW_CONN_FINSENT_SLACK_RISK": "",
            "FINSENT_DASHBOARD_URL": f"http://127.0.0.1:{self.ports['DASHBOARD']}",
            "DASHBOARD_PUBLIC_HOST": "127.0.0.1",
            "FINSENT_IMAGE": "finsent:cpu",
            "FINSENT_GPU_IMAGE": "finsent:cpu",
            "FINSENT_SERVICES_IMAGE": "finsent-services:bookworm",
            # the scheduled run that unpausing creates reads these feeds too: nothing leaves the machine
            "FINSENT_FEEDS_FILE": "/state/stack-feeds-clean.yaml",
            "FINSENT_FETCH_ALLOW_HOSTS": "127.0.0.1",
            # a dead worker's task is declared failed after 60 s without a heartbeat (Airflow's default: 300 s)
            "FINSENT_TASK_HEARTBEAT_TIMEOUT_S": "60",
        }
        env.update({f"FINSENT_{k}_PORT": str(v) for k, v in self.ports.items()})
        self.env_file = workdir / "stack.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.env_file.chmod(0o600)
        self.api = f"http://127.0.0.1:{self.ports['API']}"
        self.pg = f"postgresql://finsent:{self.secrets['FINSENT_DB_PASSWORD']}@127.0.0.1:{self.ports['PG']}/finsent"
        self.meta = f"postgresql://airflow:{self.secrets['AIRFLOW_DB_PASSWORD']}@127.0.0.1:{self.ports['PG']}/airflow"
        self._token: str | None = None

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        base = ["docker-compose", "-p", PROJECT, "-f", str(COMPOSE), "--env-file", str(self.env_file)]
        return run([*base, *args], timeout=timeout)

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        if not cid:
            raise StackError(f"no container for {service}")
        return cid

    def health(self, service: str) -> str:
        state = run(["docker", "inspect", "-f", "{{json .State}}", self.container(service)]).stdout
        s = json.loads(state)
        return (s.get("Health") or {}).get("Status") or s["Status"]

    def exec(self, service: str, *cmd: str, stdin: str | None = None) -> str:
        return run(["docker", "exec", "-i", self.container(service), *cmd], input=stdin).stdout

    def logs(self, service: str) -> str:
        proc = subprocess.run(["docker", "logs", self.container(service)], capture_output=True, text=True, check=False)
        return proc.stdout + proc.stderr

    # the Airflow REST API, as a user with the generated admin password
    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        if self._token is None:
            password = json.loads(self.exec("api-server", "cat", "/state/airflow/passwords.json"))["admin"]
            self._token = self._request("POST", "/auth/token", {"username": "admin", "password": password}, None)[
                "access_token"
            ]
        return self._request(method, path, body, self._token)

    def api_health(self) -> dict:
        """The API server's own health endpoint (no login needed)."""
        return self._request("GET", "/api/v2/monitor/health", None, None)

    def _request(self, method: str, path: str, body: dict | None, token: str | None) -> dict:
        req = urllib.request.Request(self.api + path, method=method, data=json.dumps(body).encode() if body else None)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from exc

    def write_feeds(self, name: str, server: FeedServer, files: list[str]) -> str:
        """A feed registry in the shared state volume, pointing at the local feed server."""
        path = f"/state/imports/stack-feeds-{name.replace(' ', '-')}.yaml"  # a conf may name files under imports/
        body = "feeds:\n" + "".join(
            f"  - {{name: {f.split('_20')[0]}, url: '{server.url('real/' + f)}'}}\n" for f in files
        )
        self.exec("worker-default", "sh", "-c", f"mkdir -p /state/imports && cat > {path}", stdin=body)
        return path

    def trigger(self, logical: datetime, feeds_file: str, run_id: str) -> str:
        body = {
            "dag_run_id": run_id,
            "logical_date": logical.isoformat(),
            "conf": {"ingest_live": True, "feeds_file": feeds_file},
        }
        return self.call("POST", f"/api/v2/dags/{DAG}/dagRuns", body)["dag_run_id"]

    def run_state(self, run_id: str) -> str:
        return self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}")["state"]

    def tasks(self, run_id: str) -> dict[str, dict]:
        tis = self.call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t for t in tis}

    def wait_run(self, run_id: str, timeout_s: float = 900) -> float:
        t0 = time.monotonic()
        state = wait_for(
            f"run {run_id}", lambda: (s := self.run_state(run_id)) in ("success", "failed") and s, timeout_s, 3
        )
        tis = self.tasks(run_id)
        summary = {t: (ti["state"], ti["try_number"], ti["queue"], ti["hostname"]) for t, ti in tis.items()}
        log.info("run %s: %s; tasks %s", run_id, state, summary)
        check(
            state == "success" and all(ti["state"] == "success" for ti in tis.values()),
            f"run {run_id} and every task in it succeeded (state, try, queue, worker: {summary})",
        )
        return time.monotonic() - t0


def expected_stories(files: list[str]) -> int:
    """Stories the pipeline should keep from these snapshots: parsed, then de-duplicated as ingest does."""
    from pipeline.ingest import dedupe, parse

    now = datetime.now(UTC)
    stories = []
    for f in files:
        stories += parse.parse((FEEDS / "real" / f).read_bytes(), fetched_at=now).stories
    return len(dedupe.dedupe(stories, now, timedelta(hours=config.load().ingest.title_window_h))[0])


def db_counts(stack: Stack) -> dict[str, int]:
    row = query(
        stack.pg,
        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM scores),"
        " (SELECT count(DISTINCT article_id) FROM scores), (SELECT count(*) FROM alerts),"
        " (SELECT count(*) FROM articles a WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.article_id = a.id))",
    )[0]
    return dict(zip(("articles", "scores", "scored_articles", "alerts", "unscored"), row, strict=True))


def check_counts(stack: Stack, expected: int, when: str) -> dict[str, int]:
    c = db_counts(stack)
    check(c["articles"] == expected, f"{when}: {c['articles']} stories stored, as the feeds hold ({expected})")
    check(
        c["scores"] == c["scored_articles"] == c["articles"] and c["unscored"] == 0,
        f"{when}: every story scored exactly once ({c['scores']} scores for {c['articles']} stories)",
    )
    return c


def check_dashboard(stack: Stack, stories: int, version: str, shot: Path) -> None:
    """The dashboard in headless Chromium: its Pipeline health page counts the stories and names the model.

    (The Overview charts the hours the stories were published in: these snapshots are months old.)"""
    from playwright.sync_api import expect

    from dashboard.screenshot import browser

    base = f"http://127.0.0.1:{stack.ports['DASHBOARD']}"
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/health")
        metrics = page.locator('[data-testid="stMetricValue"]')
        expect(metrics.first).to_have_text(f"{stories:,}", timeout=60000)
        page.get_by_text(version).first.wait_for(timeout=30000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shot), full_page=True)
        exceptions = page.locator('[data-testid="stException"]').count()
    check(errors == [] and exceptions == 0, "the dashboard rendered without errors")
    check(shot.stat().st_size > 20_000, f"the dashboard shows {stories:,} stories and model {version} ({shot})")


def check_metrics(stack: Stack, stories: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports['METRICS']}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    stored = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("finsent_stories_stored{")
    )
    check(stored == stories, f"/metrics answers: finsent_stories_stored sums to {stored:.0f}")


def wait_task_running(stack: Stack, run_id: str, task_id: str, timeout_s: float = 600) -> dict:
    return wait_for(
        f"{task_id} of {run_id} running",
        lambda: (ti := stack.tasks(run_id).get(task_id)) and ti["state"] == "running" and ti,
        timeout_s,
        0.5,
    )


def clean_run(stack: Stack, run_id: str, expected: int, workdir: Path) -> dict[str, float]:
    """The first run: where each task ran, what was stored and scored, and what the dashboard and metrics show."""
    figures = {"clean_run_s": stack.wait_run(run_id)}
    tis = stack.tasks(run_id)
    check(
        tis["classify"]["queue"] == "gpu" and tis["classify"]["hostname"] == "worker-gpu",
        "classify ran on the gpu queue's worker",
    )
    others = {t: ti["hostname"] for t, ti in tis.items() if t != "classify"}
    check(set(others.values()) == {"worker-default"}, f"every other task ran on worker-default: {others}")
    c = check_counts(stack, expected, "clean")
    versions = query(stack.pg, "SELECT DISTINCT model_version FROM scores")
    check(len(versions) == 1 and versions[0][0], f"every score records its model version {versions}")
    check_dashboard(stack, c["articles"], versions[0][0], workdir / "dashboard-health.png")
    check_metrics(stack, c["articles"])
    return figures


def worker_killed(stack: Stack, run_id: str, expected: int, workdir: Path) -> dict[str, float]:
    """The gpu worker's process is killed while classify runs: the task is retried, nothing is scored twice."""
    wait_task_running(stack, run_id, "classify")
    time.sleep(3)
    pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", stack.container("worker-gpu")]).stdout
    os.kill(int(pid), signal.SIGKILL)  # a crash, not a stop: the restart policy brings it back
    log.info("killed the gpu worker (pid %s) during classify", pid.strip())
    figures = {"worker_kill_run_s": stack.wait_run(run_id)}
    ti = stack.tasks(run_id)["classify"]
    check(ti["try_number"] >= 2, f"classify was retried after the crash (try {ti['try_number']})")
    check_counts(stack, expected, "worker killed")
    return figures


def postgres_restarted(stack: Stack, run_id: str, expected: int, workdir: Path) -> dict[str, float]:
    """PostgreSQL is restarted while classify runs: the task fails, is retried, and nothing is lost or doubled."""
    wait_task_running(stack, run_id, "classify")
    time.sleep(1)  # the task holds its connection while the model loads
    t_restart = time.monotonic()
    run(["docker", "restart", stack.container("postgres")])
    figures = {"postgres_restart_s": time.monotonic() - t_restart}
    log.info("restarted postgres during classify (%.1f s)", figures["postgres_restart_s"])
    figures["postgres_restart_run_s"] = stack.wait_run(run_id, 1200)
    tries = {t: ti["try_number"] for t, ti in stack.tasks(run_id).items()}
    log.info("tries after the PostgreSQL restart: %s", tries)
    figures["postgres_retried_tasks"] = sum(1 for n in tries.values() if n > 1)
    check(figures["postgres_retried_tasks"] >= 1, f"a task failed on the restart and was retried: {tries}")
    check_counts(stack, expected, "postgres restarted")
    return figures


# the three runs, in order: their feeds (bundled snapshots, tests/data/feeds/real; new stories each time), and
# what each checks
PHASES = {
    "clean": (["cnbc_finance_2026-08-14.xml", "coindesk_2026-08-11.xml"], clean_run),
    "worker killed": (
        ["bbc_business_2026-08-14.xml", "bloomberg_markets_2026-08-11.xml", "yahoo_finance_news_2026-08-14.xml"],
        worker_killed,
    ),
    "postgres restarted": (
        [
            "investing_stock_market_news_2026-08-14.xml",
            "googlenews_reuters_2026-08-11.xml",
            "wsj_world_news_2025-01-27.xml",
        ],
        postgres_restarted,
    ),
}


def stack_test(workdir: Path, keep: bool = False) -> dict[str, float]:
    figures: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    with docker_engine(workdir), FeedServer(FEEDS) as feeds, SMTPServer(free_port()) as smtp:
        t0 = time.monotonic()
        out = run([str(ROOT / "deploy" / "local" / "build.sh")], timeout=3600, cwd=ROOT).stdout
        figures["build_s"] = time.monotonic() - t0
        log.info("%s", out.strip().splitlines()[-1])
        stack = Stack(workdir, smtp.controller.port)
        stack.compose("down", "-v", "--remove-orphans")  # fresh volumes, whatever an earlier run left
        try:
            t0 = time.monotonic()
            stack.compose("up", "-d")
            for service, want in SERVICES.items():
                wait_for(f"{service} {want}", lambda s=service, w=want: stack.health(s) == w, 300, 2)
            for worker, name in (("worker-default", "celery@"), ("worker-gpu", "gpu-worker@")):
                wait_for(
                    f"{worker} ready",
                    lambda w=worker, n=name: n in (text := stack.logs(w)) and " ready." in text,
                    300,
                )
            health = wait_for(
                "the API server's health: scheduler and dag-processor healthy",
                lambda: (
                    (h := stack.api_health())
                    and all(h[k]["status"] == "healthy" for k in ("metadatabase", "scheduler", "dag_processor"))
                    and h
                ),
                180,
            )
            figures["start_s"] = time.monotonic() - t0
            log.info("all %d services up in %.0f s; API health %s", len(SERVICES), figures["start_s"], health)
            wait_for(f"{DAG} parsed", lambda: stack.call("GET", f"/api/v2/dags/{DAG}").get("dag_id"), 180, 3)

            files: list[str] = []
            hour = windows.floor_hour(datetime.now(UTC))
            for i, (phase, (phase_files, check_phase)) in enumerate(PHASES.items()):
                feeds_file = stack.write_feeds(phase, feeds, phase_files)
                files += phase_files
                run_id = stack.trigger(hour - timedelta(hours=2 + i), feeds_file, f"stack-{i}-{int(time.time())}")
                if i == 0:
                    stack.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})
                figures.update(check_phase(stack, run_id, expected_stories(files), workdir))
            # every run, the scheduled one that unpausing made included, ended well
            all_runs = stack.call("GET", f"/api/v2/dags/{DAG}/dagRuns")["dag_runs"]
            states = {r["dag_run_id"]: r["state"] for r in all_runs}
            check(all(s == "success" for s in states.values()), f"every run of {DAG} succeeded: {states}")
            check(
                stack.api_health()["scheduler"]["status"] == "healthy",
                "the API server's health is good after the faults",
            )
            figures["emails"] = len(smtp.messages)
        except BaseException:
            for service in SERVICES:
                with contextlib.suppress(Exception):
                    (workdir / f"{service}.log").write_text(stack.logs(service))
            log.error("container logs kept in %s", workdir)
            raise
        finally:
            if not keep:
                t0 = time.monotonic()
                stack.compose("down", "-v", "--remove-orphans")
                log.info("stack torn down, volumes removed (%.0f s)", time.monotonic() - t0)
    return figures


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection lines
    keep = "--keep" in sys.argv
    t0 = time.monotonic()
    figures = stack_test(config.state_dir() / "stack", keep=keep)
    figures["total_s"] = time.monotonic() - t0
    print(
        "stack-test passed: "
        + ", ".join(f"{k} {v:.0f}" if k.endswith("_s") else f"{k} {v:g}" for k, v in figures.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
