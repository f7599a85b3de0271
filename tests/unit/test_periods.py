"""Calendar periods in the configured zone: month ends, ISO weeks, DST days."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from guard.errors import ConfigError
from guard.ledger.periods import format_reset, next_reset, period_bounds, period_label

BERLIN = ZoneInfo("Europe/Berlin")


def ts(*args: int, tz: ZoneInfo = BERLIN) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def local(t: float, tz: ZoneInfo = BERLIN) -> datetime:
    return datetime.fromtimestamp(t, tz)


def test_month_ends_at_local_midnight_not_utc() -> None:
    # 23:30 Berlin on 31 Jan is 22:30 UTC: still January in Berlin
    lo, hi = period_bounds("month", ts(2025, 1, 31, 23, 30), "Europe/Berlin")
    assert local(lo) == datetime(2025, 1, 1, tzinfo=BERLIN)
    assert local(hi) == datetime(2025, 2, 1, tzinfo=BERLIN)
    # 00:30 Berlin on 1 Feb is still 31 Jan in UTC: already February here
    lo2, _ = period_bounds("month", ts(2025, 2, 1, 0, 30), "Europe/Berlin")
    assert lo2 == hi
    assert period_bounds("month", ts(2025, 2, 1, 0, 30), "UTC")[0] < lo2


def test_month_containing_a_dst_change_and_december() -> None:
    lo, hi = period_bounds("month", ts(2025, 3, 15), "Europe/Berlin")
    assert (hi - lo) / 3600 == 31 * 24 - 1          # March loses an hour
    lo, hi = period_bounds("month", ts(2025, 12, 31, 23, 59), "Europe/Berlin")
    assert local(hi) == datetime(2026, 1, 1, tzinfo=BERLIN)


@pytest.mark.parametrize("day, hours", [((2025, 3, 30), 23), ((2025, 10, 26), 25), ((2025, 6, 1), 24)])
def test_dst_days_are_23_or_25_hours(day: tuple[int, int, int], hours: int) -> None:
    lo, hi = period_bounds("day", ts(*day, 12), "Europe/Berlin")
    assert (hi - lo) / 3600 == hours
    assert local(lo).hour == 0 and local(hi).hour == 0


def test_day_whose_midnight_does_not_exist() -> None:
    # Chile springs forward at midnight: 2024-09-08 starts at 01:00
    tz = ZoneInfo("America/Santiago")
    lo, hi = period_bounds("day", ts(2024, 9, 8, 12, tz=tz), tz)
    assert local(lo, tz) == datetime(2024, 9, 8, 1, tzinfo=tz)
    assert (hi - lo) / 3600 == 23
    # the instant before the day starts belongs to the previous day
    assert period_bounds("day", lo - 1, tz)[1] == lo


def test_iso_week_starts_monday() -> None:
    lo, hi = period_bounds("week", ts(2025, 3, 30, 12), "Europe/Berlin")   # a Sunday
    assert local(lo) == datetime(2025, 3, 24, tzinfo=BERLIN)
    assert local(hi) == datetime(2025, 3, 31, tzinfo=BERLIN)
    assert (hi - lo) / 3600 == 7 * 24 - 1


def test_boundaries_are_half_open() -> None:
    start = ts(2025, 5, 1)
    assert period_bounds("month", start, "Europe/Berlin")[0] == start
    assert period_bounds("month", start - 0.001, "Europe/Berlin")[1] == start
    assert next_reset("day", start - 0.001, "Europe/Berlin") == start


def test_labels_and_reset_text() -> None:
    lo, _ = period_bounds("week", ts(2025, 1, 1), "Europe/Berlin")
    assert period_label("week", lo, "Europe/Berlin") == "2025-W01"
    assert period_label("month", ts(2025, 3, 5), "Europe/Berlin") == "2025-03"
    assert period_label("day", ts(2025, 3, 5, 23), "Europe/Berlin") == "2025-03-05"
    text = format_reset(ts(2025, 4, 1), ts(2025, 3, 31, 20, 40), "Europe/Berlin")
    assert text == "2025-04-01 00:00 CEST (in 3h 20m)"


def test_unknown_zone_or_period_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="IANA"):
        period_bounds("day", 0, "Mars/Olympus")
    with pytest.raises(ConfigError, match="period"):
        period_bounds("fortnight", 0, "UTC")
