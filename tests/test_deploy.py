"""The deployment files, checked without a Docker engine: every command exists, every variable is documented,
ports and secrets are where they should be, and Debian's docker-compose accepts the files when installed.
(The host-network stack is also built and run end to end: tests/stack.py, `make stack-test`.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import config

DEPLOY = config.REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
HOST_COMPOSE = DEPLOY / "docker-compose.host.yml"
GPU_COMPOSE = DEPLOY / "docker-compose.gpu.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
BOTH = pytest.mark.parametrize("path", [COMPOSE, HOST_COMPOSE], ids=["bridge", "host"])


def compose(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())


def commands(svc: dict) -> list[list[str]]:
    """Each command a service runs (an ``sh -c`` chain is split on ``&&``)."""
    cmd = svc.get("command")
    if cmd is None:
        return []
    argv = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
    argv = [re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", a) for a in argv]  # a variable's default, as compose reads it
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


@BOTH
def test_the_stack_has_every_part_with_health_checks_and_start_order(path):
    services = compose(path)["services"]
    assert {
        "postgres",
        "redis",
        "init",
        "api-server",
        "scheduler",
        "dag-processor",
        "worker-default",
        "worker-gpu",
        "dashboard",
        "metrics",
    } <= set(services)
    for name in ("postgres", "redis", "api-server", "scheduler", "dag-processor", "dashboard"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("api-server", "scheduler", "dag-processor", "worker-default", "worker-gpu", "dashboard", "metrics"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully", name
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["init"]["restart"] == "no"
    assert "--queues" in services["worker-gpu"]["command"]
    assert services["scheduler"]["environment"]["FINSENT_CLASSIFY_QUEUE"] == "gpu"
    init = " ".join(services["init"]["command"])
    assert "models install --if-none-active" in init and "airflow db migrate" in init


def test_the_bridge_stack_exports_statsd_and_the_gpu_override_reserves_a_gpu():
    services = compose()["services"]
    env = services["scheduler"]["environment"]
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True" and env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"
    assert "statsd-exporter" in services
    gpu = compose(GPU_COMPOSE)["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"


def test_the_host_stack_uses_the_host_network_and_binds_loopback_only():
    """No bridge, no published ports; each server binds 127.0.0.1 and every URL points there."""
    services = compose(HOST_COMPOSE)["services"]
    text = HOST_COMPOSE.read_text()
    for name, svc in services.items():
        assert svc.get("network_mode") == "host", name
        assert "ports" not in svc, name
        argv = [str(a) for a in svc.get("command", [])] if isinstance(svc.get("command"), list) else []
        for flag in ("--host", "--bind", "--server.address"):
            if flag in argv:
                assert argv[argv.index(flag) + 1] == "127.0.0.1", (name, flag)
    assert "redis-server" in services["redis"]["command"] and "127.0.0.1" in services["redis"]["command"]
    assert services["postgres"]["stop_signal"] == "SIGINT"
    hosts = set(re.findall(r"://(?:[^@/\s]+@)?([A-Za-z0-9_.-]+):", text))
    assert hosts == {"127.0.0.1"}, hosts
    workers = [services[w]["environment"] for w in ("worker-default", "worker-gpu")]
    assert len({w["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for w in workers}) == 2
    assert [w["FINSENT_WORKER_NAME"] for w in workers] == ["worker-default", "worker-gpu"]


def test_the_postgres_entrypoint_requires_passwords_over_tcp():
    script = (DEPLOY / "local" / "postgres-entrypoint.sh").read_text()
    assert "--auth-host=scram-sha-256" in script and "host all all 127.0.0.1/32 scram-sha-256" in script
    assert 'listen_addresses="${POSTGRES_LISTEN:-127.0.0.1}"' in script
    assert "/docker-entrypoint-initdb.d/*.sh" in script


def test_the_worker_name_reaches_task_instances(monkeypatch):
    from pipeline import airflow_env

    monkeypatch.setenv("FINSENT_WORKER_NAME", "worker-gpu")
    assert airflow_env.worker_hostname() == "worker-gpu"
    monkeypatch.delenv("FINSENT_WORKER_NAME")
    import socket

    assert airflow_env.worker_hostname() == socket.getfqdn()


@BOTH
def test_published_ports_are_loopback_and_the_dashboard_holds_no_owner_secret(path):
    services = compose(path)["services"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    dash = services["dashboard"]["environment"]
    assert "AIRFLOW_CONN_SMTP_ALERTS" not in dash
    assert all("finsent_dashboard_login:" in v for k, v in dash.items() if k.endswith("DATABASE_URL"))
    assert not any("${FINSENT_DB_PASSWORD}" in str(v) or "${POSTGRES_PASSWORD}" in str(v) for v in dash.values())


@BOTH
def test_every_variable_is_documented_and_the_real_env_file_is_ignored(path):
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", path.read_text()))
    documented = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z]", line)}
    assert used and used <= documented, f"undocumented: {sorted(used - documented)}"
    init = (DEPLOY / "postgres-init.sh").read_text()
    assert set(re.findall(r"\"\$([A-Z_]+)\"", init)) - {"POSTGRES_USER"} <= set(
        compose(path)["services"]["postgres"]["environment"]
    )
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(DEPLOY / ".env")], cwd=config.REPO_ROOT, check=False
    ).returncode
    assert ignored == 0, "deploy/.env must be git-ignored"


@BOTH
def test_every_command_the_stack_runs_exists(path):
    from airflow.cli.cli_parser import get_parser as airflow_parser

    from pipeline.cli import build_parser

    seen = set()
    for name, svc in compose(path)["services"].items():
        for argv in commands(svc):
            seen.add(argv[0] if argv[0] != "python" else " ".join(argv[:4]))
            if argv[:3] == ["python", "-m", "pipeline"]:
                build_parser().parse_args(argv[3:])  # SystemExit on an unknown command or option
            elif argv[0] == "airflow":
                airflow_parser().parse_args(argv[1:])
            elif argv[0] in ("postgres-entrypoint", "redis-server"):
                assert path == HOST_COMPOSE and name in ("postgres", "redis"), name
                assert (
                    argv[0] != "postgres-entrypoint"
                    or "postgres-entrypoint" in (DEPLOY / "local" / "Dockerfile.services").read_text()
                )
            elif argv[0] == "streamlit":
                assert argv[1] == "run" and (config.REPO_ROOT / argv[2]).is_file(), name
                assert (Path(sys.executable).parent / "streamlit").exists()
            else:
                pytest.fail(f"{name}: no check for {argv[0]!r}")
    assert {"airflow", "streamlit", "python -m pipeline db"} <= seen


def test_dockerfile_copies_what_exists_and_builds_both_variants():
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (config.REPO_ROOT / src).exists(), src
    assert "FROM torch-${VARIANT} AS final" in text and "AS torch-cpu" in text and "AS torch-cuda" in text
    assert "torch==2.13.0" in text and "USER finsent" in text
    # the build context is only what the image copies: never the state folder (virtualenv, database, models)
    lines = (config.REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*" and ".state" not in " ".join(i for i in ignore if i.startswith("!"))
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert f"!{src}" in ignore, f"{src} is copied but not in the build context"
    for base in ("ARG PYTHON_IMAGE=python:3.11-slim-bookworm", "python3 -m venv /opt/venv", "id=pip_cert"):
        assert base in text, base


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose not installed")
@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, GPU_COMPOSE], [HOST_COMPOSE]], ids=["bridge", "gpu", "host"])
def test_docker_compose_accepts_the_file(files):
    out = subprocess.run(
        ["docker-compose", *(a for f in files for a in ("-f", str(f))), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
