"""Generac PWRcell through the mobile app's cloud: UNOFFICIAL and UNCONFIRMED.

Generac publishes no API. Community integrations read what the PWRcell mobile app reads: a list
of the system's devices, each `{"deviceType": "PVL" | "BATTERY" | "INVERTER" | ...,
"deviceStatus": {"powerInWatts": ..., "soc": ..., "lifeTimeEnergyInWh": ...}}`. Nobody but
Generac can confirm that shape, so this format is strict: anything else in the places we read
is refused with the field and the reason, to be looked at rather than guessed at. (Locally a
PWRcell's Beacon speaks SunSpec Modbus, model 802: prefer `sunspec.modbus-models.v1`.)

The values are live, with no time of their own: the gateway wraps the body as received in our
polling envelope (`rules.polled`), `response` being the device list or an object holding it
under `devices`. A reading covers [polled_at - interval_s, polled_at), its values `estimated`.

- pv_kw: the sum of the PV links' (`PVL`, one per PV substring) `powerInWatts` [W].
- battery_kw: the sum of the batteries' `powerInWatts` [W]; there > 0 means DISCHARGING, as
  ours: no flip.
- soc_pct: the batteries' `soc` [%]; several: their plain mean (no capacities to weight by).
- net_kw: not read. The `INVERTER`'s power is its own AC output, not the site meter (it does
  not see the household's load); no meter device is known in this shape.
- Other device types (inverter, beacon, load controllers) are skipped. `lifeTimeEnergyInWh`
  is a counter we do not need.
- A null power or SoC is missing, never 0; a channel is missing when any device of its kind
  sent null. devices_total counts PV links and batteries, devices_reporting those with power.
"""

from __future__ import annotations

from typing import Any

from nexwatt_shared.contracts import Channel, ReadingSource, TelemetryInterval
from nexwatt_telemetry_ingest.formats import Format, FormatError, RawContext, rules

VENDOR = "generac"
ENDPOINT = "pwrcell devices (unofficial)"
_PV_LINK, _BATTERY = "PVL", "BATTERY"


def parse_devices(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    polled = rules.polled(data)
    devices, field = _device_list(polled.response)
    pv: list[float | None] = []
    battery: list[float | None] = []
    soc: list[float | None] = []
    for i, item in enumerate(devices):
        where = f"{field}[{i}]"
        device = rules.obj(item, where)
        kind = rules.text(rules.member(device, "deviceType", where), f"{where}.deviceType")
        if kind not in (_PV_LINK, _BATTERY):
            continue
        status = rules.obj(rules.member(device, "deviceStatus", where), f"{where}.deviceStatus")
        power = rules.number(
            rules.member(status, "powerInWatts", f"{where}.deviceStatus"),
            f"{where}.deviceStatus.powerInWatts",
        )
        if kind == _PV_LINK:
            pv.append(power)
        else:
            battery.append(power)
            soc.append(
                rules.number(
                    rules.member(status, "soc", f"{where}.deviceStatus"),
                    f"{where}.deviceStatus.soc",
                )
            )
    channels: dict[Channel, float | None] = {}
    if pv:
        channels[Channel.PV_KW] = rules.kw_from_w(rules.total(pv))
    if battery:
        channels[Channel.BATTERY_KW] = rules.kw_from_w(rules.total(battery))
        channels[Channel.SOC_PCT] = rules.mean(soc)
    if not channels:
        raise FormatError(field, "no PV link (PVL) or battery (BATTERY) device")
    powers = pv + battery
    return [
        polled.reading(
            ctx.asset_id,
            channels,
            ReadingSource(vendor=VENDOR, endpoint=ENDPOINT),
            devices_reporting=sum(1 for p in powers if p is not None),
            devices_total=len(powers),
        )
    ]


def _device_list(response: object) -> tuple[list[Any], str]:
    """The devices: the response itself when a list, else its `devices` member."""
    if isinstance(response, list):
        return response, "response"
    body = rules.obj(response, "response")
    field = "response.devices"
    return rules.array(rules.member(body, "devices", "response"), field), field


FORMATS: tuple[Format, ...] = (
    Format(
        name="generac.pwrcell-devices.v1",
        vendor=VENDOR,
        endpoint=ENDPOINT,
        parse=parse_devices,
        description="UNOFFICIAL: PWRcell app-cloud device status in the polling envelope",
    ),
)
