"""SunSpec Modbus models: scale factors, "not implemented" sentinels, sign, which model gives
the SoC, implausible values, and hostile payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from nexwatt_shared.contracts import Channel, Quality, TelemetryInterval
from nexwatt_telemetry_ingest.formats import FormatError, RawContext
from nexwatt_telemetry_ingest.formats.sunspec import FORMATS, decoded, parse_models
from tests.unit.telemetry_ingest.hostile import refusals

POLLED_AT = int(datetime(2026, 7, 1, 14, 0, tzinfo=UTC).timestamp())
CTX = RawContext("asset-1", None, datetime(2026, 7, 1, 14, 0, 5, tzinfo=UTC))
COMMON = {"Mn": "SMA", "Md": "SBS3.7-10", "SN": "3012345678"}


def envelope(models: dict[str, Any], interval_s: int = 60) -> dict[str, Any]:
    return {"polled_at": POLLED_AT, "interval_s": interval_s, "response": {"models": models}}


def one(readings: list[TelemetryInterval]) -> TelemetryInterval:
    assert len(readings) == 1
    return readings[0]


def test_an_inverter_and_its_battery_scaled_to_kw_and_percent() -> None:
    r = one(parse_models(envelope({
        "1": COMMON,
        "103": {"W": 4200, "W_SF": 0},
        "802": {"SoC": 5520, "SoC_SF": -2, "W": 15, "W_SF": 2},
    }), CTX))  # fmt: skip
    assert r.interval_start == datetime(2026, 7, 1, 13, 59, tzinfo=UTC)  # 14:00 - 60 s
    assert r.interval_s == 60
    assert r.battery_kw == pytest.approx(1.5, abs=1e-9)  # 15 x 10^2 W = 1500 W, discharging
    # A hybrid: its AC output 4200 x 10^0 W = 4.2 kW is PV plus the discharge: PV 2.7 kW.
    assert r.pv_kw == pytest.approx(2.7, abs=1e-9)
    assert r.soc_pct == pytest.approx(55.2, abs=1e-9)  # 5520 x 10^-2 %
    assert r.quality == dict.fromkeys(
        (Channel.PV_KW, Channel.BATTERY_KW, Channel.SOC_PCT), Quality.ESTIMATED
    )
    assert r.source is not None and r.source.vendor == "sunspec"


def test_a_hybrid_charging_from_pv_shows_pv_above_its_ac_output() -> None:
    # AC 1000 W out while the battery charges at 2 kW (802 W = -2000): PV = 1.0 - (-2.0) = 3 kW.
    r = one(parse_models(envelope({
        "103": {"W": 1000, "W_SF": 0}, "802": {"SoC": 50, "SoC_SF": 0, "W": -2000, "W_SF": 0},
    }), CTX))  # fmt: skip
    assert (r.pv_kw, r.battery_kw) == (pytest.approx(3.0, abs=1e-9), pytest.approx(-2.0))
    # The battery's power unknown (NaN sentinel): the PV share of the AC output is unknown too.
    r = one(parse_models(envelope({
        "103": {"W": 1000, "W_SF": 0}, "802": {"SoC": 50, "SoC_SF": 0, "W": -32768, "W_SF": 0},
    }), CTX))  # fmt: skip
    assert (r.pv_kw, r.battery_kw) == (None, None)
    assert r.quality[Channel.PV_KW] == Quality.MISSING


def test_a_milli_scale_factor_and_a_single_phase_inverter() -> None:
    r = one(parse_models(envelope({"101": {"W": 12345, "W_SF": -3}}), CTX))
    assert r.pv_kw == pytest.approx(0.012345, abs=1e-9)  # 12345 x 10^-3 W = 12.345 W
    assert list(r.quality) == [Channel.PV_KW]


def test_a_charging_battery_keeps_its_sign() -> None:
    # 802 W is + when discharging, like ours: charging stays negative, nothing is flipped.
    r = one(parse_models(envelope({"802": {"SoC": 40, "SoC_SF": 0, "W": -2500, "W_SF": 0}}), CTX))
    assert r.battery_kw == pytest.approx(-2.5, abs=1e-9)  # -2500 W


@pytest.mark.parametrize(
    ("models", "channel"),
    [
        ({"103": {"W": -0x8000, "W_SF": 0}}, Channel.PV_KW),  # int16 not implemented
        ({"103": {"W": 4200, "W_SF": -0x8000}}, Channel.PV_KW),  # scale factor not implemented
        ({"802": {"SoC": 0xFFFF, "SoC_SF": 0}}, Channel.SOC_PCT),  # uint16 not implemented
        ({"713": {"SoC": 0xFFFF, "Pct_SF": 0}}, Channel.SOC_PCT),
        ({"124": {"ChaState": 50, "ChaState_SF": -0x8000}}, Channel.SOC_PCT),
        ({"103": {"W": None, "W_SF": 0}}, Channel.PV_KW),  # sent null
        ({"103": {"W_SF": 0}}, Channel.PV_KW),  # beyond a short model: left out
    ],
)
def test_not_implemented_is_missing_never_zero(models: dict[str, Any], channel: Channel) -> None:
    r = one(parse_models(envelope(models), CTX))
    assert r.value(channel) is None
    assert r.quality[channel] is Quality.MISSING


@pytest.mark.parametrize(
    ("raw", "sunspec_type", "expected"),
    [
        (-0x8000, "int16", None),
        (-0x7FFF, "int16", -0x7FFF),
        (0xFFFF, "uint16", None),
        (0xFFFE, "uint16", 0xFFFE),
        (0, "uint16", 0),  # 0 is a value, not a sentinel
        (-0x8000, "sunssf", None),
        (-2, "sunssf", -2),
    ],
)
def test_each_sentinel_and_its_neighbour(raw: int, sunspec_type: str, expected: int | None) -> None:
    assert decoded(raw, sunspec_type, "x") == expected


@pytest.mark.parametrize(
    ("models", "soc"),
    [
        # 802 first, even beside 713 and 124
        ({"802": {"SoC": 612, "SoC_SF": -1}, "713": {"SoC": 9, "Pct_SF": 0}}, 61.2),
        ({"713": {"SoC": 873, "Pct_SF": -1}, "124": {"ChaState": 5, "ChaState_SF": 0}}, 87.3),
        ({"124": {"ChaState": 4200, "ChaState_SF": -2}}, 42.0),  # 4200 x 10^-2 % of AhrRtg
    ],
)
def test_the_soc_comes_from_802_then_713_then_124(models: dict[str, Any], soc: float) -> None:
    r = one(parse_models(envelope(models), CTX))
    assert r.soc_pct == pytest.approx(soc, abs=1e-9)


def test_implausible_values_are_flagged_questionable() -> None:
    r = one(parse_models(envelope({
        "103": {"W": -20, "W_SF": 0},  # an inverter drawing standby power at night
        "802": {"SoC": 13000, "SoC_SF": -2, "W": 0, "W_SF": 0},  # 130.00 %
    }), CTX))  # fmt: skip
    assert (r.pv_kw, r.soc_pct) == (None, None)
    assert r.quality[Channel.PV_KW] is Quality.QUESTIONABLE
    assert r.quality[Channel.SOC_PCT] is Quality.QUESTIONABLE
    assert r.battery_kw == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("models", "field"),
    [
        ({"1": COMMON}, "response.models"),
        ({"103": {"W": 40000, "W_SF": 0}}, "response.models.103.W"),  # beyond int16
        ({"103": {"W": 4200, "W_SF": 11}}, "response.models.103.W_SF"),  # SF outside -10..10
        ({"103": {"W": 4200, "W_SF": -11}}, "response.models.103.W_SF"),
        ({"103": {"W": 4200.0, "W_SF": 0}}, "response.models.103.W"),
        ({"103": {"W": True, "W_SF": 0}}, "response.models.103.W"),
        ({"802": {"SoC": -1, "SoC_SF": 0}}, "response.models.802.SoC"),  # below uint16
        ({"103": [4200, 0]}, "response.models.103"),
    ],
)
def test_unreadable_models_name_the_field(models: dict[str, Any], field: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse_models(envelope(models), CTX)
    assert caught.value.field == field


def test_a_body_without_models_is_refused() -> None:
    with pytest.raises(FormatError) as caught:
        parse_models({"polled_at": POLLED_AT, "interval_s": 60, "response": {"W": 1}}, CTX)
    assert caught.value.field == "response.models"


def test_hostile_payloads_raise_format_error_only() -> None:
    payload = envelope({
        "1": COMMON,
        "103": {"W": 4200, "W_SF": 0},
        "124": {"ChaState": 50, "ChaState_SF": 0},
        "713": {"SoC": 50, "Pct_SF": 0},
        "802": {"SoC": 5520, "SoC_SF": -2, "W": 15, "W_SF": 2},
    })  # fmt: skip
    refused, crashed = refusals(FORMATS[0], payload, CTX)
    assert crashed == []
    assert refused > 50  # the variants did reach the parser's checks
