"""Entry points the DAGs call: plain arguments in, ids and counts out.

Keeping them here (not in dags/) lets the DAG files stay pure wiring and lets
tests call the same code without Airflow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from pipeline import config, db, windows

log = logging.getLogger(__name__)


def _skip(reason: str) -> NoReturn:
    """Mark the Airflow task skipped (not failed): nothing to do until a model is active."""
    from airflow.sdk.exceptions import AirflowSkipException

    raise AirflowSkipException(reason)


def plan(logical_date: datetime, params: Mapping[str, Any] | None) -> dict:
    """The window a run covers, as ISO strings (XCom-friendly)."""
    start, end = windows.run_window(logical_date, params)
    log.info("run covers [%s, %s): %d hour(s)", start.isoformat(), end.isoformat(), len(windows.hours((start, end))))
    return {"start": start.isoformat(), "end": end.isoformat()}


def is_live(window_end: datetime, now: datetime | None = None) -> bool:
    """A run whose window ended within FINSENT_ALERT_LIVE_WITHIN_H (2 h) is live; older ones are backfills."""
    from datetime import timedelta

    now = now or datetime.now(UTC)
    return window_end >= now - timedelta(hours=config.load().alerts.live_within_h)


class ConfPathRefused(ValueError):
    """A path in a run's conf lies outside FINSENT_CONF_FILE_ROOTS (or is not the kind of file it should be)."""


def conf_paths(params: Mapping[str, Any], roots: tuple, feeds_file: Path | str | None = None) -> dict:
    """The files a run's conf names (``feeds_file``, ``history_csv``; the folder ``archive_dir``), each resolved
    through links and confined to ``roots`` (the configured registry ``feeds_file`` is always allowed);
    ConfPathRefused names the path, never what the file holds."""
    from pipeline.ingest.policy import PolicyRefused, check_path

    out = {}
    for key, folder in (("feeds_file", False), ("history_csv", False), ("archive_dir", True)):
        value = params.get(key)
        if not value:
            continue
        if not isinstance(value, str) or len(value) > 4096 or "\x00" in value:
            raise ConfPathRefused(f"conf {key} must be a path")
        if key == "feeds_file" and feeds_file and Path(value).resolve() == Path(feeds_file).resolve():
            out[key] = Path(feeds_file).resolve()  # the operator's own setting, not the triggering user's
            continue
        try:
            out[key] = check_path(value, roots, folder=folder)
        except PolicyRefused as exc:
            raise ConfPathRefused(f"conf {key}: {exc} (FINSENT_CONF_FILE_ROOTS)") from None
    return out


def ingest(window: Mapping[str, str], params: Mapping[str, Any] | None, run_key: str | None) -> dict:
    """Ingest for the run's window; return counts only (never article bodies).

    Live runs fetch the registry's feeds. A backfill (past window) does not,
    since feeds only list recent items, unless ``params["ingest_live"]``;
    with ``params["archive_dir"]`` it replays archived feed files for the window, and with
    ``params["history_csv"]`` the rows of a headline archive published inside it.
    """
    from pipeline.ingest.archive import ingest_archive
    from pipeline.ingest.run import ingest as run_ingest

    params = params or {}
    settings = config.load()
    paths = conf_paths(params, settings.ingest.conf_roots, settings.feeds_file)  # before anything is read
    url = db.database_url(settings)
    db.migrate(url)
    span = (windows.to_utc(window["start"]), windows.to_utc(window["end"]))
    out: dict = {"live": None, "archive": None}
    if is_live(span[1]) or params.get("ingest_live"):
        summary = run_ingest(
            paths.get("feeds_file") or settings.feeds_file,
            database_url=url,
            run_key=run_key,
            window=span,
            settings=settings,
        )
        failed = [f["name"] for f in summary["feeds"] if f["status"] == "error"]
        out["live"] = {"run_id": summary["run_id"], **summary["totals"], "failed_feeds": failed}
    else:
        log.info("backfill window %s..%s: live feeds not fetched (conf ingest_live=true forces it)", *span)
    if params.get("archive_dir"):
        summary = ingest_archive(paths["archive_dir"], span, database_url=url, run_key=run_key, settings=settings)
        out["archive"] = {"run_id": summary["run_id"], **summary["totals"]}
    if params.get("history_csv"):  # a headline archive (published, source, title): the window's rows only
        from pipeline.ingest.headlines import import_csv

        out["history"] = import_csv(paths["history_csv"], database_url=url, window=span, settings=settings)
    return out


