"""A utility's "Download My Data" CSV -> net_kw readings.

What the file looks like (the spreadsheet form of a utility's Green Button download):

    Name,JANE DOE
    Address,"1 MAIN ST, ANYTOWN CA 94000"
    Account Number,1234567890
    Service,Service 1

    TYPE,DATE,START TIME,END TIME,USAGE (kWh),COST,NOTES
    Electric usage,2026-07-01,00:00,00:14,0.25,$0.06,

- a key/value preamble, then the header; columns are found by name (TYPE, COST, NOTES and any
  others are ignored), and a data row may stop before its last, empty, cells;
- DATE (YYYY-MM-DD), START TIME and END TIME (HH:MM) are the site's LOCAL wall clock; END TIME
  is inclusive, the interval's last minute (00:00-00:14 is 15 minutes);
- USAGE (kWh) is the energy drawn from the grid over the interval; net-metered files have
  IMPORT (kWh) and EXPORT (kWh) instead.

What we make of it (one `net_kw` reading per row, + = export):
- time: a row is labelled by its START, read in the site's time zone by `rules.localize`, the
  rows of one date as one series: in the autumn the repeated hour's rows come twice, first in
  daylight then in standard time; in the spring the skipped hour has no rows (a row inside it
  is refused). Length = END - START + 1 minute, at most 60 minutes.
- units and sign: kWh over the interval -> average kW, net = -usage / h, or
  (export - import) / h (0.25 kWh in 15 min = 1.0 kW of import: net -1.0 kW);
- a blank value is missing (null), never 0; with IMPORT/EXPORT, either one blank -> missing;
- quality: actual (the file does not say which values the utility estimated).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TextIO
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from nexwatt_shared.contracts import Channel, ReadingSource
from nexwatt_telemetry_ingest.formats import FormatError, rules
from nexwatt_telemetry_ingest.mdms import Rows, Tally

SOURCE = ReadingSource(vendor="utility-csv", endpoint="download-my-data")
DATE, START, END = "DATE", "START TIME", "END TIME"
USAGE, IMPORT, EXPORT = "USAGE (kWh)", "IMPORT (kWh)", "EXPORT (kWh)"
HEADER_WITHIN = 100  # lines the preamble may take before the header
_DAY = timedelta(days=1)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


@dataclass(frozen=True)
class _Row:
    line: int
    local_start: datetime  # wall clock, no offset
    interval_s: int
    net_kwh: float | None  # + = exported over the interval


def parse(stream: TextIO, asset_id: str, tz: ZoneInfo, tally: Tally) -> Rows:
    """The net_kw readings of a Download My Data CSV (text), in file order, and a FormatError
    for each row that cannot be read; raises FormatError when the header cannot be found or
    the file is not CSV."""
    lines = _lines(stream)
    columns = _header(lines)
    day: list[_Row] = []
    for line, cells in lines:
        if not any(c.strip() for c in cells):
            continue
        tally.rows += 1
        try:
            row = _row(line, cells, columns)
        except FormatError as exc:
            yield exc
            continue
        if day and row.local_start.date() != day[0].local_start.date():
            yield from _readings(day, asset_id, tz)
            day = []
        day.append(row)
    yield from _readings(day, asset_id, tz)


def _lines(stream: TextIO) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(stream)
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error as exc:  # e.g. a field beyond the csv module's size limit
        raise FormatError(f"line {reader.line_num}", f"not CSV: {exc}") from exc


def _header(lines: Iterator[tuple[int, list[str]]]) -> dict[str, int]:
    """Column name -> index, from the first line that names DATE, START TIME and END TIME."""
    for line, cells in lines:
        names = {cell.strip().upper(): i for i, cell in enumerate(cells)}
        if {DATE, START, END} <= names.keys():
            columns = {
                name: names[name.upper()]
                for name in (DATE, START, END, USAGE, IMPORT, EXPORT)
                if name.upper() in names
            }
            if USAGE not in columns and not {IMPORT, EXPORT} <= columns.keys():
                raise FormatError(
                    f"line {line}",
                    f"the header has neither {USAGE!r} nor {IMPORT!r} and {EXPORT!r}:"
                    f" {','.join(cells)[:200]!r}",
                )
            return columns
        if line >= HEADER_WITHIN:
            break
    raise FormatError(
        "header",
        f"no TYPE,{DATE},{START},{END},{USAGE},... header in the first {HEADER_WITHIN} lines",
    )


def _row(line: int, cells: list[str], columns: dict[str, int]) -> _Row:
    def cell(name: str) -> str:
        i = columns[name]
        return cells[i].strip() if i < len(cells) else ""

    date = _local(cell(DATE), "%Y-%m-%d", f"line {line}.{DATE}").date()
    start = datetime.combine(date, _local(cell(START), "%H:%M", f"line {line}.{START}").time())
    end = datetime.combine(date, _local(cell(END), "%H:%M", f"line {line}.{END}").time())
    length = (end - start) % _DAY + timedelta(minutes=1)  # END is the last minute, inclusive
    if length > timedelta(hours=1):
        raise FormatError(
            f"line {line}.{END}",
            f"{cell(START)}-{cell(END)} lasts {length.total_seconds() / 60:.0f} min: intervals"
            " last at most 60 min",
        )
    if USAGE in columns:
        usage = _kwh(cell(USAGE), f"line {line}.{USAGE}")
        net = None if usage is None else -usage
    else:
        imported = _kwh(cell(IMPORT), f"line {line}.{IMPORT}")
        exported = _kwh(cell(EXPORT), f"line {line}.{EXPORT}")
        net = None if imported is None or exported is None else exported - imported
    return _Row(line, start, int(length.total_seconds()), net)


def _local(text: str, pattern: str, field: str) -> datetime:
    """`rules.parse_local`, remembered: a file repeats a few hundred dates and times, and
    strptime would take a third of the time."""
    parsed = _parsed(text, pattern) if len(text) <= 10 else None
    return parsed if parsed is not None else rules.parse_local(text, pattern, field)  # raises


@lru_cache(maxsize=4096)
def _parsed(text: str, pattern: str) -> datetime | None:
    try:
        return rules.parse_local(text, pattern, "")
    except FormatError:
        return None


def _kwh(text: str, field: str) -> float | None:
    if not text:
        return None
    if len(text) > 40 or not _NUMBER.fullmatch(text):
        raise FormatError(field, f"not a number of kWh: {text!r}"[:120])
    return float(text)


def _readings(day: list[_Row], asset_id: str, tz: ZoneInfo) -> Rows:
    for row, start in zip(day, _starts(day, tz), strict=True):
        if isinstance(start, FormatError):
            yield start
            continue
        net_kw = rules.kw_from_wh(
            None if row.net_kwh is None else row.net_kwh * 1000, row.interval_s
        )
        try:
            reading = rules.reading(
                asset_id, start, row.interval_s, {Channel.NET_KW: net_kw}, SOURCE
            )
        except ValidationError as exc:  # e.g. an interval ending in 2100
            yield FormatError(f"line {row.line}", f"refused by the contract: {exc}")
            continue
        yield reading


def _starts(day: list[_Row], tz: ZoneInfo) -> list[datetime | FormatError]:
    """The UTC starts of one date's rows, read as one series (so the autumn's repeated hour
    resolves in order); a row whose time does not exist there gets its FormatError instead."""
    try:
        return list(rules.localize([r.local_start for r in day], tz, START))
    except FormatError:
        pass  # find the rows at fault, then read the others as one series
    bad: dict[int, FormatError] = {}
    for i, r in enumerate(day):
        try:
            rules.localize([r.local_start], tz, START)
        except FormatError as exc:
            bad[i] = FormatError(f"line {r.line}.{START}", exc.reason)
    good = iter(
        rules.localize([r.local_start for i, r in enumerate(day) if i not in bad], tz, START)
    )
    return [bad[i] if i in bad else next(good) for i in range(len(day))]
