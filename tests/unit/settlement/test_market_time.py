"""Market time against hand-worked calendars and clocks: holidays exactly, seconds exactly,
kWh to 1e-9.

PJM runs on Eastern Prevailing Time (America/New_York): EST = UTC-5, EDT = UTC-4. In 2026 DST
starts Sunday March 8 (02:00 EST -> 03:00 EDT, at 07:00 UTC) and ends Sunday November 1
(02:00 EDT -> 01:00 EST, at 06:00 UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from nexwatt_settlement.baselines import DayKind
from nexwatt_settlement.market_time import (
    MarketClock,
    day_kind,
    day_number,
    from_day_number,
    hourly_parts,
    is_holiday,
    nerc_holidays,
)

TOL_KWH = 1e-9
EST_S = -5 * 3600  # UTC offset of Eastern Standard Time [s]
EDT_S = -4 * 3600  # ... of Eastern Daylight Time [s]
CLOCK = MarketClock()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local_wall_s(day: date, hour: int, minute: int = 0) -> float:
    """Local wall-clock seconds since 1970-01-01 00:00 (what `MarketClock.local_s` gives)."""
    return float(day_number(day) * 86_400 + hour * 3600 + minute * 60)


# --- NERC holidays and day kinds --------------------------------------------------------------


def test_nerc_holidays_2026() -> None:
    # New Year     Thu Jan 1
    # Memorial Day last Monday of May: May 31 is a Sunday -> Mon May 25
    # Independence Sat Jul 4: a Saturday is not moved (Fri Jul 3 is a working day)
    # Labor Day    first Monday of September: Sep 1 is a Tuesday -> Mon Sep 7
    # Thanksgiving fourth Thursday of November: Thursdays 5, 12, 19, 26 -> Nov 26
    # Christmas    Fri Dec 25
    assert nerc_holidays(2026) == frozenset(
        {
            date(2026, 1, 1),
            date(2026, 5, 25),
            date(2026, 7, 4),
            date(2026, 9, 7),
            date(2026, 11, 26),
            date(2026, 12, 25),
        }
    )
    assert not is_holiday(date(2026, 7, 3))  # the Friday before a Saturday holiday
    assert not is_holiday(date(2026, 11, 27))  # the Friday after Thanksgiving


def test_a_sunday_holiday_is_observed_the_monday_after() -> None:
    # 2022: Christmas is Sunday Dec 25 -> observed Mon Dec 26.
    # 2023: New Year is Sunday Jan 1 -> observed Mon Jan 2.
    # 2021: Independence Day is Sunday Jul 4 -> observed Mon Jul 5; May 31, 2021 is itself the
    #       last Monday of May (the month's last day).
    assert date(2022, 12, 26) in nerc_holidays(2022)
    assert date(2022, 12, 25) not in nerc_holidays(2022)
    assert date(2023, 1, 2) in nerc_holidays(2023)
    assert {date(2021, 7, 5), date(2021, 5, 31)} <= nerc_holidays(2021)
    assert is_holiday(date(2022, 12, 26))


@pytest.mark.parametrize(
    ("day", "kind"),
    [
        (date(2026, 12, 2), DayKind.WEEKDAY),  # Wednesday
        (date(2026, 11, 27), DayKind.WEEKDAY),  # Friday after Thanksgiving: a working day
        (date(2026, 11, 28), DayKind.WEEKEND),  # Saturday
        (date(2026, 11, 29), DayKind.WEEKEND),  # Sunday
        (date(2026, 11, 26), DayKind.WEEKEND),  # Thanksgiving Thursday: a holiday
        (date(2026, 7, 4), DayKind.WEEKEND),  # a Saturday holiday
        (date(2022, 12, 26), DayKind.WEEKEND),  # Monday, Christmas observed
    ],
)
def test_day_kind_counts_holidays_as_weekend(day: date, kind: DayKind) -> None:
    assert day_kind(day) == kind


def test_day_numbers_count_from_1970() -> None:
    assert day_number(date(1970, 1, 1)) == 0
    assert day_number(date(1970, 2, 1)) == 31
    assert from_day_number(day_number(date(2026, 11, 1))) == date(2026, 11, 1)


# --- Local days and hours across DST ----------------------------------------------------------


def test_local_hours_when_dst_starts() -> None:
    # 2026-03-08: 06:59 UTC is 01:59 EST (hour 1); 07:00 UTC is 03:00 EDT (hour 3): the wall
    # clock never shows hour 2.
    assert CLOCK.local_hour(utc(2026, 3, 8, 6, 59)) == 1
    assert CLOCK.local_hour(utc(2026, 3, 8, 7, 0)) == 3
    assert CLOCK.local_date(utc(2026, 3, 8, 7, 0)) == date(2026, 3, 8)
    before, after = utc(2026, 3, 8, 6, 30).timestamp(), utc(2026, 3, 8, 7, 30).timestamp()
    assert CLOCK.offsets_s(np.array([before, after])).tolist() == [EST_S, EDT_S]
    # 06:30 UTC = 01:30 EST; 07:30 UTC = 03:30 EDT
    assert CLOCK.local_s(np.array([before, after])).tolist() == [
        local_wall_s(date(2026, 3, 8), 1, 30),
        local_wall_s(date(2026, 3, 8), 3, 30),
    ]


def test_local_hours_when_dst_ends() -> None:
    # 2026-11-01: 05:30 UTC is 01:30 EDT and 06:30 UTC is 01:30 EST: hour 1 happens twice;
    # 07:00 UTC is 02:00 EST (hour 2).
    first, second = utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)
    assert CLOCK.local_hour(first) == CLOCK.local_hour(second) == 1
    assert CLOCK.local_hour(utc(2026, 11, 1, 7, 0)) == 2
    seconds = np.array([first.timestamp(), second.timestamp()])
    assert CLOCK.offsets_s(seconds).tolist() == [EDT_S, EST_S]
    assert CLOCK.local_s(seconds).tolist() == [local_wall_s(date(2026, 11, 1), 1, 30)] * 2


def test_local_date_turns_at_local_midnight() -> None:
    # December is EST: local midnight of 2026-12-03 is 05:00 UTC.
    assert CLOCK.local_date(utc(2026, 12, 3, 4, 59)) == date(2026, 12, 2)
    assert CLOCK.local_hour(utc(2026, 12, 3, 4, 59)) == 23
    assert CLOCK.local_date(utc(2026, 12, 3, 5, 0)) == date(2026, 12, 3)


# --- Intervals cut at local hours -------------------------------------------------------------


def pieces(
    local_start_s: list[float], duration_s: list[float], value_kw: list[float]
) -> list[tuple[int, int, int, float, float]]:
    """hourly_parts as (interval, day number, hour, kWh, covered s), sorted; on a clock without
    offset, so local seconds are given as they are."""
    which, day, hour, kwh, covered = hourly_parts(
        np.array(local_start_s), np.array(duration_s), np.array(value_kw), MarketClock("UTC")
    )
    return sorted(
        zip(
            which.tolist(),
            day.tolist(),
            hour.tolist(),
            kwh.tolist(),
            covered.tolist(),
            strict=True,
        )
    )


def assert_pieces(
    got: list[tuple[int, int, int, float, float]],
    expected: list[tuple[int, int, int, float, float]],
) -> None:
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    np.testing.assert_allclose([g[3] for g in got], [e[3] for e in expected], rtol=0, atol=TOL_KWH)
    assert [g[4] for g in got] == [e[4] for e in expected]  # whole seconds: exact


def test_a_fifteen_minute_interval_across_an_hour_is_cut_in_two() -> None:
    # 10:50-11:05 local at 6 kW: 600 s in hour 10 -> 6 * 600/3600 = 1.0 kWh,
    #                            300 s in hour 11 -> 6 * 300/3600 = 0.5 kWh.
    day = date(2026, 12, 2)
    d = day_number(day)
    got = pieces([local_wall_s(day, 10, 50)], [900.0], [6.0])
    assert_pieces(got, [(0, d, 10, 1.0, 600.0), (0, d, 11, 0.5, 300.0)])


def test_intervals_inside_an_hour_and_across_midnight() -> None:
    # 0: 12:00-12:05 at 3 kW, inside hour 12      -> 3 * 300/3600  = 0.25 kWh
    # 1: 23:30-00:30 at 2 kW, across local midnight -> 2 * 1800/3600 = 1.0 kWh in hour 23,
    #    and 1.0 kWh in hour 0 of the next day
    # 2: 13:00-14:00 at -1.5 kW (charging), exactly hour 13 -> -1.5 kWh
    day = date(2026, 12, 2)
    d = day_number(day)
    got = pieces(
        [local_wall_s(day, 12), local_wall_s(day, 23, 30), local_wall_s(day, 13)],
        [300.0, 3600.0, 3600.0],
        [3.0, 2.0, -1.5],
    )
    assert_pieces(
        got,
        [
            (0, d, 12, 0.25, 300.0),
            (1, d, 23, 1.0, 1800.0),
            (1, d + 1, 0, 1.0, 1800.0),
            (2, d, 13, -1.5, 3600.0),
        ],
    )


def test_the_repeated_autumn_hour_gathers_both_hours() -> None:
    # 2026-11-01, 5-minute intervals at 1.2 kW starting 05:55 UTC (01:55 EDT) and 06:55 UTC
    # (01:55 EST): both land in hour 1, 300 s and 0.1 kWh each, so the hour holds 600 s and
    # 0.2 kWh and its mean power stays 0.2 kWh / (600/3600 h) = 1.2 kW.
    starts = np.array([utc(2026, 11, 1, 5, 55).timestamp(), utc(2026, 11, 1, 6, 55).timestamp()])
    which, day, hour, kwh, covered = hourly_parts(
        starts, np.array([300.0, 300.0]), np.array([1.2, 1.2]), CLOCK
    )
    assert which.tolist() == [0, 1]
    assert day.tolist() == [day_number(date(2026, 11, 1))] * 2
    assert hour.tolist() == [1, 1]
    np.testing.assert_allclose(kwh, [0.1, 0.1], rtol=0, atol=TOL_KWH)
    assert covered.tolist() == [300.0, 300.0]


@pytest.mark.parametrize(
    ("start", "hours", "kwh", "covered_s"),
    [
        # 2026-03-08 06:50-07:05 UTC at 6 kW = 01:50 EST - 03:05 EDT: 600 s in hour 1
        # (6 * 600/3600 = 1.0 kWh), 300 s in hour 3 (0.5 kWh). The module docstring says hour 2
        # of the spring day stays empty.
        (utc(2026, 3, 8, 6, 50), [1, 3], [1.0, 0.5], [600.0, 300.0]),
        # 2026-11-01 05:50-06:05 UTC at 6 kW = 01:50-02:00 EDT, then 01:00-01:05 EST: all
        # 900 s in hour 1, in two pieces (1.0 + 0.5 kWh).
        (utc(2026, 11, 1, 5, 50), [1, 1], [1.0, 0.5], [600.0, 300.0]),
    ],
)
def test_an_interval_across_a_dst_change_lands_in_the_hours_it_happened(
    start: datetime, hours: list[int], kwh: list[float], covered_s: list[float]
) -> None:
    _, _, hour, got_kwh, covered = hourly_parts(
        np.array([start.timestamp()]), np.array([900.0]), np.array([6.0]), CLOCK
    )
    assert hour.tolist() == hours
    np.testing.assert_allclose(got_kwh, kwh, rtol=0, atol=TOL_KWH)
    assert covered.tolist() == covered_s
