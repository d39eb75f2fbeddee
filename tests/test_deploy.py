"""The deployment files, checked without a Docker engine: every command exists, every variable is documented,
ports and secrets are where they should be, and Debian's docker-compose accepts the file when installed."""

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
ENV_EXAMPLE = DEPLOY / ".env.example"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def commands(svc: dict) -> list[list[str]]:
    """Each command a service runs (an ``sh -c`` chain is split on ``&&``)."""
    cmd = svc.get("command")
    if cmd is None:
        return []
    argv = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def test_the_stack_has_every_part_with_health_checks_and_start_order():
    services = compose()["services"]
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
        "statsd-exporter",
    } <= set(services)
    for name in ("postgres", "redis", "api-server", "scheduler", "dag-processor", "dashboard"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("api-server", "scheduler", "dag-processor", "worker-default", "worker-gpu", "dashboard", "metrics"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully", name
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["init"]["restart"] == "no"
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and "--queues" in services["worker-gpu"]["command"]
    env = services["scheduler"]["environment"]
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True" and env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"


def test_published_ports_are_loopback_and_the_dashboard_holds_no_owner_secret():
    services = compose()["services"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    dash = services["dashboard"]["environment"]
    assert "AIRFLOW_CONN_SMTP_ALERTS" not in dash
    assert all("finsent_dashboard_login:" in v for k, v in dash.items() if k.endswith("DATABASE_URL"))
    assert not any("${FINSENT_DB_PASSWORD}" in str(v) or "${POSTGRES_PASSWORD}" in str(v) for v in dash.values())


def test_every_variable_is_documented_and_the_real_env_file_is_ignored():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    documented = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z]", line)}
    assert used and used <= documented, f"undocumented: {sorted(used - documented)}"
    init = (DEPLOY / "postgres-init.sh").read_text()
    assert set(re.findall(r"\"\$([A-Z_]+)\"", init)) - {"POSTGRES_USER"} <= set(
        compose()["services"]["postgres"]["environment"]
    )
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(DEPLOY / ".env")], cwd=config.REPO_ROOT, check=False
    ).returncode
    assert ignored == 0, "deploy/.env must be git-ignored"


def test_every_command_the_stack_runs_exists():
    from airflow.cli.cli_parser import get_parser as airflow_parser

    from pipeline.cli import build_parser

    seen = set()
    for name, svc in compose()["services"].items():
        for argv in commands(svc):
            seen.add(argv[0] if argv[0] != "python" else " ".join(argv[:4]))
            if argv[:3] == ["python", "-m", "pipeline"]:
                build_parser().parse_args(argv[3:])  # SystemExit on an unknown command or option
            elif argv[0] == "airflow":
                airflow_parser().parse_args(argv[1:])
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


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose not installed")
def test_docker_compose_accepts_the_file():
    out = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
