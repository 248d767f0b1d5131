"""Vendor and meter-data formats, and what they mean in the standard series.

Each format turns one vendor payload into `TelemetryInterval` readings (contract v2), by the
rules every format shares (`nexwatt_telemetry_ingest.formats.rules`):
- sign: + = delivered to the grid (battery discharge +); vendors that count charging as + are
  flipped;
- units: W, Wh, kWh and 10^n scale factors become kW; energy over an interval becomes the
  interval's average power;
- time: UTC out; local times without an offset are read in the site's IANA time zone (DST
  days included); intervals labelled by their end are relabelled by their start;
- resolution: each reading keeps its source's interval length; nothing is resampled;
- missing stays missing: a channel the source sent without a value is `null` with quality
  missing, never 0; an implausible value (negative PV, SoC outside 0-100 %, NaN) is dropped
  and flagged questionable, never stored.

A payload that cannot be read raises `FormatError` naming the field and the reason; the
consumer dead-letters it with the format's name. Each vendor module lists its formats in
`FORMATS`; `formats.catalog` collects them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from nexwatt_shared.contracts import TelemetryInterval


class FormatError(ValueError):
    """A payload that does not follow its format: `field` is where (dotted path), `reason` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RawContext:
    """What the envelope of a raw payload says about it."""

    asset_id: str
    site_tz: ZoneInfo | None  # the envelope's `sitetimezone`; None when it names none
    received_at: datetime  # the envelope's time: when the gateway or connector sent it


Parse = Callable[[Any, RawContext], list[TelemetryInterval]]


@dataclass(frozen=True)
class Format:
    """One vendor payload shape. `name` is the event type's tail on `telemetry.raw`, e.g.
    `solaredge.storage-data.v1` (type `nexwatt.telemetry.raw.solaredge.storage-data.v1`)."""

    name: str
    vendor: str
    endpoint: str
    parse: Parse
    description: str = ""
