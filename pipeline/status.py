"""Operator status report (``python -m pipeline status``): feed health, runs, backlog, model, alerts."""

from __future__ import annotations

from pipeline import db
from pipeline.classify.release import registry
from pipeline.classify.score import pending_count


def report(url: str | None = None) -> dict:
    conn = db.connect(url)
    try:
        model = registry.active(conn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT name, last_status, last_http_status, last_fetched_at, last_success_at, "
                "consecutive_failures, last_error FROM feeds ORDER BY (last_status = 'error') DESC, name"
            )
            feeds = [
                dict(
                    zip(
                        [
                            "name",
                            "status",
                            "http",
                            "last_fetched_at",
                            "last_success_at",
                            "consecutive_failures",
                            "error",
                        ],
                        r,
                    )
                )
                for r in cur.fetchall()
            ]
            cur.execute(
                "SELECT run_key, window_start, window_end, finished_at, feeds_ok, feeds_failed, items_new "
                "FROM ingest_runs ORDER BY id DESC LIMIT 5"
            )
            runs = [
                dict(zip(["run", "window_start", "window_end", "finished_at", "feeds_ok", "feeds_failed", "new"], r))
                for r in cur.fetchall()
            ]
            cur.execute("SELECT count(*) FROM articles")
            articles = cur.fetchone()[0]
            cur.execute("SELECT status, count(*) FROM alerts GROUP BY status")
            alerts = dict(cur.fetchall())
            cur.execute("SELECT count(*) FROM alerts WHERE status = 'open' AND notified_at IS NULL")
            unsent = cur.fetchone()[0]
        backlog = pending_count(conn, model["version"]) if model else articles
        conn.commit()
        from pipeline import fast

        lag = fast.lag(conn)
    finally:
        conn.close()
    return {
        "feeds": {
            "total": len(feeds),
            "failing": [f for f in feeds if f["status"] == "error"],
            "ok": sum(f["status"] in ("ok", "not_modified") for f in feeds),
        },
        "last_runs": runs,
        "articles": articles,
        "backlog_unscored": backlog,
        "lag": {
            "oldest_unscored_age_s": lag["oldest_unscored_age_s"],
            "last_poll": {f["feed"]: f["last_poll"] for f in lag["feeds"]},
        },
        "active_model": {"version": model["version"], "method": model["method"], "metrics": model["metrics"]}
        if model
        else None,
        "alerts": {"by_status": alerts, "open_unsent": unsent},
    }
