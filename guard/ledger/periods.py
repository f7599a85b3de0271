"""Calendar periods (day, ISO week, month) in an IANA time zone.

Budgets reset at local midnight of the configured zone, not every 24 hours: a day that contains a
DST change is 23 or 25 hours long, and a month ends when the zone's clock reaches the 1st.
"""
from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from guard.errors import ConfigError

PERIODS = ("day", "week", "month")


def zone(name: str | ZoneInfo | None) -> ZoneInfo:
    """A ZoneInfo from a name; None means the machine's own zone (TZ, /etc/localtime), else UTC."""
    if isinstance(name, ZoneInfo):
        return name
    if not name:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone: {name!r} is not an IANA time zone (try Europe/Berlin)") from None


def local_zone() -> ZoneInfo:
    # A fixed UTC offset would get DST wrong, so look for the zone's *name*.
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    return ZoneInfo("UTC")


def _first_instant(d: date, tz: ZoneInfo) -> float:
    """The first instant whose local date is `d`. fold=0 resolves a midnight that falls in a DST
    gap to the transition itself and one that is repeated to its first occurrence."""
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def period_start_date(period: str, local: date) -> date:
    if period == "day":
        return local
    if period == "week":
        return local - timedelta(days=local.weekday())   # ISO weeks start on Monday
    if period == "month":
        return local.replace(day=1)
    raise ConfigError(f"period: {period!r} is not one of {', '.join(PERIODS)}")


def _next_start_date(period: str, start: date) -> date:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return date(start.year + (start.month == 12), start.month % 12 + 1, 1)


def period_bounds(period: str, now: float, tz: str | ZoneInfo | None) -> tuple[float, float]:
    """[start, end) in epoch seconds of the calendar `period` containing `now` in zone `tz`."""
    z = zone(tz)
    local = datetime.fromtimestamp(now, z).date()
    start = period_start_date(period, local)
    lo, hi = _first_instant(start, z), _first_instant(_next_start_date(period, start), z)
    # A zone that skipped a whole local date boundary could put `now` before `lo`: step back.
    while now < lo:
        start = period_start_date(period, start - timedelta(days=1))
        lo, hi = _first_instant(start, z), _first_instant(_next_start_date(period, start), z)
    return lo, hi


def next_reset(period: str, now: float, tz: str | ZoneInfo | None) -> float:
    return period_bounds(period, now, tz)[1]


def period_label(period: str, start: float, tz: str | ZoneInfo | None) -> str:
    """`2025-03-30`, `2025-W13`, `2025-03`: how reports and messages name a period."""
    d = datetime.fromtimestamp(start, zone(tz)).date()
    if period == "day":
        return d.isoformat()
    if period == "week":
        y, w, _ = d.isocalendar()
        return f"{y}-W{w:02d}"
    return f"{d.year}-{d.month:02d}"


def format_reset(at: float, now: float, tz: str | ZoneInfo | None) -> str:
    """`2025-04-01 00:00 CEST (in 3h 20m)`."""
    z = zone(tz)
    when = datetime.fromtimestamp(at, z).strftime("%Y-%m-%d %H:%M %Z")
    left = max(0, int(at - now))
    d, rem = divmod(left, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    parts = [f"{d}d"] if d else []
    if h or d:
        parts.append(f"{h}h")
    if not d:
        parts.append(f"{m}m")
    return f"{when} (in {' '.join(parts)})"


def utc_day_bounds(day: date) -> tuple[float, float]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return start, start + 86400
