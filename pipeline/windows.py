"""Which hours a run covers (pure).

Airflow 3's cron schedules give zero-length data intervals, so the window is
computed here: a run at logical date T covers the hour that ended at T
floored to the hour, i.e. [floor(T) - 1h, floor(T)). A run's conf may name an
explicit range with ``start``/``end`` (ISO 8601; naive means UTC) for backfills.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

HOUR = timedelta(hours=1)


def to_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def floor_hour(value: datetime) -> datetime:
    return to_utc(value).replace(minute=0, second=0, microsecond=0)


def run_window(logical_date: datetime, conf: Mapping[str, Any] | None = None) -> tuple[datetime, datetime]:
    """The [start, end) hour range a run covers; both ends on whole hours."""
    conf = conf or {}
    if conf.get("start") or conf.get("end"):
        if not (conf.get("start") and conf.get("end")):
            raise ValueError("conf needs both 'start' and 'end' (ISO 8601)")
        start, end = floor_hour(to_utc(conf["start"])), floor_hour(to_utc(conf["end"]))
        if end <= start:
            raise ValueError(f"conf 'end' ({end.isoformat()}) must be after 'start' ({start.isoformat()})")
        return start, end
    end = floor_hour(logical_date)
    return end - HOUR, end


def hours(window: tuple[datetime, datetime]) -> list[datetime]:
    """Start of every hour in the window."""
    start, end = window
    out, t = [], start
    while t < end:
        out.append(t)
        t += HOUR
    return out
