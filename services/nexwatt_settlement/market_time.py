"""Market time: the ISO's local days and hours, its holidays, and telemetry rolled up to them.

PJM settles in Eastern Prevailing Time and names hours by their end: hour ending 1 (HE1) is
00:00-01:00 local. A local day's hours are indexed 0-23 by the wall clock: on the spring DST
day hour 2 never happens (its slot stays empty), on the autumn day the repeated hour 1
gathers both hours' energy, so its mean power stays right.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from nexwatt_settlement.baselines import DayKind

PJM_TIMEZONE = "America/New_York"
S_PER_H = 3600
S_PER_DAY = 86_400
HOURS = 24
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th `weekday` (Monday 0) of a month; n = -1: the last."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def nerc_holidays(year: int) -> frozenset[date]:
    """The NERC holidays PJM's baselines leave out as candidate days: New Year's Day, Memorial
    Day (last Monday of May), Independence Day, Labor Day (first Monday of September),
    Thanksgiving (fourth Thursday of November) and Christmas; a fixed-date one falling on a
    Sunday is observed the Monday after (NERC does not move Saturday holidays)."""
    fixed = [date(year, 1, 1), date(year, 7, 4), date(year, 12, 25)]
    observed = [d + timedelta(days=1) if d.weekday() == 6 else d for d in fixed]
    return frozenset(
        [
            *observed,
            _nth_weekday(year, 5, 0, -1),
            _nth_weekday(year, 9, 0, 1),
            _nth_weekday(year, 11, 3, 4),
        ]
    )


def is_holiday(day: date) -> bool:
    return day in nerc_holidays(day.year)


def day_kind(day: date) -> DayKind:
    """The like-days an event on `day` is baselined against: a holiday counts as a weekend."""
    return DayKind.WEEKEND if day.weekday() >= 5 or is_holiday(day) else DayKind.WEEKDAY


class MarketClock:
    """Local days and hours of one market time zone."""

    def __init__(self, zone: str = PJM_TIMEZONE) -> None:
        self.zone = ZoneInfo(zone)

    def offsets_s(self, utc_s: np.ndarray) -> np.ndarray:
        """The zone's UTC offset at each instant [s] (looked up once per distinct UTC hour)."""
        hours, which = np.unique(np.floor_divide(utc_s, S_PER_H), return_inverse=True)
        offsets = [
            datetime.fromtimestamp(int(h) * S_PER_H, UTC).astimezone(self.zone).utcoffset()
            for h in hours
        ]
        return np.array([o.total_seconds() for o in offsets], dtype=float)[which.reshape(-1)]

    def local_s(self, utc_s: np.ndarray) -> np.ndarray:
        """Seconds since 1970-01-01 00:00 local wall-clock time [s]."""
        utc_s = np.asarray(utc_s, dtype=float)
        return utc_s + self.offsets_s(utc_s).reshape(utc_s.shape)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def local_hour(self, moment: datetime) -> int:
        return moment.astimezone(self.zone).hour


def day_number(day: date) -> int:
    """Days since 1970-01-01."""
    return day.toordinal() - EPOCH_ORDINAL


def from_day_number(number: int) -> date:
    return date.fromordinal(int(number) + EPOCH_ORDINAL)


def hourly_parts(
    utc_start_s: np.ndarray, duration_s: np.ndarray, value_kw: np.ndarray, clock: MarketClock
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intervals cut at hour boundaries, each piece placed in the local hour it falls in.

    Pieces are cut on the UTC hour, then read on the local clock with the offset in force at
    their start: a DST change (on a UTC hour in zones whose offsets are whole hours, as all of
    the US) never falls inside a piece.

    Args:
        utc_start_s: each interval's start [s since 1970, UTC]
        duration_s: each interval's length [s] (at most a day)
        value_kw: each interval's mean power [kW]
    Returns:
        (interval index, local day number, hour 0-23, energy [kWh], covered [s]), one entry per
        piece of an interval inside one hour.
    """
    start = np.asarray(utc_start_s, dtype=float)
    end = start + np.asarray(duration_s, dtype=float)
    value = np.asarray(value_kw, dtype=float)
    index = np.arange(start.size)
    pieces = []
    while start.size:
        hour_end = (np.floor_divide(start, S_PER_H) + 1) * S_PER_H
        piece_end = np.minimum(end, hour_end)
        pieces.append((index, start, piece_end - start))
        more = end > hour_end
        index, start, end = index[more], hour_end[more], end[more]
    which = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, dtype=np.intp)
    starts = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0)
    covered = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0)
    local = clock.local_s(starts)
    day = np.floor_divide(local, S_PER_DAY).astype(np.int64)
    hour = (np.floor_divide(local, S_PER_H) % HOURS).astype(np.int64)
    return which, day, hour, value[which] * covered / S_PER_H, covered
