"""SMA WebConnect and ennexOS live values: sign, units, devices combined, missing and
implausible values, the polling envelope, and hostile payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_telemetry_ingest.formats import FormatError, RawContext
from nexwatt_telemetry_ingest.formats.sma import FORMATS, parse_ennexos, parse_webconnect
from tests.unit.telemetry_ingest.hostile import refusals

POLLED_AT = int(datetime(2026, 7, 1, 14, 0, tzinfo=UTC).timestamp())
CTX = RawContext("asset-1", None, datetime(2026, 7, 1, 14, 0, 5, tzinfo=UTC))
PV, AC, CHARGE, DISCHARGE, SOC, METER_OUT, METER_IN = (
    "6100_0046C200", "6100_40263F00", "6100_00496900", "6100_00496A00", "6100_00295A00",
    "6100_40463600", "6100_40463700",
)  # fmt: skip


def envelope(response: Any, interval_s: int = 300) -> dict[str, Any]:
    return {"polled_at": POLLED_AT, "interval_s": interval_s, "response": response}


def values(**keys: float | None) -> dict[str, Any]:
    """A device's getValues entry: key -> {"1": [{"val": value}]} (device class 1)."""
    return {key: {"1": [{"val": value}]} for key, value in keys.items()}


def webconnect(*devices: dict[str, Any]) -> dict[str, Any]:
    return envelope({"result": {f"0198-B32{i}": d for i, d in enumerate(devices)}})


def one(readings: list[TelemetryInterval]) -> TelemetryInterval:
    assert len(readings) == 1
    return readings[0]


# --- WebConnect -----------------------------------------------------------------------------


def test_a_hybrid_inverter_is_read_in_kw_with_our_sign_over_the_polled_interval() -> None:
    r = one(parse_webconnect(webconnect(values(**{
        PV: 4200, AC: 5700, CHARGE: 0, DISCHARGE: 1500, SOC: 55, METER_OUT: 2000, METER_IN: 0,
    })), CTX))  # fmt: skip
    # polled 14:00:00Z every 300 s: the sample stands for 13:55:00Z + 300 s
    assert r.interval_start == datetime(2026, 7, 1, 13, 55, tzinfo=UTC)
    assert r.interval_s == 300
    assert r.pv_kw == pytest.approx(4.2, abs=1e-9)  # 4200 W
    assert r.battery_kw == pytest.approx(1.5, abs=1e-9)  # discharge 1500 - charge 0 W: + out
    assert r.soc_pct == pytest.approx(55.0, abs=1e-9)
    assert r.net_kw == pytest.approx(2.0, abs=1e-9)  # meter feed-in 2000 - draw 0 W: export
    assert r.load_kw is None
    # One sample, not an average: every value estimated.
    assert r.quality == dict.fromkeys(
        (Channel.PV_KW, Channel.BATTERY_KW, Channel.SOC_PCT, Channel.NET_KW), Quality.ESTIMATED
    )
    assert (r.devices_reporting, r.devices_total) == (1, 1)
    assert r.source is not None and r.source.vendor == "sma"


def test_charging_and_importing_are_negative() -> None:
    r = one(parse_webconnect(webconnect(values(**{
        CHARGE: 2300, DISCHARGE: 0, METER_OUT: 0, METER_IN: 3100,
    })), CTX))  # fmt: skip
    assert r.battery_kw == pytest.approx(-2.3, abs=1e-9)  # 0 - 2300 W: charging
    assert r.net_kw == pytest.approx(-3.1, abs=1e-9)  # 0 - 3100 W: import


def test_devices_are_combined_into_one_site() -> None:
    r = one(parse_webconnect(webconnect(
        values(**{AC: 3000, METER_OUT: 1000, METER_IN: 0}),  # Sunny Boy, PV only: AC out = PV
        values(**{PV: 1200, AC: 1150}),  # a Sunny Boy that reports its PV power
        values(**{AC: -500, CHARGE: 500, DISCHARGE: 0, SOC: 40, METER_OUT: 1000, METER_IN: 0}),
        values(**{CHARGE: 0, DISCHARGE: 800, SOC: 60}),  # a second battery inverter
    ), CTX))  # fmt: skip
    assert r.pv_kw == pytest.approx(4.2, abs=1e-9)  # 3000 + 1200 W; the SBS's AC out is no PV
    assert r.battery_kw == pytest.approx(0.3, abs=1e-9)  # (0 - 500) + (800 - 0) W
    assert r.soc_pct == pytest.approx(50.0, abs=1e-9)  # mean of 40 and 60 %
    assert r.net_kw == pytest.approx(1.0, abs=1e-9)  # one site meter seen twice: not 2.0
    assert (r.devices_reporting, r.devices_total) == (4, 4)


