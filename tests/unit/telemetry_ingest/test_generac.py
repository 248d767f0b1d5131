"""Generac PWRcell (unofficial app-cloud shape): sign, units, devices combined, missing and
implausible values, strictness, and hostile payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_telemetry_ingest.formats import FormatError, RawContext
from nexwatt_telemetry_ingest.formats.generac import FORMATS, parse_devices
from tests.unit.telemetry_ingest.hostile import refusals

POLLED_AT = int(datetime(2026, 7, 1, 14, 0, tzinfo=UTC).timestamp())
CTX = RawContext("asset-1", None, datetime(2026, 7, 1, 14, 0, 5, tzinfo=UTC))


def envelope(response: Any, interval_s: int = 300) -> dict[str, Any]:
    return {"polled_at": POLLED_AT, "interval_s": interval_s, "response": response}


def device(kind: str, watts: float | None, **status: Any) -> dict[str, Any]:
    return {
        "deviceType": kind,
        "serialNumber": "000100000000",
        "deviceStatus": {"powerInWatts": watts, "lifeTimeEnergyInWh": 12_345_678, **status},
    }


def one(readings: list[TelemetryInterval]) -> TelemetryInterval:
    assert len(readings) == 1
    return readings[0]


def test_pv_links_and_a_discharging_battery_in_kw_over_the_polled_interval() -> None:
    r = one(parse_devices(envelope([
        device("PVL", 1500),
        device("PVL", 2500),
        device("BATTERY", 1200, soc=80),
        device("INVERTER", 5200),  # its own AC output: not the site meter, not read
    ]), CTX))  # fmt: skip
    assert r.interval_start == datetime(2026, 7, 1, 13, 55, tzinfo=UTC)  # 14:00 - 300 s
    assert r.interval_s == 300
    assert r.pv_kw == pytest.approx(4.0, abs=1e-9)  # 1500 + 2500 W
    assert r.battery_kw == pytest.approx(1.2, abs=1e-9)  # > 0 = discharging there and here
    assert r.soc_pct == pytest.approx(80.0, abs=1e-9)
    assert r.net_kw is None and Channel.NET_KW not in r.quality
    assert r.quality == dict.fromkeys(
        (Channel.PV_KW, Channel.BATTERY_KW, Channel.SOC_PCT), Quality.ESTIMATED
    )
    assert (r.devices_reporting, r.devices_total) == (3, 3)  # PV links and batteries
    assert r.source is not None and "unofficial" in (r.source.endpoint or "")


def test_a_charging_battery_stays_negative_and_batteries_are_combined() -> None:
    r = one(parse_devices(envelope({"devices": [
        device("BATTERY", -3000, soc=40),
        device("BATTERY", -1000, soc=70),
    ]}), CTX))  # fmt: skip
    assert r.battery_kw == pytest.approx(-4.0, abs=1e-9)  # -3000 + -1000 W: charging, no flip
    assert r.soc_pct == pytest.approx(55.0, abs=1e-9)  # mean of 40 and 70 %
    assert Channel.PV_KW not in r.quality  # no PV link: PV is not measured by this reading


def test_null_is_missing_never_zero() -> None:
    r = one(parse_devices(envelope([
        device("PVL", None),
        device("PVL", 800),  # one link's power would understate the site: missing
        device("BATTERY", 0, soc=None),
    ]), CTX))  # fmt: skip
    assert (r.pv_kw, r.soc_pct) == (None, None)
    assert r.quality[Channel.PV_KW] is Quality.MISSING
    assert r.quality[Channel.SOC_PCT] is Quality.MISSING
    assert r.battery_kw == pytest.approx(0.0, abs=1e-9)  # a real 0 W stays 0
    assert (r.devices_reporting, r.devices_total) == (2, 3)


def test_implausible_values_are_flagged_questionable() -> None:
    r = one(parse_devices(envelope([device("PVL", -40), device("BATTERY", 100, soc=130)]), CTX))
    assert (r.pv_kw, r.soc_pct) == (None, None)
    assert r.quality[Channel.PV_KW] is Quality.QUESTIONABLE  # negative PV
    assert r.quality[Channel.SOC_PCT] is Quality.QUESTIONABLE  # 130 %
    assert r.battery_kw == pytest.approx(0.1, abs=1e-9)  # 100 W


@pytest.mark.parametrize(
    ("response", "field"),
    [
        ([device("INVERTER", 5000)], "response"),
        ([], "response"),
        ({"systems": []}, "response.devices"),
        ({"devices": {"PVL": 1}}, "response.devices"),
        ([{"deviceStatus": {"powerInWatts": 1}}], "response[0].deviceType"),
        ([{**device("PVL", 1), "deviceType": 4}], "response[0].deviceType"),
        ([{"deviceType": "PVL"}], "response[0].deviceStatus"),
        ([{"deviceType": "PVL", "deviceStatus": [1]}], "response[0].deviceStatus"),
        ([{"deviceType": "PVL", "deviceStatus": {}}], "response[0].deviceStatus.powerInWatts"),
        ([device("PVL", "1.5 kW")], "response[0].deviceStatus.powerInWatts"),
        ([device("BATTERY", 10)], "response[0].deviceStatus.soc"),
        ([device("BATTERY", 10, soc="80%")], "response[0].deviceStatus.soc"),
        ("devices", "response"),
    ],
)
def test_an_unconfirmed_shape_is_refused_strictly_with_the_field(response: Any, field: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_devices(envelope(response), CTX)
    assert caught.value.field == field


def test_hostile_payloads_raise_format_error_only() -> None:
    payload = envelope([device("PVL", 1500), device("BATTERY", -200, soc=55)])
    refused, crashed = refusals(FORMATS[0], payload, CTX)
    assert crashed == []
    assert refused > 50  # the variants did reach the parser's checks