def failure_notifier():
    """DAG failure callback: email the data team through the smtp provider's notifier."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    alerts = config.load().alerts
    return SmtpNotifier(
        to=list(alerts.data_team),
        from_email=alerts.from_email,
        smtp_conn_id=alerts.smtp_conn_id,
        subject="[finsent] DAG {{ dag.dag_id }} failed: run {{ run_id }}",
        html_content="<p>DAG <b>{{ dag.dag_id }}</b>, run {{ run_id }}, failed.</p>"
        "<p>Failed task: {{ ti.task_id if ti else 'n/a' }}. See the Airflow logs; "
        "`python -m pipeline status` shows feed health and backlog.</p>",
    )


def rescore(chunk_size: int = 1024) -> dict:
    """Score the whole history with the active model (after a promotion), then rebuild its stats."""
    from pipeline.alerts.refresh import refresh
    from pipeline.classify.release.registry import NoActiveModel
    from pipeline.entities.run import score_and_link

    url = db.database_url()
    db.migrate(url)
    try:
        scored = score_and_link(url, chunk_size=chunk_size)
    except NoActiveModel as exc:
        _skip(str(exc))
    conn = db.connect(url)
    try:
        rows = refresh(conn, None, model=scored["model_version"], judge=False)["stats_rows"]
    finally:
        conn.close()
    return {**scored, "stats_rows": rows}


def classify(max_articles: int | None = None) -> dict:
    """Score stories the active model has not scored; skipped (not failed) when no model exists."""
    from pipeline.classify.release.registry import NoActiveModel
    from pipeline.entities.run import score_and_link

    url = db.database_url()
    db.migrate(url)
    try:
        return score_and_link(url, max_articles=max_articles)
    except NoActiveModel as exc:
        _skip(str(exc))


RUN_PARAMS = ("force",)  # finsent_train's params that steer the run, not the training


def train_model(params: Mapping[str, Any]) -> str:
    """Train (no evaluation yet); returns the model directory."""
    from pipeline.classify.training.train import train_from

    return str(train_from({k: v for k, v in dict(params).items() if k not in RUN_PARAMS}))


def evaluate_model(model_dir: str) -> dict:
    from pipeline.classify.evaluation.evaluate import evaluate

    return evaluate(model_dir)["summary"]


def fit_mention_tagger(model_dir: str) -> dict:
    """The candidate's own company tagger (its backbone's states feed it): without one, a promoted model would
    link companies by the catalogue's rules alone."""
    from pipeline.entities.train_detector import train_detector

    return train_detector(model_dir)


def register_and_promote(model_dir: str, force: bool = False) -> dict:
    from pipeline.lifecycle import register_and_promote as run

    return run(model_dir, force=force)["promotion"]


AGGREGATE_LOOKBACK_H = 24  # late stories: hours before the window whose stats are rebuilt too


def detect(window: Mapping[str, str]) -> dict:
    """Rebuild hourly stats for the window (and the day before it), then judge each hour."""
    from pipeline.alerts.refresh import refresh
    from pipeline.classify.release.registry import NoActiveModel

    span = (windows.to_utc(window["start"]), windows.to_utc(window["end"]))
    conn = db.connect()
    try:
        out = refresh(conn, span, lookback_h=AGGREGATE_LOOKBACK_H)
    except NoActiveModel:
        _skip("no active model: nothing to aggregate")
    finally:
        conn.close()
    del out["span"]
    return out


def _write_metrics(conn) -> None:
    """Refresh the Prometheus textfile when ``FINSENT_METRICS_TEXTFILE`` names one (never fails the run)."""
    path = os.environ.get("FINSENT_METRICS_TEXTFILE")
    if not path:
        return
    from pipeline import metrics

    try:
        metrics.write_textfile(conn, path)
    except Exception as exc:  # a full disk or a bad path must not stop alert email
        log.error("metrics textfile %s not written: %s", path, exc)
        conn.rollback()


def notify(window: Mapping[str, str], params: Mapping[str, Any] | None, now: datetime | None = None) -> dict:
    """Deliver unsent alerts on their routed channels; a backfill window sends nothing unless params['notify']."""
    from pipeline.alerts import rules
    from pipeline.alerts.notify import NotifyError, notify_pending, window_for_notify

    if os.environ.get("FINSENT_ALERT_RECIPIENTS"):
        raise NotifyError(
            "FINSENT_ALERT_RECIPIENTS is no longer read: recipients now live under `routing` in "
            f"{config.alert_rules_file()} (see docs/alerts.md)"
        )
    settings = config.load().alerts
    routing = rules.load().routing
    start, end = windows.to_utc(window["start"]), windows.to_utc(window["end"])
    span = window_for_notify(
        start, end, is_live(end, now), settings.notify_lookback_h, bool((params or {}).get("notify"))
    )
    if span is None:
        log.info('backfill window [%s, %s): alerts recorded, no email (conf {"notify": true} sends)', start, end)
        return {"sent": [], "skipped": "backfill"}
    conn = db.connect()
    try:
        return notify_pending(
            conn,
            span[0],
            span[1],
            routing=routing,
            smtp_conn_id=settings.smtp_conn_id,
            from_email=settings.from_email,
            dashboard_url=settings.dashboard_url,
        )
    finally:
        _write_metrics(conn)  # after delivery, failed or not: the figures include this run's sends
        conn.close()


def digest_day(run_at: datetime, params: Mapping[str, Any] | None) -> str:
    """The UTC day a digest run covers: ``params['day']`` when given, else the day before the run."""
    from datetime import date, timedelta

    wanted = (params or {}).get("day")
    if wanted:
        return date.fromisoformat(str(wanted)).isoformat()
    return (windows.to_utc(run_at).date() - timedelta(days=1)).isoformat()


def digest(day: str) -> dict:
    """Send the daily digest for ``day`` (ISO date) on every routed channel that has not had it."""
    from datetime import date

    from pipeline.alerts import rules
    from pipeline.alerts.digest import send_digest
    from pipeline.classify.release.registry import NoActiveModel, active_version

    settings = config.load().alerts
    routing = rules.load().routing
    conn = db.connect()
    try:
        try:
            model = active_version(conn)
        except NoActiveModel:
            _skip("no active model: nothing to summarise")
        return send_digest(
            conn,
            date.fromisoformat(day),
            model_version=model,
            routing=routing,
            smtp_conn_id=settings.smtp_conn_id,
            from_email=settings.from_email,
            dashboard_url=settings.dashboard_url,
        )
    finally:
        _write_metrics(conn)
        conn.close()
