"""The capacity market's delivery years: June 1 to May 31, named by their two calendar years,
"2026/27". One calendar for settlement's revenue, the capacity model's offers and the demo."""

from __future__ import annotations

from datetime import date


def start_date(year: str) -> date:
    """June 1 of delivery year `year` ("2026/27" -> 2026-06-01); ValueError unless it is
    written "YYYY/YY" with two consecutive years."""
    first, sep, second = year.partition("/")
    if not (sep and first.isdigit() and len(first) == 4 and second.isdigit() and len(second) == 2):
        raise ValueError(f"a delivery year is written 'YYYY/YY', got {year!r}")
    start = int(first)
    if int(second) != (start + 1) % 100:
        raise ValueError(f"{year!r} does not name two consecutive years")
    return date(start, 6, 1)


def delivery_year(day: date) -> str:
    """The delivery year holding `day`: June 1, 2026 to May 31, 2027 is "2026/27"."""
    start = day.year if day.month >= 6 else day.year - 1
    return f"{start}/{(start + 1) % 100:02d}"


def next_delivery_year(day: date) -> str:
    """The delivery year that starts after `day` (an auction sells one not begun)."""
    first = day.year + 1 if day.month >= 6 else day.year
    return f"{first}/{(first + 1) % 100:02d}"


def days_in(year: str) -> int:
    """Days from June 1 to May 31 of delivery year `year`: 366 when it holds a February 29."""
    start = start_date(year)
    return (start.replace(year=start.year + 1) - start).days
