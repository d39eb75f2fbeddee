"""Shared fixtures: a real PostgreSQL server and a real HTTP feed server."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest

from pipeline import db

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
FEEDS = DATA / "feeds"
REAL = FEEDS / "real"
FIXTURES = FEEDS / "feedparser-fixtures"

sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A real PostgreSQL server: FINSENT_TEST_DATABASE_URL if set, else an embedded one."""
    url = os.environ.get("FINSENT_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # A short path: Unix socket paths are limited to about 100 bytes.
    datadir = Path(tempfile.mkdtemp(prefix="fspg-", dir="/tmp"))
    url = db.start_embedded(datadir)
    yield url
    import pgserver

    try:
        pgserver.get_server(str(datadir), cleanup_mode="stop").cleanup()
    except Exception:
        pass
    shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture()
def db_url(pg_server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, migrated database per test; also exported as DATABASE_URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    url = db.ensure_database(pg_server_url, name)
    db.migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    conn = psycopg2.connect(pg_server_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture()
def feed_server():
    from feedserver import FeedServer

    with FeedServer(FEEDS) as server:
        yield server


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def airflow_env(pg_server_url, tmp_path_factory) -> dict:
    """Environment for real Airflow processes with a migrated PostgreSQL metadata DB."""
    import subprocess

    from pipeline import airflow_env as af

    home = tmp_path_factory.mktemp("airflow")
    env = af.build_env(pg_server_url, home=home)
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env


def run_py(code: str, env: dict, timeout: int = 600):
    """Run Python in a fresh interpreter (Airflow reads its config at import)."""
    import subprocess

    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
