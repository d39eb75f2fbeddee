"""Backtest the alerting on a headline archive: import, score, aggregate and judge hour by hour.

What an analyst needs before changing a threshold: the alerts the product
would have raised on real history. ``replay`` stores the archive's stories
(``pipeline.ingest.headlines``), scores them with the active model, links
their companies, rebuilds the hourly stats and then judges every hour of the
span **in time order**, exactly as the hourly DAG's detect step would have at
the end of each hour. No look-ahead: a story's score depends on its text
alone, and judging hour h reads stats of hours <= h and the alerts the
earlier hours left (the code is the DAG's own ``refresh``). Scoring in bulk
rather than hour by hour only batches the work. Nothing is sent: replayed
windows are backfills, and notify sends nothing for them.

Trial rules (``--rules trial.yaml``) never touch what the live pipeline sends: they judge into a scope of their
own, the table ``finsent_trial.alerts`` (the live table's shape, made afresh for each trial replay), which
notify never reads and the dashboard shows apart. A replay on the live rules judges into the live table, as the
hourly run would have.

Before a row is stored the whole archive is read once (``headlines.scan``): an archive whose times span more
than a run may cover (a typo of a year) is refused with nothing stored.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from datetime import datetime
from pathlib import Path

from psycopg2.extensions import connection

from pipeline import db, windows
from pipeline.alerts import rules as rules_mod
from pipeline.alerts.notify import SUBJECT_SQL
from pipeline.csvio import neutralise

log = logging.getLogger(__name__)

_RAISED = f"""
SELECT al.id, al.kind, al.dimension, {SUBJECT_SQL} AS subject, al.peak_severity, al.started_at, al.last_hour,
       al.resolved_at, al.status, al.observed_negatives, al.observed_stories, al.observed_share, al.baseline_share,
       al.top_stories
FROM alerts al
WHERE al.model_version = %s AND al.started_at >= %s AND al.started_at < %s
ORDER BY al.started_at, al.id
"""
COLUMNS = ("id", "kind", "subject", "severity", "opened", "peak_hour", "resolved", "negative", "baseline", "headlines")


def raised(conn: connection, model: str, span: tuple[datetime, datetime]) -> list[dict]:
    """Alerts of ``model`` that opened inside ``span``, oldest first, with their top headlines."""
    with conn.cursor() as cur:
        cur.execute(_RAISED, (model, *span))
        rows = cur.fetchall()
    conn.commit()
    out = []
    for i, kind, dim, subject, sev, opened, last, resolved, status, k, n, share, base, top in rows:
        out.append(
            {
                "id": i,
                "kind": kind,
                "dimension": dim,
                "subject": subject,
                "severity": sev,
                "opened": opened,
                "peak_hour": last,
                "resolved": resolved if status == "resolved" else None,
                "negative": f"{k}/{n} ({100 * share:.0f}%)",
                "baseline": f"{100 * base:.0f}%",
                "headlines": [s["title"] for s in (top or [])[:3]],
            }
        )
    return out


def replay(
    path: str | Path,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    rules_file: str | Path | None = None,
    database_url: str | None = None,
) -> dict:
    """Import ``path`` (inside [start, end) when given), score it and judge every hour of its span in order."""
    from pipeline.alerts.refresh import refresh
    from pipeline.entities.run import score_and_link
    from pipeline.ingest.headlines import import_csv, scan

    window = windows.bounds(start, end)
    rules = rules_mod.load(Path(rules_file) if rules_file else None)  # a bad rules file stops before any work
    url = database_url or db.database_url()
    db.migrate(url)
    t0 = time.monotonic()
    if window is None:  # the span comes from the rows: check it before anything is stored
        seen = scan(path)
        if seen.first is not None:
            windows.checked(windows.floor_hour(seen.first), windows.floor_hour(seen.last) + windows.HOUR, "archive ")
    imported = import_csv(path, database_url=url, window=window)
    if not imported["first_published"]:
        return {"imported": imported, "alerts": [], "span": None}
    first = windows.floor_hour(windows.to_utc(imported["first_published"]))
    last = windows.floor_hour(windows.to_utc(imported["last_published"])) + windows.HOUR
    span = windows.checked(max(first, window[0]) if window else first, min(last, window[1]) if window else last)
    hours = (span[1] - span[0]) // windows.HOUR
    scored = score_and_link(url)
    entities = scored.pop("entities")
    conn = db.connect(url)
    try:
        if rules_file:
            trial_scope(conn)
        log.info("judging %d hours in order, %s to %s%s", hours, *span, " (trial rules)" if rules_file else "")
        judged = refresh(conn, span, model=scored["model_version"], rules=rules)
        alerts = raised(conn, scored["model_version"], span)
    finally:
        conn.close()
    return {
        "imported": imported,
        "scored": {k: scored[k] for k in ("model_version", "scored", "seconds") if k in scored},
        "entities": entities,
        "span": [span[0].isoformat(), span[1].isoformat()],
        "hours_judged": hours,
        "scope": TRIAL_TABLE if rules_file else "alerts",
        "stats_rows": judged["stats_rows"],
        "alerts": alerts,
        "seconds": round(time.monotonic() - t0, 1),
    }


TRIAL_SCHEMA = "finsent_trial"
TRIAL_TABLE = f"{TRIAL_SCHEMA}.alerts"


def trial_scope(conn: connection) -> None:
    """Point this connection's ``alerts`` at a fresh trial table (same shape as the live one; the schema comes
    first in the search path), so judging with trial rules writes nowhere that notify reads."""
    from psycopg2 import sql

    schema, table = sql.Identifier(TRIAL_SCHEMA), sql.Identifier(TRIAL_SCHEMA, "alerts")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE public.alerts INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
            ).format(table)
        )
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'finsent_dashboard'")
        if cur.fetchone():
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO finsent_dashboard").format(schema))
            cur.execute(sql.SQL("GRANT SELECT ON {} TO finsent_dashboard").format(table))
        cur.execute(sql.SQL("SET search_path TO {}, public").format(schema))
    conn.commit()


def as_table(alerts: list[dict]) -> str:
    """A fixed-width table for a terminal (headlines cut to fit)."""
    if not alerts:
        return "no alert was raised"
    lines = [
        f"{'id':>5} {'kind':6} {'severity':8} {'opened (UTC)':16} {'resolved':16} {'negative':>14} "
        f"{'base':>5}  subject / top headline"
    ]
    for a in alerts:
        resolved = f"{a['resolved']:%Y-%m-%d %H:%M}" if a["resolved"] else "still open"
        lines.append(
            f"{a['id']:>5} {a['kind']:6} {a['severity']:8} {a['opened']:%Y-%m-%d %H:%M} {resolved:16} "
            f"{a['negative']:>14} {a['baseline']:>5}  {a['subject']}"
        )
        for title in a["headlines"][:2]:
            lines.append(f"{'':>76}  - {title[:100]}")
    return "\n".join(lines)


def as_csv(alerts: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for a in alerts:
        row = [a[c] if c != "headlines" else " | ".join(a["headlines"]) for c in COLUMNS]
        w.writerow([neutralise(v) for v in row])
    return buf.getvalue()
