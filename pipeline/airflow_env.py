"""Environment for running Airflow against the project's PostgreSQL.

Used by the demo, the tests and local operations so that every Airflow
process (CLI, scheduler, workers) shares one metadata DB, one DAG folder and
one JWT secret.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg2.extensions

from pipeline import config, db


def sqlalchemy_url(libpq_url: str) -> str:
    """psycopg2 URI/DSN -> SQLAlchemy URL (postgresql+psycopg2://...)."""
    p = psycopg2.extensions.parse_dsn(libpq_url)
    user, password = p.get("user", "postgres"), p.get("password", "")
    host, port, name = p.get("host", ""), p.get("port"), p.get("dbname", "airflow")
    if host.startswith("/"):
        return f"postgresql+psycopg2://{user}:{password}@/{name}?host={host}"
    netloc = f"{host}:{port}" if port else host
    return f"postgresql+psycopg2://{user}:{password}@{netloc}/{name}"


def _secret(home: Path) -> str:
    path = home / "jwt_secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def build_env(
    database_url: str | None = None, home: Path | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment variables for Airflow processes (metadata DB = database 'airflow')."""
    env = dict(os.environ if base is None else base)
    url = database_url or db.database_url()
    meta = db.ensure_database(url, "airflow")
    home = home or config.state_dir() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(meta),
            "AIRFLOW__CORE__DAGS_FOLDER": str(config.REPO_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", "4"),
            "AIRFLOW__API_AUTH__JWT_SECRET": env.get("AIRFLOW__API_AUTH__JWT_SECRET") or _secret(home),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
            "PYTHONWARNINGS": "ignore",
            "DATABASE_URL": url,
        }
    )
    return env


def worker_hostname() -> str:
    """``[core] hostname_callable`` for containers on the host's network, which all share one host name.

    ``FINSENT_WORKER_NAME`` (set per worker service) names the worker in the task instance's ``hostname``, so
    a run shows which worker took each task; unset, it is the host's FQDN, as Airflow's default.
    """
    import socket

    return os.environ.get("FINSENT_WORKER_NAME") or socket.getfqdn()
