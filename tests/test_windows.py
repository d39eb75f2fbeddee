from datetime import UTC, datetime

import pytest

from pipeline import windows

UTC = UTC


def test_run_covers_the_hour_before_its_logical_date():
    start, end = windows.run_window(datetime(2026, 8, 10, 14, 0, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 8, 10, 13, tzinfo=UTC), datetime(2026, 8, 10, 14, tzinfo=UTC))
    # a manual run mid-hour covers the last whole hour
    assert windows.run_window(datetime(2026, 8, 10, 14, 37, tzinfo=UTC))[1] == datetime(2026, 8, 10, 14, tzinfo=UTC)


def test_conf_range_overrides_and_is_validated():
    w = windows.run_window(datetime(2026, 1, 1, tzinfo=UTC), {"start": "2026-08-01T00:00", "end": "2026-08-01T06:30Z"})
    assert w == (datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 8, 1, 6, tzinfo=UTC))
    assert len(windows.hours(w)) == 6
    with pytest.raises(ValueError):
        windows.run_window(datetime(2026, 1, 1, tzinfo=UTC), {"start": "2026-08-01T00:00"})
    with pytest.raises(ValueError):
        windows.run_window(datetime(2026, 1, 1, tzinfo=UTC), {"start": "2026-08-02", "end": "2026-08-01"})


def test_other_zones_convert_to_utc():
    w = windows.run_window(
        datetime(2026, 1, 1, tzinfo=UTC), {"start": "2026-08-01T02:00+02:00", "end": "2026-08-01T03:00+02:00"}
    )
    assert w[0] == datetime(2026, 8, 1, 0, tzinfo=UTC)
