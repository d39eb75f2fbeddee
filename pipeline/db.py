"""PostgreSQL access: the embedded server, connections and the migration runner.

With no ``DATABASE_URL`` (or Airflow connection) the project starts its own
PostgreSQL (pgserver, socket only) in the state folder and reuses it later.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pipeline import config

log = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^(\d{3})_[\w-]+\.sql$")
_MIGRATION_LOCK = 0x66696E73  # "fins": serialises concurrent migrators


def embedded_dir() -> Path:
    return config.state_dir() / "pg"


def start_embedded(datadir: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL and return its URI."""
    import warnings

    import pgserver

    datadir = Path(datadir or embedded_dir())
    datadir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        server = pgserver.get_server(str(datadir), cleanup_mode=None)
        # get_server caches its handle per process; after an outage it must check and restart
        server.ensure_postgres_running()
    return server.get_uri()


def grant_dashboard(url: str, login_role: str) -> None:
    """Make ``login_role`` a member of ``finsent_dashboard`` (migration 004): SELECT, and acknowledging alerts."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("GRANT finsent_dashboard TO {}").format(sql.Identifier(login_role)))
        conn.commit()
    finally:
        conn.close()


def database_url(settings: config.Settings | None = None) -> str:
    settings = settings or config.load()
    return settings.database_url or start_embedded()


def ensure_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` if missing; return its URI."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_ident(name))))
    finally:
        conn.close()
    dsn = psycopg2.extensions.parse_dsn(url)
    dsn["dbname"] = name
    return psycopg2.extensions.make_dsn(**dsn)


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"unsafe database name: {name!r}")
    return name


def connect(url: str | None = None) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(url or database_url(), connect_timeout=10)
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


@contextlib.contextmanager
def transaction(url: str | None = None) -> Iterator[psycopg2.extensions.connection]:
    """A connection whose work commits on success and rolls back on error."""
    conn = connect(url)
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def migration_files(sql_dir: Path = config.SQL_DIR) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if not m:
            raise ValueError(f"migration file not named NNN_name.sql: {path.name}")
        files.append((path.stem, path))
    return files


def migrate(url: str | None = None, sql_dir: Path = config.SQL_DIR) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; idempotent."""
    applied: list[str] = []
    with transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for version, path in migration_files(sql_dir):
            if version in done:
                continue
            log.info("applying migration %s", version)
            cur.execute(path.read_text(encoding="utf-8"))
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied
