"""SunSpec Modbus models, as our connector reads them (`connectors.sunspec_modbus`).

SunSpec is the common register map of inverters and batteries: a device lists models (blocks
of registers) by id. Registers hold live values with no time of their own, so the connector
sends `{"polled_at", "interval_s", "response": {"models": {"<id>": {"<point>": <raw>, ...}}}}`
(`rules.polled`): a reading covers [polled_at - interval_s, polled_at), values `estimated`.

Each point is its register value decoded by its SunSpec type (int16 signed, uint16 unsigned),
NOT scaled: value = raw x 10^`<sf point>` (a `sunssf`, int16, -10..10). A point at its type's
"not implemented" value, or whose scale factor is, is missing (null), never 0 (`_SENTINELS`);
so is a point the connector left out (beyond the model's length) or sent null. `POINTS` is
the register map the connector reads, by each point's offset from the model's ID register.

Mapping:
- pv_kw: `W` [W] of the inverter model 101, 102 or 103 (single, split, three phase: the same
  point), the AC output of a PV inverter; on a hybrid (an inverter and a battery model in one
  device) AC output minus the battery's discharge.
- battery_kw: `W` [W] of model 802 (battery), + = discharging. The model file only says "total
  power flowing to/from the battery bank"; integrations (evcc's SunSpec battery template)
  read it unflipped into a + = discharge convention, as ours: no flip.
- soc_pct: `SoC` of model 802 (% of WHRtg); without 802, `SoC` of model 713 (DER storage
  capacity); without either, `ChaState` of model 124 (basic storage, % of AhrRtg). The first
  of these present decides, even when its value is missing.
- Model 1 (common: maker, model, serial) is carried for people, not read. A device that
  lists a model twice: the connector sends the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexwatt_shared.contracts import Channel, ReadingSource, TelemetryInterval
from nexwatt_telemetry_ingest.formats import Format, FormatError, RawContext, rules

VENDOR = "sunspec"
FORMAT = "sunspec.modbus-models.v1"
INVERTERS = (101, 102, 103)
BATTERY, STORAGE_CAPACITY, BASIC_STORAGE = 802, 713, 124


@dataclass(frozen=True)
class Point:
    name: str
    offset: int  # registers from the model's ID register (ID at 0, length at 1)
    type: str  # SunSpec type: int16, uint16, sunssf, string
    size: int = 1  # registers


_INVERTER = (Point("W", 14, "int16"), Point("W_SF", 15, "sunssf"))
POINTS: dict[int, tuple[Point, ...]] = {
    1: (Point("Mn", 2, "string", 16), Point("Md", 18, "string", 16), Point("SN", 50, "string", 16)),
    **dict.fromkeys(INVERTERS, _INVERTER),
    BASIC_STORAGE: (Point("ChaState", 8, "uint16"), Point("ChaState_SF", 22, "sunssf")),
    STORAGE_CAPACITY: (Point("SoC", 4, "uint16"), Point("Pct_SF", 8, "sunssf")),
    BATTERY: (
        Point("SoC", 11, "uint16"),
        Point("W", 47, "int16"),
        Point("SoC_SF", 56, "sunssf"),
        Point("W_SF", 63, "sunssf"),
    ),
}
# Per numeric type: the range of a decoded register and its "not implemented" value.
_RANGES = {"int16": (-0x8000, 0x7FFF), "uint16": (0, 0xFFFF), "sunssf": (-0x8000, 0x7FFF)}
_SENTINELS = {"int16": -0x8000, "uint16": 0xFFFF, "sunssf": -0x8000}
_MAX_SF = 10  # SunSpec scale factors lie in -10..10


def parse_models(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    polled = rules.polled(data)
    body = rules.obj(polled.response, "response")
    models = rules.obj(rules.member(body, "models", "response"), "response.models")
    channels: dict[Channel, float | None] = {}
    inverter = next((m for m in INVERTERS if str(m) in models), None)
    battery = (
        rules.kw_from_w(_value(models, BATTERY, "W", "W_SF")) if str(BATTERY) in models else None
    )
    if inverter is not None:
        ac_kw = rules.kw_from_w(_value(models, inverter, "W", "W_SF"))
        # One device with an inverter and a battery model is a hybrid (DC-coupled): its AC
        # output is PV plus the battery's discharge, so PV = AC - battery (losses neglected,
        # the reading is estimated anyway); unknown when either is.
        if str(BATTERY) in models:
            ac_kw = None if ac_kw is None or battery is None else ac_kw - battery
        channels[Channel.PV_KW] = ac_kw
    if str(BATTERY) in models:
        channels[Channel.BATTERY_KW] = battery
    soc = next((m for m in (BATTERY, STORAGE_CAPACITY, BASIC_STORAGE) if str(m) in models), None)
    if soc == BATTERY:
        channels[Channel.SOC_PCT] = _value(models, BATTERY, "SoC", "SoC_SF")
    elif soc == STORAGE_CAPACITY:
        channels[Channel.SOC_PCT] = _value(models, STORAGE_CAPACITY, "SoC", "Pct_SF")
    elif soc == BASIC_STORAGE:
        channels[Channel.SOC_PCT] = _value(models, BASIC_STORAGE, "ChaState", "ChaState_SF")
    if not channels:
        raise FormatError("response.models", "no inverter (101-103) or storage (124, 713, 802)")
    return [
        polled.reading(
            ctx.asset_id,
            channels,
            ReadingSource(vendor=VENDOR, endpoint="modbus models"),
        )
    ]


def _value(models: dict[str, Any], model: int, point: str, sf_point: str) -> float | None:
    """A point's value, raw x 10^SF; missing when either is not implemented."""
    field = f"response.models.{model}"
    block = rules.obj(models[str(model)], field)
    raw = decoded(block.get(point), _type(model, point), f"{field}.{point}")
    sf = decoded(block.get(sf_point), "sunssf", f"{field}.{sf_point}")
    if sf is not None and not -_MAX_SF <= sf <= _MAX_SF:
        raise FormatError(f"{field}.{sf_point}", f"scale factor {sf} outside -10..10")
    return None if raw is None or sf is None else rules.scaled(raw, sf)


def decoded(raw: object, sunspec_type: str, field: str) -> int | None:
    """A register value of `sunspec_type`; None when absent, null or "not implemented"."""
    if raw is None:
        return None
    low, high = _RANGES[sunspec_type]
    if type(raw) is not int or not low <= raw <= high:  # a bool is no register
        raise FormatError(field, f"expected a {sunspec_type} register value, got {raw!r}"[:120])
    return None if raw == _SENTINELS[sunspec_type] else raw


def _type(model: int, point: str) -> str:
    return next(p.type for p in POINTS[model] if p.name == point)


FORMATS: tuple[Format, ...] = (
    Format(
        name=FORMAT,
        vendor=VENDOR,
        endpoint="modbus models",
        parse=parse_models,
        description="SunSpec Modbus models 101-103, 124, 713, 802 in the polling envelope",
    ),
)
