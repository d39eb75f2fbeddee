"""The Overview's first look: a default range and bucket that fit the stored data (pure functions)."""

from datetime import UTC, datetime, timedelta

import pandas as pd

from dashboard import view

END = datetime(2026, 8, 14, 12, tzinfo=UTC)


def hours(*spec: tuple[datetime, int]) -> pd.DataFrame:
    return pd.DataFrame({"hour": pd.to_datetime([h for h, _ in spec], utc=True), "stories": [n for _, n in spec]})


def test_busy_recent_data_gets_the_last_day_in_hours():
    per_hour = hours(*[(END - timedelta(hours=h), 30) for h in range(1, 24 * 10)])
    assert view.default_range(per_hour, END) == "Last 24 hours"
    assert view.default_bucket(per_hour["hour"], END - timedelta(hours=24), END) == "hour"


def test_history_that_thins_out_gets_a_wider_range_and_coarser_buckets():
    # like the bundled snapshots: a few stories in the last days, most spread over two years
    old = [(END - timedelta(days=d, hours=3), 2) for d in range(20, 730, 3)]
    recent = [(END - timedelta(hours=h), 1) for h in (1, 5, 30)]
    per_hour = hours(*old, *recent)
    chosen = view.default_range(per_hour, END)
    assert chosen in ("Last 365 days", "All")
    start = END - view.RANGES[chosen] if view.RANGES[chosen] else per_hour["hour"].min()
    assert view.default_bucket(per_hour["hour"], start, END) == "week"
    assert int(per_hour.loc[per_hour["hour"] >= start, "stories"].sum()) >= min(200, per_hour["stories"].sum() // 2)


def test_nothing_stored_falls_back_quietly():
    empty = hours()
    assert view.default_range(empty, END) == "Last 7 days"
    assert view.default_bucket(empty["hour"], END - timedelta(days=7), END) == "hour"


def test_rebucket_sums_counts_and_weights_the_mean():
    df = pd.DataFrame(
        {
            "hour": pd.to_datetime(["2026-08-10T10:00Z", "2026-08-10T11:00Z", "2026-08-11T10:00Z"]),
            "series": "overall",
            "stories": [2, 3, 5],
            "negatives": [1, 0, 1],
            "neg_share": [0.5, 0.0, 0.2],
            "mean_sentiment": [0.1, 0.2, -0.1],
        }
    )
    day = view.rebucket(df, "day", datetime(2026, 8, 10, tzinfo=UTC))
    assert list(day["stories"]) == [5, 5] and list(day["negatives"]) == [1, 1]
    assert day["mean_sentiment"].iloc[0] == (2 * 0.1 + 3 * 0.2) / 5
    assert list(view.rebucket(df, "hour", datetime(2026, 8, 10, tzinfo=UTC))["stories"]) == [2, 3, 5]
    assert "Stored data spans 2024-01-01" in view.span_note(END, END, 3, "day", datetime(2024, 1, 1, tzinfo=UTC), END)


def test_the_first_look_goes_to_the_latest_busy_stretch_when_recent_data_are_thin():
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from dashboard import view

    archive = [datetime(2023, 1, 23, tzinfo=UTC) + timedelta(hours=h) for h in range(0, 60 * 24, 2)]
    trickle = [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=d) for d in range(20)]
    per_hour = pd.DataFrame({"hour": archive + trickle, "stories": [3] * len(archive) + [1] * len(trickle)})
    latest = trickle[-1] + timedelta(hours=1)
    assert view.first_view(per_hour, latest) == view.BUSY
    start, end = view.busy_period(per_hour)
    assert (start, end) == (datetime(2023, 1, 23, tzinfo=UTC), datetime(2023, 3, 24, tzinfo=UTC))
    steady = pd.DataFrame({"hour": archive, "stories": [3] * len(archive)})  # dense up to the newest hour
    assert view.first_view(steady, archive[-1] + timedelta(hours=1)) != view.BUSY


def test_empty_buckets_break_the_line_instead_of_joining_it():
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from dashboard import view

    t0 = datetime(2023, 3, 1, tzinfo=UTC)
    hourly = pd.DataFrame(
        {
            "hour": [t0, t0 + timedelta(days=3)],
            "series": ["overall", "overall"],
            "stories": [10, 5],
            "negatives": [2, 1],
            "mean_sentiment": [0.1, -0.2],
        }
    )
    filled = view.fill_gaps(view.rebucket(hourly, "day", t0), "day", t0, t0 + timedelta(days=4))
    assert len(filled) == 4 and list(filled["stories"]) == [10, 0, 0, 5]
    assert filled["neg_share"].isna().tolist() == [False, True, True, False]  # no value: the line breaks
