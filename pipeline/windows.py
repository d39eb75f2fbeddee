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
# The longest window one command or run may cover: two decades of hours (175,320) is a whole archive backfill;
# a typo of thousands of years is refused before anything lists its hours.
MAX_SPAN = timedelta(days=20 * 366)


class WindowError(ValueError):
    """A window that is malformed, reversed, empty or longer than MAX_SPAN; the message says which."""


def to_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) > 64:  # no ISO time is this long: refused before parsing
                raise ValueError
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise WindowError(f"{text[:40]!r} is not an ISO 8601 time (e.g. 2026-03-01T09:00)") from None
    if not isinstance(value, datetime):
        raise WindowError(f"{type(value).__name__} is not a time")
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
            raise WindowError("conf needs both 'start' and 'end' (ISO 8601)")
        return checked(conf["start"], conf["end"], "conf ")
    end = floor_hour(logical_date)
    return end - HOUR, end


def checked(start: datetime | str, end: datetime | str, what: str = "") -> tuple[datetime, datetime]:
    """[start, end) floored to whole hours, refused when reversed, empty or longer than MAX_SPAN.

    The one check every CLI command and DAG run's conf goes through.
    """
    start, end = floor_hour(to_utc(start)), floor_hour(to_utc(end))
    if end <= start:
        raise WindowError(
            f"{what}'end' ({end.isoformat()}) must be after 'start' ({start.isoformat()}) once both are floored to the hour"
        )
    if end - start > MAX_SPAN:
        raise WindowError(
            f"{what}window {start:%Y-%m-%d}..{end:%Y-%m-%d} spans {(end - start).days:,} days; at most "
            f"{MAX_SPAN.days:,} days (split it into several runs)"
        )
    return start, end


def bounds(start: datetime | str | None, end: datetime | str | None) -> tuple[datetime, datetime] | None:
    """A row filter [start, end) where either end may be open (None: no filter); no span limit, since
    nothing is listed per hour from it. Reversed bounds are refused as in ``checked``."""
    if start is None and end is None:
        return None
    lo = to_utc(start) if start is not None else datetime(1, 1, 2, tzinfo=UTC)
    hi = to_utc(end) if end is not None else datetime(9999, 12, 30, tzinfo=UTC)
    if hi <= lo:
        raise WindowError(f"'end' ({hi.isoformat()}) must be after 'start' ({lo.isoformat()})")
    return lo, hi


def hours(window: tuple[datetime, datetime]) -> list[datetime]:
    """Start of every hour in the window (checked first: a huge window is refused, never listed)."""
    start, end = checked(*window)
    out, t = [], start
    while t < end:
        out.append(t)
        t += HOUR
    return out
