"""The capacity market's delivery years (June 1 - May 31), against the calendar."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from nexwatt_shared.delivery_year import days_in, delivery_year, next_delivery_year, start_date


@pytest.mark.parametrize(
    ("day", "year"),
    [
        (date(2026, 5, 31), "2025/26"),  # last day of 2025/26
        (date(2026, 6, 1), "2026/27"),  # first day of 2026/27
        (date(2027, 1, 15), "2026/27"),
        (datetime(2028, 2, 29, 17, 0), "2027/28"),  # a datetime is a date
        (date(2099, 12, 31), "2099/00"),
    ],
)
def test_delivery_year_starts_on_june_1(day: date, year: str) -> None:
    assert delivery_year(day) == year
    first = start_date(year)
    assert first <= date(day.year, day.month, day.day) < first.replace(year=first.year + 1)


@pytest.mark.parametrize(
    ("year", "days"),
    [
        ("2024/25", 365),  # June 1, 2024 - May 31, 2025: Feb 2025 has 28 days
        ("2025/26", 365),
        ("2026/27", 365),
        ("2027/28", 366),  # holds Feb 29, 2028
        ("2023/24", 366),  # holds Feb 29, 2024
        ("2099/00", 365),  # 2100 is not a leap year (divisible by 100, not by 400)
        ("1999/00", 366),  # 2000 is (divisible by 400)
    ],
)
def test_days_in(year: str, days: int) -> None:
    assert days_in(year) == days


@pytest.mark.parametrize("year", ["2026/28", "2026-27", "26/27", "2026/7", "abcd/ef", "2026"])
def test_malformed_delivery_year_raises(year: str) -> None:
    with pytest.raises(ValueError):
        days_in(year)


@pytest.mark.parametrize(
    ("day", "year"),
    [
        (date(2026, 5, 31), "2026/27"),  # the day before 2026/27 begins
        (date(2026, 6, 1), "2027/28"),  # 2026/27 has begun: the next one
        (date(2026, 11, 28), "2027/28"),
    ],
)
def test_the_next_delivery_year_is_one_not_begun(day: date, year: str) -> None:
    assert next_delivery_year(day) == year
    assert start_date(year) > day
