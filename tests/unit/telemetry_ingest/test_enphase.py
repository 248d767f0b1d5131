"""Enphase Monitoring API v4 formats: production_micro, battery, consumption_meter.

Every payload is written here in the vendor's documented shape. Epoch seconds used:
1782914400 = 2026-07-01 14:00:00Z, 1782914700 = 14:05Z, 1782915000 = 14:10Z,
1782915300 = 14:15Z.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nexwatt_shared.contracts import Channel, Quality, ReadingSource
from nexwatt_telemetry_ingest.formats import FormatError, RawContext
from nexwatt_telemetry_ingest.formats.enphase import (
    FORMATS,
    parse_battery,
    parse_consumption_meter,
    parse_production_micro,
)
from tests.unit.telemetry_ingest.hostile import refusals

# Enphase times are UTC epochs: the site's zone must not matter.
CTX = RawContext("EN-1", ZoneInfo("Pacific/Auckland"), datetime(2026, 7, 2, tzinfo=UTC))
T1400, T1405, T1410, T1415 = 1782914400, 1782914700, 1782915000, 1782915300
ACTUAL, QUESTIONABLE, MISSING = Quality.ACTUAL, Quality.QUESTIONABLE, Quality.MISSING


def utc(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 7, 1, hour, minute, second, tzinfo=UTC)


def micro(*intervals: dict[str, Any], total: int | None = 24) -> dict[str, Any]:
    body = {"system_id": 1, "granularity": "day", "start_at": T1400, "end_at": T1410}
    body |= {"items": "intervals", "intervals": list(intervals)}
    return body if total is None else body | {"total_devices": total}


def battery(*intervals: dict[str, Any]) -> dict[str, Any]:
    return {
        "system_id": 1,
        "granularity": "day",
        "total_devices": 2,
        "last_reported_aggregate_soc": "97%",
        "intervals": list(intervals),
    }


def battery_interval(
    end_at: int, charge: Any = 0, discharge: Any = 0, soc: Any = 80, reporting: int = 2
) -> dict[str, Any]:
    return {
        "end_at": end_at,
        "charge": {"enwh": charge, "devices_reporting": reporting},
        "discharge": {"enwh": discharge, "devices_reporting": reporting},
        "soc": {"percent": soc, "devices_reporting": reporting},
    }


# --- telemetry/production_micro -------------------------------------------------------------


def test_production_is_relabelled_by_start_with_partial_devices() -> None:
    payload = micro(
        {"end_at": T1405, "devices_reporting": 23, "powr": 2900, "enwh": 250},
        {"end_at": T1410, "devices_reporting": 24, "powr": 2900, "enwh": 240},
    )
    first, second = parse_production_micro(payload, CTX)
    # end_at 14:05Z labels [14:00Z, 14:05Z); 250 Wh over 5 min = 3.0 kW (not powr's 2.9 kW)
    assert (first.interval_start, first.interval_s) == (utc(14, 0), 300)
    assert first.interval_start.tzinfo is UTC
    assert first.pv_kw == pytest.approx(3.0, abs=1e-9)
    assert first.quality == {Channel.PV_KW: ACTUAL}
    assert (first.devices_reporting, first.devices_total) == (23, 24)  # one micro silent
    # end_at 14:10Z -> 14:05Z; 240 Wh over 5 min = 2.88 kW
    assert (second.interval_start, second.pv_kw) == (utc(14, 5), pytest.approx(2.88, abs=1e-9))
    assert (second.devices_reporting, second.devices_total) == (24, 24)
    assert first.source == ReadingSource(vendor="enphase", endpoint="telemetry/production_micro")


def test_missing_production_is_null_and_missing_never_zero() -> None:
    payload = micro(
        {"end_at": T1405, "devices_reporting": 0},  # no enwh at all
        {"end_at": T1410, "devices_reporting": 0, "enwh": None},
        total=None,
    )
    readings = parse_production_micro(payload, CTX)
    assert [(r.pv_kw, r.quality) for r in readings] == [(None, {Channel.PV_KW: MISSING})] * 2
    assert {(r.devices_reporting, r.devices_total) for r in readings} == {(0, None)}


def test_an_end_off_the_grid_is_still_relabelled_by_its_length() -> None:
    # 1782914850 = 14:07:30Z, not a multiple of 5 min: start = 14:07:30 - 5 min = 14:02:30Z
    (r,) = parse_production_micro(micro({"end_at": 1782914850, "enwh": 100}), CTX)
    assert r.interval_start == utc(14, 2, 30)
    assert r.pv_kw == pytest.approx(1.2, abs=1e-9)  # 100 Wh over 5 min = 1.2 kW


# --- telemetry/battery ----------------------------------------------------------------------


def test_battery_discharge_is_positive_and_charge_negative() -> None:
    payload = battery(
        battery_interval(T1415, charge=0, discharge=500, soc=80),
        battery_interval(T1415 + 900, charge=300, discharge=0, soc=85),
    )
    discharging, charging = parse_battery(payload, CTX)
    # end_at 14:15Z labels [14:00Z, 14:15Z); (500 - 0) Wh over 15 min = +2.0 kW
    assert (discharging.interval_start, discharging.interval_s) == (utc(14, 0), 900)
    assert discharging.battery_kw == pytest.approx(2.0, abs=1e-9)
    assert discharging.soc_pct == pytest.approx(80.0, abs=1e-9)
    assert discharging.quality == {Channel.BATTERY_KW: ACTUAL, Channel.SOC_PCT: ACTUAL}
    assert (discharging.devices_reporting, discharging.devices_total) == (2, 2)
    # (0 - 300) Wh over 15 min = -1.2 kW (charging)
    assert charging.interval_start == utc(14, 15)
    assert charging.battery_kw == pytest.approx(-1.2, abs=1e-9)


def test_battery_devices_reporting_is_the_fewest_among_its_parts() -> None:
    interval = battery_interval(T1415, discharge=500)
    interval["discharge"]["devices_reporting"] = 1
    (r,) = parse_battery(battery(interval), CTX)
    assert (r.devices_reporting, r.devices_total) == (1, 2)


def test_a_missing_battery_part_leaves_its_channel_missing() -> None:
    no_soc = battery_interval(T1415, discharge=500)
    del no_soc["soc"]
    no_discharge = battery_interval(T1415 + 900, charge=300)
    no_discharge["discharge"] = None
    first, second = parse_battery(battery(no_soc, no_discharge), CTX)
    assert first.soc_pct is None and first.quality[Channel.SOC_PCT] is MISSING
    assert first.battery_kw == pytest.approx(2.0, abs=1e-9)  # 500 Wh over 15 min
    # charge without discharge cannot give the net flow: missing, not -1.2 kW
    assert second.battery_kw is None and second.quality[Channel.BATTERY_KW] is MISSING
    assert second.soc_pct == pytest.approx(80.0, abs=1e-9)


# --- telemetry/consumption_meter ------------------------------------------------------------


def test_consumption_meter_gives_load() -> None:
    payload = {
        "system_id": 1,
        "intervals": [{"end_at": T1415, "devices_reporting": 1, "enwh": 300}],
    }
    (r,) = parse_consumption_meter(payload, CTX)
    # end_at 14:15Z -> [14:00Z, 14:15Z); 300 Wh over 15 min = 1.2 kW
    assert (r.interval_start, r.interval_s) == (utc(14, 0), 900)
    assert r.load_kw == pytest.approx(1.2, abs=1e-9)
    assert (r.quality, r.devices_reporting, r.devices_total) == ({Channel.LOAD_KW: ACTUAL}, 1, None)


# --- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize("enwh", [-250, math.nan, math.inf, 1e308, 10**400])
def test_implausible_production_is_flagged_not_stored(enwh: Any) -> None:
    (r,) = parse_production_micro(micro({"end_at": T1405, "enwh": enwh}), CTX)
    assert r.pv_kw is None and r.quality == {Channel.PV_KW: QUESTIONABLE}


def test_implausible_battery_values_are_flagged_not_stored() -> None:
    soc_130 = battery_interval(T1415, discharge=500, soc=130)
    negative_charge = battery_interval(T1415 + 900, charge=-300, discharge=0)  # a magnitude < 0
    first, second = parse_battery(battery(soc_130, negative_charge), CTX)
    assert first.quality == {Channel.BATTERY_KW: ACTUAL, Channel.SOC_PCT: QUESTIONABLE}
    assert first.soc_pct is None
    assert second.quality == {Channel.BATTERY_KW: QUESTIONABLE, Channel.SOC_PCT: ACTUAL}
    assert second.battery_kw is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], ""),
        ({"system_id": 1}, "intervals"),
        ({"intervals": {"end_at": T1405}}, "intervals"),
        (micro("interval"), "intervals[0]"),
        (micro({"enwh": 250}), "intervals[0].end_at"),
        (micro({"end_at": str(T1405), "enwh": 250}), "intervals[0].end_at"),
        (micro({"end_at": T1405 * 1000, "enwh": 250}), "intervals[0].end_at"),  # ms, not s
        (micro({"end_at": T1405, "enwh": "250"}), "intervals[0].enwh"),
        (
            micro({"end_at": T1405, "enwh": 250, "devices_reporting": 25}),
            "intervals[0].devices_reporting",
        ),
        (
            micro({"end_at": T1405, "enwh": 250, "devices_reporting": -1}),
            "intervals[0].devices_reporting",
        ),
        (micro({"end_at": T1405, "enwh": 250}, total="24"), "total_devices"),
    ],
)
def test_unreadable_production_names_the_field(payload: Any, field: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_production_micro(payload, CTX)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("interval", "field"),
    [
        (battery_interval(T1415, charge="0"), "intervals[0].charge.enwh"),
        (battery_interval(T1415) | {"discharge": 500}, "intervals[0].discharge"),
        (battery_interval(T1415) | {"soc": {"percent": "80%"}}, "intervals[0].soc.percent"),
    ],
)
def test_unreadable_battery_names_the_field(interval: dict[str, Any], field: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_battery(battery(interval), CTX)
    assert err.value.field == field


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_no_hostile_variant_raises_anything_but_format_error(fmt: Any) -> None:
    valid = {
        "enphase.production-micro.v1": micro(
            {"end_at": T1405, "devices_reporting": 23, "powr": 3000, "enwh": 250}
        ),
        "enphase.battery.v1": battery(battery_interval(T1415, discharge=500)),
        "enphase.consumption-meter.v1": {
            "intervals": [{"end_at": T1415, "devices_reporting": 1, "enwh": 300}]
        },
    }[fmt.name]
    assert fmt.parse(valid, CTX)  # the unchanged payload reads
    refused, crashed = refusals(fmt, valid, CTX)
    assert crashed == []
    assert refused > 0
