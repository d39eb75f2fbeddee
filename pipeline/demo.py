"""The README's main command: one real DAG run on embedded defaults, then a summary.

Starts the embedded PostgreSQL, applies migrations, installs the shipped
model if no model is active yet, prepares Airflow's metadata DB in the same
server, runs the hourly DAG once with the real Airflow CLI (``airflow dags
test``: ingest + classify) over the bundled feed snapshots, replays the bundled
window of real 2023 headlines hour by hour (``data/history/``), and prints
what landed and the alerts the replay raised.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

from pipeline import airflow_env, config, db, windows


def _airflow(args: list[str], env: dict, log_path) -> None:
    t0 = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ airflow {' '.join(args)}\n")
        log.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800
        )
    print(f"  airflow {' '.join(args[:2])}: exit {proc.returncode} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise SystemExit(f"airflow {' '.join(args)} failed (log: {log_path}):\n{tail}")


def run() -> dict:
    settings = config.load()
    url = db.database_url(settings)
    print(
        f"database: {url.split('?')[0]} ({'embedded' if not settings.database_url else 'DATABASE_URL'})",
        file=sys.stderr,
    )
    db.migrate(url)
    ensure_model(url)
    env = airflow_env.build_env(url)
    log_dir = config.state_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    _airflow(["db", "migrate"], env, log_path)
    logical = windows.floor_hour(datetime.now(UTC))
    conf = {"feeds_file": str(settings.feeds_file)}
    _airflow(["dags", "test", "finsent_hourly", logical.isoformat(), "--conf", json.dumps(conf)], env, log_path)
    backfill_stats(url)
    replayed = replay_history(url)
    out = summary(url, log_path)
    out["replayed_history"] = replayed
    out["next"] = {"dashboard": "make dashboard   (or: .state/venv/bin/streamlit run dashboard/app.py)"}
    return out


def backfill_stats(url: str) -> None:
    """The bundled snapshots are from the past, outside the live run's hour: aggregate the
    hours they cover, and judge every one of those hours that holds stories for surges (no email)."""
    from pipeline.alerts.refresh import refresh

    conn = db.connect(url)
    try:
        out = refresh(conn, None, stored_only=True)
    finally:
        conn.close()
    print(
        f"  hourly stats: {out['stats_rows']} rows over the snapshots' hours; {out.get('hours_judged', 0)} hours "
        f"holding stories judged; alerts opened: {len(out.get('opened', []))}"
        + ("" if out.get("opened") else " (none surged with these thresholds: config/alert_rules.yaml)"),
        file=sys.stderr,
    )


HISTORY = config.REPO_ROOT / "data" / "history" / "headlines_2023_bank_crisis.csv.gz"


def replay_history(url: str) -> dict:
    """Replay the bundled window of real 2023 headlines (the March bank failures and the calm weeks before)
    through the same code as ``python -m pipeline history replay``: stored, scored, judged hour by hour."""
    from pipeline.replay import as_table, replay

    t0 = time.monotonic()
    out = replay(HISTORY, database_url=url)
    print(
        f"  replayed {out['imported']['rows']:,} real 2023 headlines ({out['imported']['stored']:,} new) over "
        f"{out.get('hours_judged', 0):,} hours in {time.monotonic() - t0:.0f}s; alerts raised: {len(out['alerts'])}",
        file=sys.stderr,
    )
    print(as_table(out["alerts"]), file=sys.stderr)
    return {
        "archive": str(HISTORY.relative_to(config.REPO_ROOT)),
        "span": out.get("span"),
        "stored": out["imported"]["stored"],
        "alerts": [
            {k: a[k] for k in ("kind", "subject", "severity", "opened", "resolved")} | {"top": a["headlines"][:1]}
            for a in out["alerts"]
        ],
        "seconds": round(time.monotonic() - t0, 1),
    }


DEMO_TRAIN = {"method": "heads", "limit_per_task": 1500}


def ensure_model(url: str) -> None:
    """Install the shipped model when none is active; train the fast path only if none ships."""
    from pipeline.classify.release import registry, shipped

    conn = db.connect(url)
    try:
        current = registry.active(conn)
    finally:
        conn.close()
    if current:
        print(f"  active model: {current['version']} ({current['method']})", file=sys.stderr)
        return
    t0 = time.monotonic()
    if (shipped.SHIPPED_DIR / shipped.DELTA_FILE).exists():
        from pipeline.lifecycle import install_shipped

        print("  no active model: installing the shipped model (base + committed delta) ...", file=sys.stderr)
        out = install_shipped()
        m = shipped.summary()["metrics"] or {}
        news = (m.get("news") or {}).get("macro_f1")
        print(
            f"  installed {out['version']} in {time.monotonic() - t0:.0f}s; held-out news macro-F1 "
            f"{news if news is None else round(news, 3)}, tweets {m.get('sentiment', {}).get('macro_f1', 0):.3f}, "
            f"topic accuracy {m.get('topic', {}).get('accuracy', 0):.3f} (committed report)",
            file=sys.stderr,
        )
        return
    from pipeline.classify.training.arguments import parse
    from pipeline.lifecycle import train_and_register

    print("  no active model and none shipped: training the fast-path classifier ...", file=sys.stderr)
    out = train_and_register(*parse(DEMO_TRAIN))
    print(
        f"  trained {out['version']} in {time.monotonic() - t0:.0f}s; held-out sentiment macro-F1 "
        f"{out['held_out']['sentiment']['macro_f1']:.3f}, topic accuracy {out['held_out']['topic']['accuracy']:.3f}",
        file=sys.stderr,
    )


def summary(url: str, log_path=None) -> dict:
    with db.transaction(url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            SELECT f.name, f.last_status, count(a.id), f.last_error
            FROM feeds f LEFT JOIN articles a ON a.feed_id = f.id
            GROUP BY f.id ORDER BY f.name
            """
        )
        feeds = [{"feed": n, "status": s, "stories": c, "error": e} for n, s, c, e in cur.fetchall()]
        cur.execute(
            "SELECT run_key, window_start, window_end, items_seen, items_new, duplicates, feeds_failed "
            "FROM ingest_runs ORDER BY id DESC LIMIT 1"
        )
        last = cur.fetchone()
        cur.execute("SELECT count(*), min(published_at), max(published_at) FROM articles")
        total, first, newest = cur.fetchone()
        cur.execute("SELECT version, method, metrics FROM models WHERE is_active")
        model = cur.fetchone()
        scored = {}
        if model:
            cur.execute(
                "SELECT sentiment, count(*) FROM scores WHERE model_version = %s GROUP BY 1 ORDER BY 1", (model[0],)
            )
            scored["sentiment"] = dict(cur.fetchall())
            cur.execute(
                "SELECT topic, count(*) FROM scores WHERE model_version = %s GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
                (model[0],),
            )
            scored["top_topics"] = dict(cur.fetchall())
            cur.execute(
                "SELECT a.title, s.p_negative FROM scores s JOIN articles a ON a.id = s.article_id "
                "WHERE s.model_version = %s ORDER BY s.p_negative DESC LIMIT 3",
                (model[0],),
            )
            scored["most_negative"] = [{"title": t, "p_negative": round(p, 3)} for t, p in cur.fetchall()]
            cur.execute(
                "SELECT e.name, count(*), sum((es.sentiment = 'negative')::int), min(es.method) FROM entity_scores es "
                "JOIN entities e ON e.id = es.entity_id WHERE es.model_version = %s "
                "GROUP BY e.name ORDER BY 2 DESC, 1 LIMIT 5",
                (model[0],),
            )
            scored["top_companies"] = {n: {"stories": c, "negative": k, "label": m} for n, c, k, m in cur.fetchall()}
    return {
        "stories_stored": total,
        "published_range": [first, newest],
        "last_run": dict(
            zip(["run_id", "window_start", "window_end", "items_seen", "new", "duplicates", "feeds_failed"], last)
        )
        if last
        else None,
        "model": {"version": model[0], "method": model[1], "held_out": model[2]} if model else None,
        "scores": scored,
        "feeds": feeds,
        "airflow_log": str(log_path) if log_path else None,
    }