def test_null_at_night_is_missing_never_zero() -> None:
    r = one(parse_webconnect(webconnect(
        values(**{PV: None, SOC: 30, CHARGE: 0, DISCHARGE: 0}),
        values(**{PV: 100}),  # one device's value would understate the site: missing
        values(**{PV: None}),
    ), CTX))  # fmt: skip
    assert r.pv_kw is None
    assert r.quality[Channel.PV_KW] is Quality.MISSING
    assert r.battery_kw == pytest.approx(0.0, abs=1e-9)  # a real 0 W stays 0
    assert r.quality[Channel.BATTERY_KW] is Quality.ESTIMATED
    assert (r.devices_reporting, r.devices_total) == (2, 3)


def test_implausible_values_are_flagged_questionable() -> None:
    device = values(**{PV: -50, SOC: 130, METER_IN: -10, METER_OUT: 0})
    r = one(parse_webconnect(webconnect(device), CTX))
    assert (r.pv_kw, r.soc_pct, r.net_kw) == (None, None, None)
    assert r.quality == {  # negative PV, SoC over 100 %, a magnitude sent negative
        Channel.PV_KW: Quality.QUESTIONABLE,
        Channel.SOC_PCT: Quality.QUESTIONABLE,
        Channel.NET_KW: Quality.QUESTIONABLE,
    }


def test_older_firmware_values_and_empty_samples() -> None:
    response = {"result": {"dev": {PV: {"val": 2500}, SOC: {"1": []}}}}
    r = one(parse_webconnect(envelope(response, interval_s=60), CTX))
    assert r.interval_start == datetime(2026, 7, 1, 13, 59, tzinfo=UTC)  # 14:00 - 60 s
    assert r.pv_kw == pytest.approx(2.5, abs=1e-9)  # {"val": 2500} W
    assert r.quality[Channel.SOC_PCT] is Quality.MISSING  # no sample at all


