"""The fast lane: minutes, not an hour, from a story's publication to its alert (``dags/finsent_fast.py``).

Every few minutes: poll the feeds that are due (conditional GET; each feed's Retry-After and
``min_interval_s`` honoured), score what landed, rebuild the stats of the hour under way and judge it as a
partial hour (``detect_hour(partial=True)``: a surge can open or grow, nothing is resolved), then deliver
new alerts. The hourly DAG stays the system of record: it rebuilds every hour whole, resolves alerts and
runs the slow sustained-rise view. Both lanes share the keys that make them idempotent (stories by guid /
URL / title, scores by (story, model), alerts by (subject, kind, model, start hour), one delivery per alert
and channel), so a story or hour seen by both is stored, scored, alerted and emailed once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import config, db, windows

log = logging.getLogger(__name__)


def current_hour(now: datetime | None = None) -> dict:
    """The hour under way as a window, ISO strings (what the hourly tasks take)."""
    start = windows.floor_hour(now or datetime.now(UTC))
    return {"start": start.isoformat(), "end": (start + windows.HOUR).isoformat()}


def poll(feeds_file: str | None = None, run_key: str | None = None) -> dict:
    """Fetch the feeds that are due; counts only (the hourly lane's ingest with ``due_only``)."""
    from pipeline.ingest.run import ingest

    settings = config.load()
    url = db.database_url(settings)
    db.migrate(url)
    hour = current_hour()
    summary = ingest(
        feeds_file or settings.feeds_file,
        database_url=url,
        run_key=run_key,
        window=(windows.to_utc(hour["start"]), windows.to_utc(hour["end"])),
        settings=settings,
        due_only=True,
    )
    failed = [f["name"] for f in summary["feeds"] if f["status"] == "error"]
    return {"run_id": summary["run_id"], **summary["totals"], "failed_feeds": failed, "not_due": summary["not_due"]}


def judge(now: datetime | None = None) -> dict:
    """Rebuild the stats of the previous and the current hour, and judge the current one as a partial hour."""
    from pipeline.alerts import aggregate
    from pipeline.alerts.rules import load as load_rules
    from pipeline.alerts.run import detect_hour
    from pipeline.classify.release.registry import NoActiveModel, active_version

    hour = windows.floor_hour(now or datetime.now(UTC))
    conn = db.connect()
    try:
        try:
            model = active_version(conn)
        except NoActiveModel:
            return {"skipped": "no active model"}
        rows = aggregate.recompute(conn, model, hour - timedelta(hours=1), hour + windows.HOUR)
        out: dict[str, Any] = {"hour": hour.isoformat(), "stats_rows": rows}
        out.update(detect_hour(conn, model, hour, load_rules(), partial=True))
    finally:
        conn.close()
    if out.get("opened"):
        log.warning("fast lane: alerts opened %s in the hour under way", out["opened"])
    return out


# The fast lane's lag: when the oldest story the model has not scored was fetched (status, metrics, dashboard).
OLDEST_UNSCORED = (
    "SELECT min(a.fetched_at) FROM articles a WHERE NOT EXISTS "
    "(SELECT 1 FROM scores s WHERE s.article_id = a.id AND s.model_version = %s)"
)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def lag(conn) -> dict:
    """What the fast lane is behind by: the oldest unscored story, and when each feed was last polled."""
    from pipeline.classify.release.registry import NoActiveModel, active_version

    try:
        model = active_version(conn)
    except NoActiveModel:
        model = None
    with conn.cursor() as cur:
        cur.execute(OLDEST_UNSCORED, (model,))
        oldest = cur.fetchone()[0]
        cur.execute("SELECT name, last_fetched_at, last_status, retry_after_until FROM feeds ORDER BY name")
        feeds = [
            {"feed": n, "last_poll": _iso(at), "status": st, "retry_after_until": _iso(ra)}
            for n, at, st, ra in cur.fetchall()
        ]
    conn.commit()
    now = datetime.now(UTC)
    return {
        "oldest_unscored_fetched_at": _iso(oldest),
        "oldest_unscored_age_s": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
        "feeds": feeds,
    }
