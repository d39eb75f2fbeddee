"""What the Overview shows first: a range and a bucket size that fit the stored data (pure functions).

The bundled demo history spans years and thins out near its newest hour, so a
fixed "last 7 days of hours" can show a handful of stories. The default range
is the shortest one that holds enough of the data, and the bucket the finest
one that is not mostly empty.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

RANGES: dict[str, timedelta | None] = {
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Last 365 days": timedelta(days=365),
    "All": None,
}
BUSY = "Latest busy period"  # offered when the newest data are thin but an older period is dense
BUSY_SPAN = timedelta(days=62)
BUSY_SHARE = 0.7  # a day is "busy" when its trailing week holds this share of the busiest week's stories
BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
ENOUGH_STORIES = 200  # a range is "enough" when it holds this many stories, or half of all stored
FILLED = 0.5  # a bucket size fits when at least this share of its buckets in the range hold a story
MAX_BUCKETS = 400  # ... and the chart has at most this many points (two months of hours is noise, not a trend)


def default_range(per_hour: pd.DataFrame, latest_end: datetime) -> str:
    """The shortest range (ending at the newest data hour) that holds enough of the stored stories.

    ``per_hour``: the overall series, one row per hour that holds stories (``hour``, ``stories``).
    """
    total = int(per_hour["stories"].sum()) if not per_hour.empty else 0
    if total == 0:
        return "Last 7 days"
    want = min(ENOUGH_STORIES, max(1, total // 2))
    for name, span in RANGES.items():
        if span is None or int(per_hour.loc[per_hour["hour"] >= latest_end - span, "stories"].sum()) >= want:
            return name
    return "All"


def busy_period(per_hour: pd.DataFrame) -> tuple[datetime, datetime] | None:
    """[start, end) of the latest dense stretch of the history (up to BUSY_SPAN long), or None without data.

    A replayed archive (say, two months of 2023) next to a trickle of recent live stories: the first look
    belongs on the archive, where there is something to read, not on an almost empty last year.
    """
    if per_hour.empty:
        return None
    daily = per_hour.set_index(pd.DatetimeIndex(per_hour["hour"]))["stories"].astype(float).resample("1D").sum()
    week = daily.rolling(7, min_periods=1).sum()
    busy = week[(week >= BUSY_SHARE * week.max()) & (daily > 0)]
    end = (busy.index[-1] + pd.Timedelta(days=1)).to_pydatetime()
    return max(daily.index[0].to_pydatetime(), end - BUSY_SPAN), end


def first_view(per_hour: pd.DataFrame, latest_end: datetime) -> str:
    """The range the Overview opens on: ``default_range``, unless the recent data are thin and an older
    stretch is dense, then BUSY."""
    name = default_range(per_hour, latest_end)
    span = RANGES.get(name)
    busy = busy_period(per_hour)
    if busy and (span is None or span > timedelta(days=30)) and busy[1] < latest_end - timedelta(days=30):
        return BUSY
    return name


def news_end(per_hour: pd.DataFrame, latest_end: datetime) -> datetime:
    """Where "recent" ends for views that look back from one instant (the Companies ranking): the newest data
    hour, or the end of the latest busy period when the first look goes there."""
    if first_view(per_hour, latest_end) == BUSY:
        return busy_period(per_hour)[1]
    return latest_end


def fill_gaps(buckets: pd.DataFrame, bucket: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Every bucket of [start, end) for every series: empty ones get 0 stories and no share, so a line
    chart breaks there instead of drawing a line across weeks without data."""
    size = pd.Timedelta(BUCKETS[bucket])
    n = max(1, -(-(pd.Timestamp(end) - pd.Timestamp(start)) // size))
    grid = pd.Timestamp(start) + size * pd.RangeIndex(n)
    parts = []
    for name, part in buckets.groupby("series", sort=False):
        full = part.set_index("period").reindex(grid)
        full.index.name = "period"
        full["series"] = name
        full[["stories", "negatives"]] = full[["stories", "negatives"]].fillna(0).astype(int)
        parts.append(full.reset_index())
    return pd.concat(parts, ignore_index=True) if parts else buckets


def _slot(times: pd.Series, start: datetime, size: timedelta) -> pd.Series:
    """Index of the bucket of ``size`` (counted from ``start``) that each time falls in."""
    return (times - pd.Timestamp(start)) // pd.Timedelta(size)


def default_bucket(hours: pd.Series, start: datetime, end: datetime) -> str:
    """The finest bucket (hour, day, week) whose buckets in [start, end) are at least half filled
    (``hours``: the hours that hold stories)."""
    inside = hours[(hours >= start) & (hours < end)]
    if inside.empty:
        return "hour"
    for name, size in BUCKETS.items():
        possible = max(1, -(-(end - start) // size))
        if possible <= MAX_BUCKETS and _slot(inside, start, size).nunique() / possible >= FILLED:
            return name
    return "week"


def rebucket(hourly: pd.DataFrame, bucket: str, start: datetime) -> pd.DataFrame:
    """Hourly rows (hour, series, stories, negatives, mean_sentiment) summed into buckets counted from
    ``start``; ``period`` is each bucket's start."""
    size = pd.Timedelta(BUCKETS[bucket])
    df = hourly.assign(
        period=pd.Timestamp(start) + _slot(hourly["hour"], start, BUCKETS[bucket]) * size,
        weighted=hourly["mean_sentiment"].astype(float) * hourly["stories"].astype(float),
    )
    out = df.groupby(["period", "series"], as_index=False).agg(
        stories=("stories", "sum"), negatives=("negatives", "sum"), weighted=("weighted", "sum")
    )
    n = out["stories"].astype(float).clip(lower=1)
    out["neg_share"] = out["negatives"].astype(float) / n
    out["mean_sentiment"] = out["weighted"] / n
    return out.drop(columns="weighted")


def span_note(start: datetime, end: datetime, stories: int, bucket: str, lo: datetime, hi: datetime) -> str:
    return (
        f"Showing {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({stories:,} stories) in {bucket} buckets. "
        f"Stored data spans {lo:%Y-%m-%d} to {hi:%Y-%m-%d}."
    )


def wait_text(oldest: datetime | None, now: datetime | None = None) -> str:
    """How long the oldest unscored story has waited, for the health page ("none" when nothing waits)."""
    if oldest is None or pd.isna(oldest):
        return "none"
    secs = max(0.0, ((now or datetime.now(UTC)) - pd.Timestamp(oldest).to_pydatetime()).total_seconds())
    if secs < 120:
        return f"{secs:.0f} s"
    if secs < 7200:
        return f"{secs / 60:.0f} min"
    return f"{secs / 3600:.1f} h"
