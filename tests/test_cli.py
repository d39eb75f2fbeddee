"""The operator CLI as users run it: a subprocess, JSON on stdout, logs on stderr."""

import json
import subprocess
import sys

from pipeline import config
from tests.helpers import query


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        cwd=config.REPO_ROOT,
        env=env,
        timeout=300,
    )


def test_migrate_is_idempotent_and_ingest_prints_a_json_summary(db_url, feed_server, tmp_path):
    import os

    env = {**os.environ, "DATABASE_URL": db_url}
    first = cli("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["applied"] == []  # the fixture migrated already: nothing to do
    registry = tmp_path / "feeds.yaml"
    registry.write_text(
        f"feeds:\n  - {{name: wsj, url: '{feed_server.url('real/wsj_world_news_2025-01-27.xml')}'}}\n"
        f"  - {{name: gone, url: '{feed_server.url('real/missing.xml')}'}}\n"
    )
    proc = cli("ingest", "--feeds", str(registry), env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    feeds = {f["name"]: f for f in summary["feeds"]}
    assert (feeds["wsj"]["status"], feeds["wsj"]["items_seen"], feeds["wsj"]["new"]) == ("ok", 20, 20)
    assert feeds["gone"]["status"] == "error" and feeds["gone"]["error"] == "HTTP 404 Not Found"
    assert "feed wsj: ok, 20 items, 20 new" in proc.stderr
    assert query(db_url, "SELECT count(*) FROM articles")[0][0] == 20


def test_bad_registry_exits_with_a_clear_message(db_url, tmp_path):
    import os

    env = {**os.environ, "DATABASE_URL": db_url}
    unusable = tmp_path / "unusable.yaml"
    unusable.write_text("nope: []\n")
    proc = cli("ingest", "--feeds", str(unusable), env=env)
    assert proc.returncode == 2 and "top-level 'feeds:'" in proc.stderr and proc.stdout == ""
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # one bad entry is a failed feed of a recorded run, not a failed run
    bad = tmp_path / "bad.yaml"
    bad.write_text("feeds:\n  - {name: x}\n")
    proc = cli("ingest", "--feeds", str(bad), env=env)
    assert proc.returncode == 1 and "'url' is required" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["run_id"] and summary["feeds"][0]["name"] == "x" and summary["feeds"][0]["status"] == "error"
    assert query(db_url, "SELECT last_status, consecutive_failures FROM feeds WHERE name = 'x'") == [("error", 1)]


def test_fresh_database_gets_the_schema(pg_server_url):
    import os

    from pipeline import db

    url = db.ensure_database(pg_server_url, "fresh_cli_db")
    proc = cli("db", "migrate", env={**os.environ, "DATABASE_URL": url})
    assert proc.returncode == 0, proc.stderr
    assert "001_feeds_articles" in json.loads(proc.stdout)["applied"]
    tables = {r[0] for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"feeds", "articles", "ingest_runs", "schema_migrations"} <= tables


def test_a_deployments_init_job_never_demotes_the_active_model(db_url, tiny_models):
    """`models install --if-none-active` (the compose init job, run on every `up`) keeps a model promoted since."""
    import os

    from pipeline import db
    from pipeline.classify.release import registry

    conn = db.connect(db_url)
    version = registry.promote(conn, registry.register(conn, tiny_models[0]))["version"]
    conn.close()
    proc = cli("models", "install", "--if-none-active", env={**os.environ, "DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"active": version, "installed": False}
    assert query(db_url, "SELECT version FROM models WHERE is_active") == [(version,)]
