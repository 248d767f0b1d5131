"""SMA inverters' own web interfaces (local JSON): live values in our polling envelope.

Both interfaces answer with instantaneous values and no time of their own, so the gateway wraps
the body as received in `{"polled_at", "interval_s", "response"}` (`rules.polled`): a reading
covers [polled_at - interval_s, polled_at) and its values are `estimated` (one sample, not an
average). Every device (WebConnect) or component (ennexOS) in the body is read; what they
measure is combined into one reading of the site (`_site`):

- pv_kw: PV generation [W] (`PvGen.PvW`), summed over devices. A device without that value
  but with the inverter's AC output (`GridMs.TotW`) and no battery values is a PV-only
  inverter: its AC output is its PV generation. On a battery inverter (Sunny Boy Storage)
  the AC output is battery power, already carried by battery_kw, so it is not used.
- battery_kw: discharge power - charge power [W] (SMA reports both as magnitudes, so
  + = discharging, as ours), summed over devices.
- soc_pct: the battery SoC [%]; several batteries: their plain mean (no capacities in the
  body to weight by).
- net_kw: the SMA Energy Meter's feed-in - draw [W] (+ = export, as ours). Every inverter
  the meter is wired to may report the same site meter: the first device (by id) that does is
  used, never a sum. `GridMs.TotW` is NOT the site meter: it is one inverter's AC output
  (SMA: "power supplied to the grid", + = fed out), blind to the household's load.
- A value SMA sends as null (normal at night) is missing, never 0; a channel is missing when
  any device carrying it sent null (a partial sum would understate the site). A magnitude
  sent negative is implausible: questionable.

`sma.webconnect-values.v1`: `POST /dyn/getValues.json?sid=...` ->
`{"result": {"<device id>": {"<key>": {"1": [{"val": 4200}]}, ...}}}`; older firmware sends
`{"<key>": {"val": 4200}}`. Keys (as pysma names them): `6100_0046C200` PV power,
`6100_40263F00` AC output (GridMs.TotW), `6100_00496900` / `6100_00496A00` battery charge /
discharge power, `6100_00295A00` battery SoC, `6100_40463600` / `6100_40463700` meter feed-in /
draw.

`sma.ennexos-live.v1`: `POST /api/v1/measurements/live` ->
`[{"channelId": "Measurement.GridMs.TotW", "componentId": "...", "values": [{"time": "...",
"value": 123.0}]}]`; the channel ids mapped are in `_ENNEXOS`. The envelope's `polled_at`
labels the reading: every channel of one poll shares one interval, whatever `time` each value
carries. Ask ennexOS for either the plant or its devices, not both: components are summed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexwatt_shared.contracts import Channel, ReadingSource, TelemetryInterval
from nexwatt_telemetry_ingest.formats import Format, FormatError, RawContext, rules

VENDOR = "sma"

# What one device measures, by quantity; each quantity in W, except SoC in %.
PV_W, AC_W, CHARGE_W, DISCHARGE_W, SOC, METER_OUT_W, METER_IN_W = (
    "pv_w", "ac_w", "charge_w", "discharge_w", "soc", "meter_out_w", "meter_in_w",
)  # fmt: skip
_MAGNITUDES = (PV_W, CHARGE_W, DISCHARGE_W, METER_OUT_W, METER_IN_W)
_BATTERY = (CHARGE_W, DISCHARGE_W, SOC)

_WEBCONNECT = {
    "6100_0046C200": PV_W,
    "6100_40263F00": AC_W,
    "6100_00496900": CHARGE_W,
    "6100_00496A00": DISCHARGE_W,
    "6100_00295A00": SOC,
    "6100_40463600": METER_OUT_W,
    "6100_40463700": METER_IN_W,
}
_ENNEXOS = {
    "Measurement.PvGen.PvW": PV_W,
    "Measurement.GridMs.TotW": AC_W,
    "Measurement.BatChrg.CurBatCha": CHARGE_W,
    "Measurement.BatDsch.CurBatDsch": DISCHARGE_W,
    "Measurement.Bat.ChaStt": SOC,
    "Measurement.Metering.GridMs.TotWOut": METER_OUT_W,
    "Measurement.Metering.GridMs.TotWIn": METER_IN_W,
}

Device = dict[str, float | None]  # quantity -> value; a quantity not measured is absent


def parse_webconnect(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    polled = rules.polled(data)
    body = rules.obj(polled.response, "response")
    result = rules.obj(rules.member(body, "result", "response"), "response.result")
    devices: dict[str, Device] = {}
    for device_id, keys in result.items():
        field = f"response.result.{device_id}"
        values = rules.obj(keys, field)
        devices[device_id] = {
            quantity: _webconnect_value(values[key], f"{field}.{key}")
            for key, quantity in _WEBCONNECT.items()
            if key in values
        }
    return _reading(devices, polled, ctx, "webconnect getValues", "response.result")


def _webconnect_value(entry: object, field: str) -> float | None:
    """`{"1": [{"val": x}]}` (one device class key, first value) or `{"val": x}`."""
    value = rules.obj(entry, field)
    if "val" in value:
        return rules.number(value["val"], f"{field}.val")
    if len(value) != 1:
        raise FormatError(field, f"expected one device class key, got {len(value)}")
    device_class, listed = next(iter(value.items()))
    samples = rules.array(listed, f"{field}.{device_class}")
    if not samples:
        return None
    first = rules.obj(samples[0], f"{field}.{device_class}[0]")
    return rules.number(rules.member(first, "val", f"{field}.{device_class}[0]"),
                        f"{field}.{device_class}[0].val")  # fmt: skip


def parse_ennexos(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    polled = rules.polled(data)
    devices: dict[str, Device] = {}
    for i, item in enumerate(rules.array(polled.response, "response")):
        field = f"response[{i}]"
        entry = rules.obj(item, field)
        channel_id = rules.text(rules.member(entry, "channelId", field), f"{field}.channelId")
        component = rules.text(rules.member(entry, "componentId", field), f"{field}.componentId")
        quantity = _ENNEXOS.get(channel_id)
        if quantity is None:
            continue  # a channel we do not map
        device = devices.setdefault(component, {})
        if quantity in device:
            raise FormatError(f"{field}.channelId", f"{channel_id} repeated for {component}"[:200])
        device[quantity] = _ennexos_value(rules.member(entry, "values", field), f"{field}.values")
    return _reading(devices, polled, ctx, "ennexOS measurements/live", "response")


def _ennexos_value(values: object, field: str) -> float | None:
    """The first value of a channel; no value, or `value` null or absent: missing."""
    listed = rules.array(values, field)
    if not listed:
        return None
    first = rules.obj(listed[0], f"{field}[0]")
    return rules.number(first.get("value"), f"{field}[0].value")


def _reading(
    devices: Mapping[str, Device],
    polled: rules.Polled,
    ctx: RawContext,
    endpoint: str,
    field: str,
) -> list[TelemetryInterval]:
    channels = _site([devices[d] for d in sorted(devices)])
    if not channels:
        raise FormatError(field, "no device reports PV, battery, SoC or meter values")
    reporting = sum(1 for d in devices.values() if any(v is not None for v in d.values()))
    return [
        polled.reading(
            ctx.asset_id,
            channels,
            ReadingSource(vendor=VENDOR, endpoint=endpoint),
            devices_reporting=reporting,
            devices_total=len(devices),
        )
    ]


def _site(devices: list[Device]) -> dict[Channel, float | None]:
    """One site's channels [kW, %] from its devices' quantities [W, %] (rules in the module
    docstring)."""
    pv: list[float | None] = []
    battery: list[float | None] = []
    soc: list[float | None] = []
    net: list[float | None] = []
    for raw in devices:
        device = {q: rules.magnitude(v) if q in _MAGNITUDES else v for q, v in raw.items()}
        has_battery = any(q in device for q in _BATTERY)
        if PV_W in device:
            pv.append(device[PV_W])
        elif AC_W in device and not has_battery:
            pv.append(device[AC_W])
        if CHARGE_W in device or DISCHARGE_W in device:
            battery.append(_minus(device.get(DISCHARGE_W), device.get(CHARGE_W)))
        if SOC in device:
            soc.append(device[SOC])
        if METER_OUT_W in device or METER_IN_W in device:
            net.append(_minus(device.get(METER_OUT_W), device.get(METER_IN_W)))
    channels: dict[Channel, float | None] = {}
    if pv:
        channels[Channel.PV_KW] = rules.kw_from_w(rules.total(pv))
    if battery:
        channels[Channel.BATTERY_KW] = rules.kw_from_w(rules.total(battery))
    if soc:
        channels[Channel.SOC_PCT] = rules.mean(soc)
    if net:
        channels[Channel.NET_KW] = rules.kw_from_w(net[0])  # one site meter, seen by several
    return channels


def _minus(a: float | None, b: float | None) -> float | None:
    """a - b of two magnitudes [W]; missing when either is."""
    return None if a is None or b is None else a - b


FORMATS: tuple[Format, ...] = (
    Format(
        name="sma.webconnect-values.v1",
        vendor=VENDOR,
        endpoint="webconnect getValues",
        parse=parse_webconnect,
        description="WebConnect live values (getValues.json) in the polling envelope",
    ),
    Format(
        name="sma.ennexos-live.v1",
        vendor=VENDOR,
        endpoint="ennexOS measurements/live",
        parse=parse_ennexos,
        description="ennexOS live measurements in the polling envelope",
    ),
)
