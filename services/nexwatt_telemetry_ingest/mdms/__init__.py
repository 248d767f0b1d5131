"""Meter data (MDMS) files: a utility meter's interval data, imported as standard readings.

A parser reads one file as a stream and yields, in a deterministic order, `TelemetryInterval`
readings that carry `net_kw` alone (+ = export to the grid, - = import, average kW over the
interval, labelled by its UTC start), and a `FormatError` for each row it could not read (the
rest of the file still is). A file that cannot be read at all raises `FormatError`.

- `greenbutton`: Green Button / NAESB REQ.21 ESPI Atom XML;
- `dmd_csv`: a utility's "Download My Data" CSV (local times);
- `importer`: `nexwatt-ingest import`, which publishes them on `telemetry.interval`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nexwatt_shared.contracts import TelemetryInterval
from nexwatt_telemetry_ingest.formats import FormatError

# What a parser yields: a reading, or why one row of the file was refused.
Row = TelemetryInterval | FormatError
Rows = Iterator[Row]


@dataclass
class Tally:
    """What a parser counts while it reads a file (the importer adds what it finds)."""

    rows: int = 0  # data rows read: CSV lines, ESPI IntervalReadings
    duplicates: int = 0  # rows that repeat an earlier row's interval with the same value
