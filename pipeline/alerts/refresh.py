"""The one entry point for "active model -> rebuild hourly stats -> judge the hours".

The hourly DAG, the ``aggregate`` CLI command, re-scoring and the demo all
call :func:`refresh`; each only says which hours to rebuild and which to judge.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from psycopg2.extensions import connection

from pipeline.alerts import aggregate
from pipeline.alerts.rules import Rules
from pipeline.alerts.rules import load as load_rules
from pipeline.alerts.run import detect_hours, detect_window, stored_hours
from pipeline.classify.release.registry import active_version

log = logging.getLogger(__name__)


def refresh(
    conn: connection,
    window: tuple[datetime, datetime] | None,
    *,
    model: str | None = None,
    lookback_h: float = 0,
    judge: bool = True,
    judge_last_h: float | None = None,
    stored_only: bool = False,
    rules: Rules | None = None,
) -> dict:
    """Rebuild stats and judge surges for one model (default: the active one; NoActiveModel if none).

    ``window`` is [start, end) of hours to rebuild and judge; ``None`` means
    every hour that holds a story. ``lookback_h`` also rebuilds that many
    hours before the window (late stories). ``judge_last_h`` judges only the
    last hours of the window. ``stored_only`` judges only hours that hold stories (the demo's sparse history).
    """
    model = model or active_version(conn)
    if window is None:
        rows, span = aggregate.recompute_history(conn, model)
    else:
        span = window
        rows = aggregate.recompute(conn, model, span[0] - timedelta(hours=lookback_h), span[1])
    out: dict = {"model_version": model, "stats_rows": rows, "span": span}
    if judge and span is not None:
        start = span[0] if judge_last_h is None else max(span[0], span[1] - timedelta(hours=judge_last_h))
        rules = rules or load_rules()
        if stored_only:
            hours = stored_hours(conn, (start, span[1]))
            out["hours_judged"] = len(hours)
            out.update(detect_hours(conn, model, hours, rules))
        else:
            out.update(detect_window(conn, model, (start, span[1]), rules))
        log.info(
            "stats rows %d; alerts opened %s updated %s resolved %s",
            rows,
            out["opened"],
            out["updated"],
            out["resolved"],
        )
    return out
