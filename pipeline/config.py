"""Every setting in one place.

Values come from environment variables (``FINSENT_*`` and ``DATABASE_URL``),
then from Airflow connections where an Airflow is present, then from defaults
that make the embedded demo work on a fresh machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"
FEEDS_DIR = REPO_ROOT / "feeds"

USER_AGENT = "finsent/0.1 (+https://example.invalid/finsent; financial news monitor)"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _list(name: str) -> tuple[str, ...]:
    """A comma-separated setting as a tuple of non-empty items."""
    return tuple(x.strip() for x in os.environ.get(name, "").split(",") if x.strip())


def state_dir() -> Path:
    """Git-ignored folder for the embedded database, models and Airflow home."""
    return Path(_env("FINSENT_HOME", str(REPO_ROOT / ".state"))).resolve()


def default_conf_roots() -> tuple[Path, ...]:
    """Where a run's conf may name files when FINSENT_CONF_FILE_ROOTS is unset: the registries, the bundled
    data and ``<state>/imports``."""
    return (REPO_ROOT / "feeds", REPO_ROOT / "data", state_dir() / "imports")


@dataclass(frozen=True)
class IngestSettings:
    timeout_s: float = 20.0  # total time allowed for one feed download
    max_bytes: int = 10 * 1024 * 1024  # size cap on the (decoded) body
    concurrency: int = 8  # feeds fetched at once
    title_window_h: float = 24.0  # same normalised title within this window = syndicated copy
    default_timezone: str = "UTC"  # zone assumed for feed dates that carry none
    user_agent: str = USER_AGENT
    allow_hosts: tuple[str, ...] = ()  # hosts any feed may reach even if non-public (tests, the demo)
    file_roots: tuple[Path, ...] = (REPO_ROOT,)  # file: URLs may read under these (and the registry's folder)
    # files a DAG run's conf may name (feeds_file, archive_dir, history_csv): whoever may trigger a run must not
    # make the worker read its credentials or environment
    conf_roots: tuple[Path, ...] = field(default_factory=default_conf_roots)
    max_future_h: float = 48.0  # item dates further ahead than this are unknown (fall back to fetch time)
    min_interval_s: float = 120.0  # fast lane: least time between two polls of one feed (per feed: min_interval_s)
    max_retry_after_s: float = 86400.0  # a Retry-After further ahead than this is capped


@dataclass(frozen=True)
class AlertSettings:
    smtp_conn_id: str = "smtp_alerts"  # Airflow connection (smtp provider)
    from_email: str = "finsent-alerts@example.com"
    dashboard_url: str = "http://localhost:8501"
    notify_lookback_h: float = 6.0  # live runs also send unsent alerts this recent (e.g. after an SMTP outage)
    live_within_h: float = 2.0  # a run whose window ended longer ago is a backfill: no email by default
    data_team: tuple[str, ...] = ("data-eng@example.com",)  # DAG failure emails


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    db_conn_id: str
    ingest: IngestSettings = field(default_factory=IngestSettings)
    feeds_file: Path = FEEDS_DIR / "demo.yaml"
    classify_queue: str = "gpu"
    fast_schedule: str = "*/2 * * * *"  # the fast lane's cron (dags/finsent_fast.py; paused until switched on)
    alerts: AlertSettings = field(default_factory=AlertSettings)


@dataclass(frozen=True)
class Thresholds:
    """Surge-detector thresholds (used by ``pipeline.alerts.detect``); ``FINSENT_ALERT_<NAME>`` overrides each."""

    baseline_days: int = 7
    min_stories: int = 8  # stories in the judged span before it can alert
    min_negatives: int = 4  # negatives in the judged span before it can alert
    warning_p: float = 1e-3  # x 168 hours x 4 correlated looks: ~0.2 false alerts per topic-week (bench)
    critical_p: float = 1e-5
    pool_hours: int = 4  # also judge the hour pooled with up to 3 hours before it (1 = off)
    min_ratio: float = 1.5  # observed share / baseline share for a warning
    critical_ratio: float = 2.0  # ... for critical
    resolve_ratio: float = 1.25  # back under this ratio = resolved
    prior_strength: float = 20.0  # pseudo-stories of the global share mixed into thin baselines
    window_hours: int = 1  # hours judged as one observation (companies: 24, see config/alert_rules.yaml)
    # Cold start: no subject is judged until the whole stream holds this many stories in its baseline window
    # (a first hour of 4/10 negative against an empty history is not a surge).
    min_history_stories: int = 50
    # The slow view (alert kind 'regime'): the last regime_days (the current partial day included) against
    # the regime_baseline_days before them, frozen at the alert's start while it is live (python -m bench.events).
    regime_days: int = 3
    regime_baseline_days: int = 90
    regime_min_baseline_days: int = 28  # baseline days with at least regime_min_day_stories stories
    regime_min_day_stories: int = 20
    regime_z: float = 3.0  # recent share above the baseline mean, in baseline day-to-day standard errors
    regime_ratio: float = 1.3  # ... and at least this multiple of it
    regime_resolve_ratio: float = 1.1  # resolved when the recent share is back under this multiple

    @property
    def hours_before(self) -> int:
        """Hours before the judged one that its pooled looks may use; the baseline leaves them out."""
        return max(1, self.pool_hours - 1)


def entities_file() -> Path:
    """The user's companies and watchlists (``FINSENT_ENTITIES_FILE``)."""
    return Path(_env("FINSENT_ENTITIES_FILE", str(REPO_ROOT / "config" / "entities.yaml")))


