"""Enphase Monitoring API v4 (cloud, JSON): microinverter production, battery, consumption meter.

What the API sends, and what we make of it:
- Times are epoch SECONDS in UTC; each interval is labelled by its END (`end_at`): relabelled
  by its start. An `end_at` off the interval grid is still read (start = end - length).
- Energy per interval `enwh` [Wh] becomes the interval's average power [kW]; the instantaneous
  `powr` [W] is not used (the energy is exact over the interval).
- `devices_reporting` per interval and `total_devices` per response say how many devices the
  values cover (e.g. 23 of 24 microinverters reported).
- `telemetry/production_micro`: 5-minute intervals -> pv_kw.
- `telemetry/battery`: 15-minute intervals with `charge`, `discharge` (both magnitudes [Wh]) and
  `soc` parts -> battery_kw = discharge - charge (+ = discharge), soc_pct at interval end. The
  top-level `last_reported_aggregate_soc` ("97%") is a snapshot outside the intervals: ignored.
- `telemetry/consumption_meter`: 15-minute intervals -> load_kw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nexwatt_shared.contracts import Channel, ReadingSource, TelemetryInterval
from nexwatt_telemetry_ingest.formats import Format, FormatError, RawContext, rules

VENDOR = "enphase"

# What one interval object (at `field`) holds: its channels and how many devices reported.
ReadInterval = Callable[[dict[str, Any], str], tuple[dict[Channel, float | None], int | None]]


def _parse(
    data: Any, ctx: RawContext, endpoint: str, interval_s: int, read: ReadInterval
) -> list[TelemetryInterval]:
    body = rules.obj(data, "")
    total = rules.count(body.get("total_devices"), "total_devices")
    intervals = rules.array(rules.member(body, "intervals", ""), "intervals")
    source = ReadingSource(vendor=VENDOR, endpoint=endpoint)
    readings = []
    for i, item in enumerate(intervals):
        field = f"intervals[{i}]"
        item = rules.obj(item, field)
        end = rules.from_epoch(rules.member(item, "end_at", field), f"{field}.end_at")
        channels, reporting = read(item, field)
        if reporting is not None and total is not None and reporting > total:
            raise FormatError(
                f"{field}.devices_reporting", f"{reporting} exceeds total_devices {total}"
            )
        readings.append(
            rules.reading(
                ctx.asset_id,
                rules.start_of(end, interval_s),
                interval_s,
                channels,
                source,
                devices_reporting=reporting,
                devices_total=total,
            )
        )
    return readings


def _energy_kw(part: dict[str, Any], field: str, interval_s: int) -> float | None:
    """`enwh` [Wh] of a part as the interval's average power [kW]."""
    return rules.kw_from_wh(rules.number(part.get("enwh"), f"{field}.enwh"), interval_s)


def _reporting(part: dict[str, Any], field: str) -> int | None:
    return rules.count(part.get("devices_reporting"), f"{field}.devices_reporting")


# --- telemetry/production_micro -------------------------------------------------------------

_MICRO_S = 300


def _read_micro(item: dict[str, Any], field: str) -> tuple[dict[Channel, float | None], int | None]:
    # 250 Wh over 5 min = 3.0 kW; a negative one is flagged by `reading`.
    return {Channel.PV_KW: _energy_kw(item, field, _MICRO_S)}, _reporting(item, field)


def parse_production_micro(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    """Microinverter production, 5-minute intervals -> pv_kw."""
    return _parse(data, ctx, "telemetry/production_micro", _MICRO_S, _read_micro)


# --- telemetry/battery ----------------------------------------------------------------------

_BATTERY_S = 900


def _read_battery(
    item: dict[str, Any], field: str
) -> tuple[dict[Channel, float | None], int | None]:
    """battery_kw = (discharge - charge) [Wh] over 15 min, + = discharge; devices reporting =
    the fewest among the parts present (the reading is no more complete than its least
    complete part)."""
    parts = {name: _part(item, name, field) for name in ("charge", "discharge", "soc")}
    charged = _flow_kw(parts["charge"], f"{field}.charge")
    discharged = _flow_kw(parts["discharge"], f"{field}.discharge")
    soc = parts["soc"]
    soc_pct = None if soc is None else rules.number(soc.get("percent"), f"{field}.soc.percent")
    battery_kw = None if charged is None or discharged is None else discharged - charged
    channels = {Channel.BATTERY_KW: battery_kw, Channel.SOC_PCT: soc_pct}
    present = [(name, part) for name, part in parts.items() if part is not None]
    counts = [_reporting(part, f"{field}.{name}") for name, part in present]
    return channels, min((n for n in counts if n is not None), default=None)


def _part(item: dict[str, Any], name: str, field: str) -> dict[str, Any] | None:
    part = item.get(name)
    return None if part is None else rules.obj(part, f"{field}.{name}")


def _flow_kw(part: dict[str, Any] | None, field: str) -> float | None:
    """A charge or discharge part as average power [kW]: Enphase sends both as magnitudes."""
    return None if part is None else rules.magnitude(_energy_kw(part, field, _BATTERY_S))


def parse_battery(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    """Battery charge/discharge energy and SoC, 15-minute intervals."""
    return _parse(data, ctx, "telemetry/battery", _BATTERY_S, _read_battery)


# --- telemetry/consumption_meter ------------------------------------------------------------

_CONSUMPTION_S = 900


def _read_consumption(
    item: dict[str, Any], field: str
) -> tuple[dict[Channel, float | None], int | None]:
    # 300 Wh over 15 min = 1.2 kW
    return {Channel.LOAD_KW: _energy_kw(item, field, _CONSUMPTION_S)}, _reporting(item, field)


def parse_consumption_meter(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    """Site consumption from the consumption CT, 15-minute intervals -> load_kw."""
    return _parse(data, ctx, "telemetry/consumption_meter", _CONSUMPTION_S, _read_consumption)


FORMATS: tuple[Format, ...] = (
    Format(
        name="enphase.production-micro.v1",
        vendor=VENDOR,
        endpoint="telemetry/production_micro",
        parse=parse_production_micro,
        description="Microinverter production, 5 min, with devices reporting",
    ),
    Format(
        name="enphase.battery.v1",
        vendor=VENDOR,
        endpoint="telemetry/battery",
        parse=parse_battery,
        description="Battery charge, discharge and SoC, 15 min",
    ),
    Format(
        name="enphase.consumption-meter.v1",
        vendor=VENDOR,
        endpoint="telemetry/consumption_meter",
        parse=parse_consumption_meter,
        description="Consumption meter, 15 min",
    ),
)
