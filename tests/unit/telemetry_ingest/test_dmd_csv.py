"""Utility "Download My Data" CSV -> net_kw readings, and what an import of it sums up.

Every file is written here in the utilities' documented shape. The site is in Los Angeles:
PDT (UTC-7) in summer, PST (UTC-8) in winter; 2026-03-08 skips 02:00-03:00, 2026-11-01
repeats 01:00-02:00.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nexwatt_shared.codec import encode, envelope
from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_shared.topics import TELEMETRY_INTERVAL
from nexwatt_telemetry_ingest.formats import FormatError
from nexwatt_telemetry_ingest.mdms import Tally, dmd_csv
from nexwatt_telemetry_ingest.mdms.importer import ImportState, Record, import_files, record

LA = ZoneInfo("America/Los_Angeles")
PREAMBLE = (
    "Name,JANE DOE\n"
    'Address,"1 MAIN ST, ANYTOWN CA 94000"\n'
    "Account Number,1234567890\n"
    "Service,Service 1\n"
    "\n"
)
USAGE_HEADER = "TYPE,DATE,START TIME,END TIME,USAGE (kWh),COST,NOTES\n"
NET_HEADER = "TYPE,DATE,START TIME,END TIME,IMPORT (kWh),EXPORT (kWh),NOTES\n"
QUARTER = timedelta(minutes=15)


def rows(day: str, times: Sequence[str], value: str = "0.25", minutes: int = 15) -> str:
    """One data row per start time HH:MM, each `minutes` long, END TIME inclusive."""
    out = []
    for t in times:
        end = datetime.strptime(t, "%H:%M") + timedelta(minutes=minutes - 1)
        out.append(f"Electric usage,{day},{t},{end:%H:%M},{value},$0.06,\n")
    return "".join(out)


def quarter_hours(hours: range) -> list[str]:
    return [f"{h:02d}:{m:02d}" for h in hours for m in (0, 15, 30, 45)]


def parse(text: str, tz: ZoneInfo = LA) -> tuple[list[TelemetryInterval], list[FormatError]]:
    out = list(dmd_csv.parse(io.StringIO(text), "CSV-1", tz, Tally()))
    readings = [r for r in out if isinstance(r, TelemetryInterval)]
    return readings, [r for r in out if isinstance(r, FormatError)]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- time -----------------------------------------------------------------------------------


def test_an_inclusive_end_time_makes_a_15_minute_interval_labelled_by_its_start() -> None:
    # 00:00-00:14 is 15 min; 00:00 PDT = 07:00Z. 0.25 kWh in 0.25 h = 1.0 kW imported: -1.0 kW.
    readings, refused = parse(PREAMBLE + USAGE_HEADER + rows("2026-07-01", ["00:00", "00:15"]))
    assert refused == []
    assert [(r.interval_start, r.interval_s) for r in readings] == [
        (utc(2026, 7, 1, 7, 0), 900),
        (utc(2026, 7, 1, 7, 15), 900),
    ]
    assert [r.net_kw for r in readings] == [pytest.approx(-1.0, abs=1e-9)] * 2
    assert readings[0].quality == {Channel.NET_KW: Quality.ACTUAL}
    assert readings[0].source is not None and readings[0].source.vendor == "utility-csv"


def test_an_hourly_row_ending_at_59_lasts_an_hour() -> None:
    # 13:00-13:59 PDT = 20:00Z for 3600 s; 2.0 kWh in 1 h = 2.0 kW imported: -2.0 kW.
    readings, _ = parse(USAGE_HEADER + rows("2026-07-01", ["13:00"], "2.0", minutes=60))
    assert [(r.interval_start, r.interval_s) for r in readings] == [(utc(2026, 7, 1, 20), 3600)]
    assert readings[0].net_kw == pytest.approx(-2.0, abs=1e-9)


def test_the_autumn_day_has_100_quarter_hours_all_distinct_in_utc() -> None:
    # 00:00-01:45 PDT, then 01:00-01:45 again in PST, then 02:00-23:45 PST: 8 + 4 + 88 = 100.
    # 00:00 PDT = 07:00Z, and each row follows the previous by 15 min up to 23:45 PST = 07:45Z.
    times = quarter_hours(range(0, 2)) + quarter_hours(range(1, 24))
    readings, refused = parse(PREAMBLE + USAGE_HEADER + rows("2026-11-01", times))
    assert refused == []
    starts = [r.interval_start for r in readings]
    assert len(starts) == len(set(starts)) == 100
    assert starts == [utc(2026, 11, 1, 7, 0) + k * QUARTER for k in range(100)]
    assert starts[-1] == utc(2026, 11, 2, 7, 45)


def test_the_spring_day_has_92_quarter_hours() -> None:
    # 02:00-02:45 do not exist: 96 - 4 = 92 rows. 00:00 PST = 08:00Z; 03:00 PDT = 10:00Z follows
    # 01:45 PST = 09:45Z directly; 23:45 PDT = 06:45Z the next day.
    times = quarter_hours(range(0, 2)) + quarter_hours(range(3, 24))
    readings, refused = parse(USAGE_HEADER + rows("2026-03-08", times))
    assert refused == []
    starts = [r.interval_start for r in readings]
    assert starts == [utc(2026, 3, 8, 8, 0) + k * QUARTER for k in range(92)]
    assert starts[-1] == utc(2026, 3, 9, 6, 45)


def test_a_row_in_the_spring_gap_is_refused_and_the_day_still_read() -> None:
    times = ["01:45", "02:00", "03:00"]
    readings, refused = parse(USAGE_HEADER + rows("2026-03-08", times))
    # Lines: 1 header, 2 01:45, 3 02:00 (no such time), 4 03:00.
    assert [r.interval_start for r in readings] == [utc(2026, 3, 8, 9, 45), utc(2026, 3, 8, 10)]
    assert [e.field for e in refused] == ["line 3.START TIME"]
    assert "does not exist in America/Los_Angeles" in refused[0].reason


# --- values ---------------------------------------------------------------------------------


def test_import_and_export_columns_net_export_minus_import() -> None:
    # 0.35 kWh out - 0.10 kWh in = 0.25 kWh over 0.25 h = +1.0 kW;
    # 0.50 in - 0.00 out = -0.5 kWh / 0.25 h = -2.0 kW; an export left blank: missing.
    body = (
        "Electric usage,2026-07-01,12:00,12:14,0.10,0.35,\n"
        "Electric usage,2026-07-01,12:15,12:29,0.50,0.00,\n"
        "Electric usage,2026-07-01,12:30,12:44,0.20,,\n"
    )
    readings, refused = parse(PREAMBLE + NET_HEADER + body)
    assert refused == []
    assert [r.net_kw for r in readings] == [
        pytest.approx(1.0, abs=1e-9),
        pytest.approx(-2.0, abs=1e-9),
        None,
    ]
    assert readings[2].quality == {Channel.NET_KW: Quality.MISSING}


def test_a_blank_usage_is_missing_and_a_zero_is_zero() -> None:
    body = (
        "Electric usage,2026-07-01,12:00,12:14,,$0.00,\n"
        "Electric usage,2026-07-01,12:15,12:29,0,$0.00,\n"
        "Electric usage,2026-07-01,12:30,12:44\n"  # stops before its empty cells
    )
    readings, refused = parse(USAGE_HEADER + body)
    assert refused == []
    assert [r.net_kw for r in readings] == [None, 0.0, None]
    assert [r.quality[Channel.NET_KW] for r in readings] == [
        Quality.MISSING,
        Quality.ACTUAL,
        Quality.MISSING,
    ]


def test_a_negative_usage_is_export() -> None:
    # -0.1 kWh over 0.25 h: 0.4 kW delivered to the grid: +0.4 kW.
    readings, _ = parse(USAGE_HEADER + rows("2026-07-01", ["12:00"], "-0.1"))
    assert readings[0].net_kw == pytest.approx(0.4, abs=1e-9)


def test_a_bom_crlf_and_other_columns_are_read() -> None:
    text = (
        "\ufeffName,JOSE\r\n\r\nTYPE,DATE,START TIME,END TIME,USAGE (kWh),UNITS,COST,NOTES\r\n"
        "Electric usage,2026-07-01,00:00,00:14,0.25,kWh,$0.06,estimated?\r\n"
    )
    readings, refused = parse(text.removeprefix("\ufeff"))
    assert ([r.net_kw for r in readings], refused) == ([pytest.approx(-1.0, abs=1e-9)], [])


def test_an_implausible_value_is_dropped_and_flagged_questionable() -> None:
    # 1e9 kWh in 15 min = 4e9 kW: beyond any site (100 MW).
    readings, refused = parse(USAGE_HEADER + rows("2026-07-01", ["00:00"], "1e9"))
    assert refused == []
    assert (readings[0].net_kw, readings[0].quality) == (
        None,
        {Channel.NET_KW: Quality.QUESTIONABLE},
    )


# --- refused rows and files -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ("Electric usage,2026-07-01,00:00,00:14,abc,,", "USAGE (kWh)", "not a number"),
        ("Electric usage,2026-07-01,00:00,00:14,nan,,", "USAGE (kWh)", "not a number"),
        ("Electric usage,2026-07-01,00:00,00:14,1;5,,", "USAGE (kWh)", "not a number"),
        ("Electric usage,2026-07-01,00:00,00:14," + "9" * 500 + ",,", "USAGE (kWh)", "number"),
        ("Electric usage,07/01/2026,00:00,00:14,0.1,,", "DATE", "not a date-time"),
        ("Electric usage,2026-02-30,00:00,00:14,0.1,,", "DATE", "not a date-time"),
        ("Electric usage,2026-07-01,24:00,00:14,0.1,,", "START TIME", "not a date-time"),
        ("Electric usage,2026-07-01,00:00,,0.1,,", "END TIME", "not a date-time"),
        ("Electric usage,2026-07-01,00:00,23:59,24.0,,", "END TIME", "at most 60 min"),
        ("Electric usage,1999-12-31,00:00,00:14,0.1,,", "START TIME", "outside 2000-2100"),
        ("Electric usage", "DATE", "not a date-time"),
    ],
)
def test_an_unreadable_row_is_refused_naming_its_line_and_column(
    row: str, field: str, reason: str
) -> None:
    good = "Electric usage,2026-07-01,00:15,00:29,0.25,,\n"
    readings, refused = parse(USAGE_HEADER + row + "\n" + good)
    assert [r.net_kw for r in readings] == [pytest.approx(-1.0, abs=1e-9)]
    [error] = refused
    assert error.field == f"line 2.{field}"
    assert reason in error.reason


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (PREAMBLE, "header", "no TYPE,DATE,START TIME"),
        ("", "header", "no TYPE,DATE,START TIME"),
        (PREAMBLE * 30 + USAGE_HEADER, "header", "in the first 100 lines"),
        ("TYPE,DATE,START TIME,END TIME,COST\n", "line 1", "neither 'USAGE (kWh)'"),
        ("DATE,START TIME,END TIME,IMPORT (kWh)\n", "line 1", "nor 'IMPORT (kWh)' and"),
        (USAGE_HEADER + "x," + "y" * 200_000 + "\n", "line 2", "not CSV"),
        ('Name,"never closed\n' + USAGE_HEADER, "header", "no TYPE"),
    ],
)
def test_a_file_without_its_header_is_refused_whole(text: str, field: str, reason: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse(text)
    assert caught.value.field == field
    assert reason in caught.value.reason


HOSTILE_CELLS = ("", " ", "-", "0", "1e400", "NaN", "inf", "x" * 5000, "9" * 400, "\x00", '"', "é")


def test_every_hostile_cell_gives_readings_or_format_errors() -> None:
    header = NET_HEADER.rstrip("\n").split(",")
    sample = ["Electric usage", "2026-11-01", "01:00", "01:14", "0.1", "0.2", ""]
    crashed = []
    for i in range(len(sample)):
        for cell in HOSTILE_CELLS:
            changed = [*sample]
            changed[i] = cell
            text = ",".join(header) + "\n" + ",".join(sample) + "\n" + ",".join(changed) + "\n"
            try:
                parse(text)
            except FormatError:
                pass
            except Exception as exc:  # what the test exists to find
                crashed.append(f"{header[i]}={cell[:20]!r}: {type(exc).__name__}: {exc}")
    assert crashed == []


# --- what an import sums up (no Kafka: the records go to a list) ------------------------------


class ListSink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send_raw_many(self, topic: str, records: Sequence[Record]) -> None:
        self.records.extend(records)


async def test_an_import_counts_duplicates_gaps_missing_values_and_refusals(tmp_path: Path) -> None:
    times = ["00:00", "00:15", "00:15", "00:30", "01:30", "01:45"]  # 00:45-01:15 absent
    body = rows("2026-07-01", times) + "Electric usage,2026-07-01,02:00,02:14,,,\n"
    body += "Electric usage,2026-07-01,00:30,00:44,0.5,,\n"  # 00:30 again, another value
    body += "Electric usage,2026-07-01,02:15,02:29,lots,,\n"
    path = tmp_path / "meter.csv"
    path.write_text(PREAMBLE + USAGE_HEADER + body)
    sink = ListSink()
    state = ImportState.load(tmp_path / "state.json")
    summary = await import_files([(path, "csv")], "CSV-1", LA, sink, state, progress=False)
    assert (summary.files, summary.rows) == (1, 9)
    # 00:00, 00:15, 00:30, 01:30, 01:45 and 02:00 (missing); a duplicate 00:15; two refused.
    assert (summary.published, summary.duplicates, summary.missing_values) == (6, 1, 1)
    assert summary.refused == 2
    # Lines 1-5 preamble, 6 header, 7-15 the nine rows: `lots` is line 15.
    assert summary.reasons[0] == "meter.csv: line 15.USAGE (kWh): not a number of kWh: 'lots'"
    # 00:30 read as 0.25 kWh (-1.0 kW), then as 0.5 kWh in 15 min (-2.0 kW).
    assert "read twice with different values: -1.0 and -2.0 kW" in summary.reasons[1]
    # 00:45, 01:00, 01:15: three quarter-hours absent, from 00:45 PDT = 07:45Z, 45 min long.
    assert summary.gaps == 3
    assert summary.longest_gap == (timedelta(minutes=45), utc(2026, 7, 1, 7, 45), "meter.csv")
    assert len(sink.records) == 6
    assert "refused: 2" in summary.render()


async def test_an_import_skips_what_the_state_says_is_done(tmp_path: Path) -> None:
    path = tmp_path / "meter.csv"
    path.write_text(USAGE_HEADER + rows("2026-07-01", quarter_hours(range(0, 2))))
    state = ImportState.load(tmp_path / "state.json")
    first = ListSink()
    await import_files([(path, "csv")], "CSV-1", LA, first, state, progress=False)
    assert len(first.records) == 8
    again = ListSink()
    state = ImportState.load(tmp_path / "state.json")  # the saved progress: all 8 done
    summary = await import_files([(path, "csv")], "CSV-1", LA, again, state, progress=False)
    assert (again.records, summary.already_done, summary.published) == ([], 8, 0)
    restarted = ListSink()
    state = ImportState.load(tmp_path / "state.json", restart=True)
    await import_files([(path, "csv")], "CSV-1", LA, restarted, state, progress=False)
    assert restarted.records == first.records  # byte for byte: same ids, same events


def test_a_record_is_the_envelope_codec_builds_with_the_readings_natural_id() -> None:
    readings, _ = parse(USAGE_HEADER + rows("2026-07-01", ["00:00", "00:15"]))
    for reading in readings:
        key, value, headers = record(TELEMETRY_INTERVAL, reading)
        expected = envelope(
            TELEMETRY_INTERVAL,
            reading,
            source="nexwatt-ingest",
            event_id=f"mdms:CSV-1:{reading.interval_start:%Y%m%dT%H%M%SZ}:900",
            time=reading.interval_end,
        )
        assert (key, value, headers) == ("CSV-1", encode(expected), ())