def slack_timeout_s() -> float:
    """Seconds one Slack webhook post may take before it counts as failed (retried by the next run)."""
    return float(_env("FINSENT_SLACK_TIMEOUT_S", "20"))


def alert_rules_file() -> Path:
    """Surge thresholds per topic and for companies (``FINSENT_ALERT_RULES``)."""
    return Path(_env("FINSENT_ALERT_RULES", str(REPO_ROOT / "config" / "alert_rules.yaml")))


def alert_thresholds() -> Thresholds:
    """Surge thresholds with ``FINSENT_ALERT_*`` overrides."""
    kwargs = {}
    for f in fields(Thresholds):
        raw = os.environ.get(f"FINSENT_ALERT_{f.name.upper()}")
        if raw:
            kwargs[f.name] = type(f.default)(raw)
    return Thresholds(**kwargs)


def _airflow_connection_uri(conn_id: str) -> str | None:
    """URI of an Airflow connection, if Airflow is installed and it is defined."""
    if not os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") and not os.environ.get("FINSENT_USE_AIRFLOW_CONN"):
        return None  # avoid slow secret-backend lookups when nothing is configured
    try:
        from airflow.sdk import BaseHook  # type: ignore
    except Exception:  # pragma: no cover - airflow absent
        return None
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return None
    uri = conn.get_uri()
    return uri.replace("postgres://", "postgresql://", 1)


def load() -> Settings:
    """Read the settings from the environment (cheap; call where needed)."""
    conn_id = _env("FINSENT_DB_CONN_ID", "finsent_db")
    url = os.environ.get("DATABASE_URL") or _airflow_connection_uri(conn_id)
    ingest = IngestSettings(
        timeout_s=float(_env("FINSENT_FETCH_TIMEOUT_S", "20")),
        max_bytes=int(_env("FINSENT_FETCH_MAX_BYTES", str(10 * 1024 * 1024))),
        concurrency=int(_env("FINSENT_FETCH_CONCURRENCY", "8")),
        title_window_h=float(_env("FINSENT_TITLE_DEDUPE_WINDOW_H", "24")),
        default_timezone=_env("FINSENT_DEFAULT_FEED_TZ", "UTC"),
        user_agent=_env("FINSENT_USER_AGENT", USER_AGENT),
        allow_hosts=_list("FINSENT_FETCH_ALLOW_HOSTS"),
        file_roots=tuple(Path(p) for p in _list("FINSENT_FETCH_FILE_ROOTS")) or (REPO_ROOT,),
        conf_roots=tuple(Path(p) for p in _list("FINSENT_CONF_FILE_ROOTS")) or default_conf_roots(),
        min_interval_s=float(_env("FINSENT_FEED_MIN_INTERVAL_S", "120")),
    )
    alerts = AlertSettings(
        smtp_conn_id=_env("FINSENT_SMTP_CONN_ID", "smtp_alerts"),
        from_email=_env("FINSENT_ALERT_FROM", "finsent-alerts@example.com"),
        dashboard_url=_env("FINSENT_DASHBOARD_URL", "http://localhost:8501"),
        notify_lookback_h=float(_env("FINSENT_ALERT_NOTIFY_LOOKBACK_H", "6")),
        live_within_h=float(_env("FINSENT_ALERT_LIVE_WITHIN_H", "2")),
        data_team=tuple(
            a.strip() for a in _env("FINSENT_DATA_TEAM_EMAIL", "data-eng@example.com").split(",") if a.strip()
        ),
    )
    return Settings(
        alerts=alerts,
        database_url=url,
        db_conn_id=conn_id,
        ingest=ingest,
        feeds_file=Path(_env("FINSENT_FEEDS_FILE", str(FEEDS_DIR / "demo.yaml"))),
        classify_queue=_env("FINSENT_CLASSIFY_QUEUE", "gpu"),
        fast_schedule=_env("FINSENT_FAST_SCHEDULE", "*/2 * * * *"),
    )
