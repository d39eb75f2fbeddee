"""Entry points the DAGs call: plain arguments in, ids and counts out.

Keeping them here (not in dags/) lets the DAG files stay pure wiring and lets
tests call the same code without Airflow.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Mapping

from pipeline import config, db, windows

log = logging.getLogger(__name__)


def plan(logical_date: datetime, params: Mapping[str, Any] | None) -> dict:
    """The window a run covers, as ISO strings (XCom-friendly)."""
    start, end = windows.run_window(logical_date, params)
    log.info("run covers [%s, %s): %d hour(s)", start.isoformat(), end.isoformat(),
             len(windows.hours((start, end))))
    return {"start": start.isoformat(), "end": end.isoformat()}


def ingest(window: Mapping[str, str], params: Mapping[str, Any] | None, run_key: str | None) -> dict:
    """Ingest the registry once; return counts only (never article bodies)."""
    from pipeline.ingest.run import ingest as run_ingest

    params = params or {}
    settings = config.load()
    feeds_file = params.get("feeds_file") or settings.feeds_file
    url = db.database_url(settings)
    db.migrate(url)
    summary = run_ingest(
        feeds_file,
        database_url=url,
        run_key=run_key,
        window=(windows.to_utc(window["start"]), windows.to_utc(window["end"])),
        settings=settings,
    )
    failed = [f["name"] for f in summary["feeds"] if f["status"] == "error"]
    return {"run_id": summary["run_id"], **summary["totals"], "failed_feeds": failed}