@pytest.mark.parametrize(
    ("response", "field"),
    [
        ({"result": {"dev": {"6400_00260100": {"1": [{"val": 3514000}]}}}}, "response.result"),
        ({"result": {}}, "response.result"),
        ({"result": {"dev": {PV: {"1": [{"val": "4200"}]}}}}, f"response.result.dev.{PV}.1[0].val"),
        ({"result": {"dev": {PV: {"1": [{}]}}}}, f"response.result.dev.{PV}.1[0].val"),
        ({"result": {"dev": {PV: {"1": [], "7": []}}}}, f"response.result.dev.{PV}"),
        ({"result": []}, "response.result"),
        ({"err": 401}, "response.result"),
    ],
)
def test_unreadable_webconnect_bodies_name_the_field(response: Any, field: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_webconnect(envelope(response), CTX)
    assert caught.value.field == field


# --- ennexOS --------------------------------------------------------------------------------


def channel(channel_id: str, value: object, component: str = "Plant:1") -> dict[str, Any]:
    return {
        "channelId": f"Measurement.{channel_id}",
        "componentId": component,
        "values": [{"time": "2026-07-01T13:59:58.000Z", "value": value}],
    }


def test_ennexos_channels_are_read_in_kw_with_our_sign() -> None:
    r = one(parse_ennexos(envelope([
        channel("PvGen.PvW", 6100.0),
        channel("GridMs.TotW", 4900.0),  # the plant's AC output: not PV, not the meter
        channel("BatChrg.CurBatCha", 1200.0),
        channel("BatDsch.CurBatDsch", 0.0),
        channel("Bat.ChaStt", 87.0),
        channel("Metering.GridMs.TotWOut", 0.0),
        channel("Metering.GridMs.TotWIn", 450.0),
        channel("GridMs.Hz", 60.01),  # not mapped
    ]), CTX))  # fmt: skip
    assert r.interval_start == datetime(2026, 7, 1, 13, 55, tzinfo=UTC)  # polled_at, not `time`
    assert r.pv_kw == pytest.approx(6.1, abs=1e-9)  # 6100 W
    assert r.battery_kw == pytest.approx(-1.2, abs=1e-9)  # 0 - 1200 W: charging
    assert r.soc_pct == pytest.approx(87.0, abs=1e-9)
    assert r.net_kw == pytest.approx(-0.45, abs=1e-9)  # 0 - 450 W: import
    assert set(r.quality.values()) == {Quality.ESTIMATED}


def test_ennexos_values_without_a_value_are_missing() -> None:
    r = one(parse_ennexos(envelope([
        channel("PvGen.PvW", None),
        {"channelId": "Measurement.Bat.ChaStt", "componentId": "Plant:1", "values": [{}]},
        {"channelId": "Measurement.BatChrg.CurBatCha", "componentId": "Plant:1", "values": []},
    ]), CTX))  # fmt: skip
    assert (r.pv_kw, r.soc_pct, r.battery_kw) == (None, None, None)
    assert set(r.quality.values()) == {Quality.MISSING}


def test_ennexos_components_are_summed() -> None:
    r = one(parse_ennexos(envelope([
        channel("PvGen.PvW", 2000.0, "1234:5678"),
        channel("PvGen.PvW", 1500.0, "1234:9999"),
    ]), CTX))  # fmt: skip
    assert r.pv_kw == pytest.approx(3.5, abs=1e-9)  # 2000 + 1500 W
    assert (r.devices_reporting, r.devices_total) == (2, 2)


@pytest.mark.parametrize(
    ("response", "field"),
    [
        ([channel("PvGen.PvW", 1.0), channel("PvGen.PvW", 2.0)], "response[1].channelId"),
        ([{"channelId": "Measurement.PvGen.PvW", "values": []}], "response[0].componentId"),
        ([{**channel("PvGen.PvW", 1.0), "componentId": 7}], "response[0].componentId"),
        ([channel("PvGen.PvW", "n/a")], "response[0].values[0].value"),
        ([channel("GridMs.Hz", 60.0)], "response"),
        ({"channelId": "Measurement.PvGen.PvW"}, "response"),
    ],
)
def test_unreadable_ennexos_bodies_name_the_field(response: Any, field: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_ennexos(envelope(response), CTX)
    assert caught.value.field == field


# --- the envelope and hostile input ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"interval_s": 300, "response": {}}, "polled_at"),
        ({"polled_at": "1782914400", "interval_s": 300, "response": {}}, "polled_at"),
        ({"polled_at": POLLED_AT, "interval_s": 0, "response": {}}, "interval_s"),
        ({"polled_at": POLLED_AT, "interval_s": 3601, "response": {}}, "interval_s"),
        ({"polled_at": POLLED_AT, "interval_s": True, "response": {}}, "interval_s"),
        ({"polled_at": POLLED_AT, "interval_s": 300.0, "response": {}}, "interval_s"),
        ({"polled_at": POLLED_AT, "interval_s": 300}, "response"),
        ({"polled_at": 946684800 + 10, "interval_s": 300, "response": {}}, "polled_at"),
        ([POLLED_AT, 300], ""),
    ],
)
def test_a_bad_envelope_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_webconnect(data, CTX)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "payload",
    [
        webconnect(
            values(**{PV: 4200, AC: 5700, CHARGE: 0, DISCHARGE: 1500, SOC: 55}),
            {METER_OUT: {"val": 10}, METER_IN: {"1": [{"val": 0}]}},
        ),
        envelope([channel("PvGen.PvW", 6100.0), channel("Bat.ChaStt", 87.0)]),
    ],
    ids=["webconnect", "ennexos"],
)
def test_hostile_payloads_raise_format_error_only(payload: dict[str, Any]) -> None:
    fmt = FORMATS[0] if "result" in payload["response"] else FORMATS[1]
    refused, crashed = refusals(fmt, payload, CTX)
    assert crashed == []
    assert refused > 50  # the variants did reach the parser's checks
