"""SolarEdge Monitoring API formats: powerDetails, energyDetails, storageData.

Every payload is written here in the vendor's documented shape. The site is in New York:
EDT (UTC-4) in July, so local 14:15 is 18:15Z.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nexwatt_shared.contracts import Channel, Quality, ReadingSource, TelemetryInterval
from nexwatt_telemetry_ingest.formats import FormatError, RawContext
from nexwatt_telemetry_ingest.formats.solaredge import (
    FORMATS,
    parse_energy_details,
    parse_power_details,
    parse_storage_data,
)
from tests.unit.telemetry_ingest.hostile import refusals

NY = ZoneInfo("America/New_York")
CTX = RawContext("SE-1", NY, datetime(2026, 7, 2, tzinfo=UTC))
ACTUAL, ESTIMATED = Quality.ACTUAL, Quality.ESTIMATED
QUESTIONABLE, MISSING = Quality.QUESTIONABLE, Quality.MISSING


def utc(month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def meter(kind: str, values: dict[str, Any], day: str = "2026-07-01") -> dict[str, Any]:
    """A meter's series; a None value is an entry without `value` (no data)."""
    entries = [
        {"date": f"{day} {at}"} if v is None else {"date": f"{day} {at}", "value": v}
        for at, v in values.items()
    ]
    return {"type": kind, "values": entries}


def details(
    *meters: dict[str, Any],
    root: str = "powerDetails",
    unit: str = "W",
    time_unit: str = "QUARTER_OF_AN_HOUR",
) -> dict[str, Any]:
    return {root: {"timeUnit": time_unit, "unit": unit, "meters": list(meters)}}


def power_day() -> dict[str, Any]:
    return details(
        meter("Production", {"14:15:00": 3210.5, "14:30:00": 2800.0}),
        meter("Consumption", {"14:15:00": 1200.0, "14:30:00": 1500.0}),
        meter("SelfConsumption", {"14:15:00": 1200.0, "14:30:00": 1500.0}),
        meter("FeedIn", {"14:15:00": 2010.5, "14:30:00": 1300.0}),
        meter("Purchased", {"14:15:00": 0.0, "14:30:00": 0.0}),
    )


def values(r: TelemetryInterval) -> dict[Channel, float | None]:
    return {c: r.value(c) for c in r.channels}


# --- powerDetails ---------------------------------------------------------------------------


def test_power_details_on_a_normal_day() -> None:
    first, second = parse_power_details(power_day(), CTX)
    # 14:15 EDT = 18:15Z labels the quarter's start; W -> kW; net = FeedIn - Purchased.
    assert first.interval_start == utc(7, 1, 18, 15)
    assert second.interval_start == utc(7, 1, 18, 30)
    assert first.interval_s == second.interval_s == 900
    assert first.asset_id == "SE-1"
    assert first.source == ReadingSource(vendor="solaredge", endpoint="powerDetails")
    # 3210.5 W = 3.2105 kW; 1200 W = 1.2 kW; 2010.5 W - 0 W = +2.0105 kW exported
    assert values(first) == {
        Channel.PV_KW: pytest.approx(3.2105, abs=1e-9),
        Channel.LOAD_KW: pytest.approx(1.2, abs=1e-9),
        Channel.NET_KW: pytest.approx(2.0105, abs=1e-9),
    }
    # 2800 W = 2.8 kW; 1500 W = 1.5 kW; 1300 W - 0 W = +1.3 kW
    assert values(second) == {
        Channel.PV_KW: pytest.approx(2.8, abs=1e-9),
        Channel.LOAD_KW: pytest.approx(1.5, abs=1e-9),
        Channel.NET_KW: pytest.approx(1.3, abs=1e-9),
    }
    assert first.quality == {Channel.PV_KW: ACTUAL, Channel.LOAD_KW: ACTUAL, Channel.NET_KW: ACTUAL}


def test_net_is_feed_in_minus_purchased_so_an_import_is_negative() -> None:
    (r,) = parse_power_details(
        details(meter("FeedIn", {"19:00:00": 0.0}), meter("Purchased", {"19:00:00": 2300.0})), CTX
    )
    # 0 W fed in - 2300 W purchased = -2.3 kW (import); only the net channel is carried
    assert values(r) == {Channel.NET_KW: pytest.approx(-2.3, abs=1e-9)}


def test_a_missing_value_is_null_and_missing_never_zero() -> None:
    payload = details(
        meter("Production", {"14:15:00": None, "14:30:00": 2800.0}),
        meter("Consumption", {"14:15:00": 1200.0}),  # no entry at all for 14:30
        meter("FeedIn", {"14:15:00": 500.0, "14:30:00": 900.0}),
        meter("Purchased", {"14:15:00": None, "14:30:00": 0.0}),
    )
    payload["powerDetails"]["meters"][1]["values"][0]["value"] = None  # an explicit null too
    first, second = parse_power_details(payload, CTX)
    assert values(first) == {Channel.PV_KW: None, Channel.LOAD_KW: None, Channel.NET_KW: None}
    assert set(first.quality.values()) == {MISSING}
    # 14:30: no Consumption entry -> missing; 900 W - 0 W = 0.9 kW
    assert values(second) == {
        Channel.PV_KW: pytest.approx(2.8, abs=1e-9),
        Channel.LOAD_KW: None,
        Channel.NET_KW: pytest.approx(0.9, abs=1e-9),
    }
    assert second.quality[Channel.LOAD_KW] is MISSING


@pytest.mark.parametrize(("unit", "value"), [("W", 3210.5), ("kW", 3.2105), ("MW", 0.0032105)])
def test_the_unit_is_read_from_the_response(unit: str, value: float) -> None:
    (r,) = parse_power_details(details(meter("Production", {"14:15:00": value}), unit=unit), CTX)
    # 3210.5 W = 3.2105 kW = 0.0032105 MW
    assert r.pv_kw == pytest.approx(3.2105, abs=1e-9)


def test_an_unknown_unit_or_a_time_unit_over_an_hour_is_refused() -> None:
    production = meter("Production", {"14:00:00": 1000.0})
    with pytest.raises(FormatError) as err:
        parse_power_details(details(production, unit="kWh"), CTX)
    assert err.value.field == "powerDetails.unit"
    with pytest.raises(FormatError) as err:
        parse_power_details(details(production, time_unit="DAY"), CTX)
    assert err.value.field == "powerDetails.timeUnit"
    (hourly,) = parse_power_details(details(production, time_unit="HOUR"), CTX)
    assert hourly.interval_s == 3600


def test_the_autumn_repeated_hour_gives_distinct_utc_quarters() -> None:
    # 2026-11-01 New York: 02:00 EDT becomes 01:00 EST, so 01:00-01:45 appears twice.
    # 00:45 EDT = 04:45Z; first 01:00-01:45 EDT = 05:00-05:45Z; second 01:00-01:45 EST =
    # 06:00-06:45Z; 02:00 EST = 07:00Z: ten contiguous quarters.
    times = ["00:45", "01:00", "01:15", "01:30", "01:45", "01:00", "01:15", "01:30", "01:45"]
    times.append("02:00")
    entries = [
        {"date": f"2026-11-01 {t}:00", "value": 100.0 * (i + 1)} for i, t in enumerate(times)
    ]
    payload = details({"type": "Production", "values": entries})
    readings = parse_power_details(payload, CTX)
    starts = [r.interval_start for r in readings]
    quarters = (0, 15, 30, 45)
    assert starts == [
        utc(11, 1, 4, 45),
        *(utc(11, 1, 5, m) for m in quarters),
        *(utc(11, 1, 6, m) for m in quarters),
        utc(11, 1, 7, 0),
    ]
    # the repeated hour's 8 quarters are distinct, and each keeps its own value:
    # the second 01:00 (the 6th entry, 600 W = 0.6 kW) is 06:00Z
    assert len({s for s in starts if utc(11, 1, 5, 0) <= s < utc(11, 1, 7, 0)}) == 8
    assert readings[5].pv_kw == pytest.approx(0.6, abs=1e-9)


def test_the_spring_gap_is_refused_naming_the_field() -> None:
    # 2026-03-08 New York: 02:00 EST jumps to 03:00 EDT; 01:45 EST = 06:45Z, 03:00 EDT = 07:00Z
    ok = details(meter("Production", {"01:45:00": 0.0, "03:00:00": 0.0}, day="2026-03-08"))
    assert [r.interval_start for r in parse_power_details(ok, CTX)] == [
        utc(3, 8, 6, 45),
        utc(3, 8, 7, 0),
    ]
    gap = details(meter("Production", {"01:45:00": 0.0, "02:15:00": 0.0}, day="2026-03-08"))
    with pytest.raises(FormatError) as err:
        parse_power_details(gap, CTX)
    assert err.value.field == "powerDetails.meters[0].values[1].date"
    assert "2026-03-08 02:15:00" in err.value.reason and "DST gap" in err.value.reason


def test_energy_details_become_average_power() -> None:
    quarter = details(
        meter("Production", {"14:15:00": 250.0}),
        meter("FeedIn", {"14:15:00": 125.0}),
        meter("Purchased", {"14:15:00": 25.0}),
        root="energyDetails",
        unit="Wh",
    )
    (r,) = parse_energy_details(quarter, CTX)
    # 250 Wh over 15 min = 1.0 kW; (125 - 25) Wh over 15 min = +0.4 kW
    assert values(r) == {
        Channel.PV_KW: pytest.approx(1.0, abs=1e-9),
        Channel.NET_KW: pytest.approx(0.4, abs=1e-9),
    }
    assert r.source == ReadingSource(vendor="solaredge", endpoint="energyDetails")
    hour = details(
        meter("Consumption", {"14:00:00": 0.75}), root="energyDetails", unit="kWh", time_unit="HOUR"
    )
    (r,) = parse_energy_details(hour, CTX)
    # 0.75 kWh over 1 h = 0.75 kW
    assert (r.interval_s, r.load_kw) == (3600, pytest.approx(0.75, abs=1e-9))
    with pytest.raises(FormatError) as err:  # a power unit in an energy response
        parse_energy_details(details(meter("Production", {}), root="energyDetails"), CTX)
    assert err.value.field == "energyDetails.unit"


def test_meters_we_do_not_need_make_no_readings() -> None:
    assert parse_power_details(details(meter("SelfConsumption", {"14:15:00": 800.0})), CTX) == []


# --- storageData ----------------------------------------------------------------------------


def telemetry(at: str, **fields: float | None) -> dict[str, Any]:
    """A battery telemetry at local `at` (2026-07-01); fields named by their meaning."""
    names = {
        "charged": "lifeTimeEnergyCharged",
        "discharged": "lifeTimeEnergyDischarged",
        "power": "power",
        "soc": "batteryPercentageState",
    }
    sample = {"timeStamp": f"2026-07-01 {at}", "batteryState": 3, "internalTemp": 31.0}
    sample |= {"fullPackEnergyAvailable": 9600.0, "ACGridCharging": 0.0}
    return sample | {names[k]: v for k, v in fields.items()}


def battery(*telemetries: dict[str, Any], nameplate: Any = 9800) -> dict[str, Any]:
    return {
        "nameplate": nameplate,
        "serialNumber": "7F123456-01",
        "modelNumber": "BAT-10K1P",
        "telemetryCount": len(telemetries),
        "telemetries": list(telemetries),
    }


def storage(*batteries: dict[str, Any], count: int | None = None) -> dict[str, Any]:
    total = len(batteries) if count is None else count
    return {"storageData": {"batteryCount": total, "batteries": list(batteries)}}


def test_battery_power_comes_from_the_lifetime_counters() -> None:
    payload = storage(
        battery(
            telemetry(
                "14:00:00", charged=1_234_567.0, discharged=1_200_000.0, power=-2000.0, soc=57.0
            ),
            telemetry(
                "14:05:00", charged=1_234_567.0, discharged=1_200_250.0, power=-2000.0, soc=56.0
            ),
        )
    )
    (r,) = parse_storage_data(payload, CTX)
    # [14:00, 14:05) EDT = [18:00Z, 18:05Z); discharged 250 Wh over 5 min = +3.0 kW (the
    # counters win over the -2000 W point samples, which would say +2.0 kW)
    assert (r.interval_start, r.interval_s) == (utc(7, 1, 18, 0), 300)
    assert r.battery_kw == pytest.approx(3.0, abs=1e-9)
    assert r.soc_pct == pytest.approx(56.0, abs=1e-9)  # SoC at the interval's end
    assert r.quality == {Channel.BATTERY_KW: ACTUAL, Channel.SOC_PCT: ACTUAL}
    assert (r.devices_reporting, r.devices_total) == (1, 1)
    assert r.source == ReadingSource(vendor="solaredge", endpoint="storageData")


def test_without_counters_the_power_samples_are_averaged_and_flipped() -> None:
    payload = storage(
        battery(
            telemetry("14:00:00", power=1000.0, soc=55.0),
            telemetry("14:05:00", power=2000.0, soc=56.0),
            # a counter in only one of the two samples: the samples are used
            telemetry("14:10:00", charged=10.0, discharged=20.0, power=1500.0, soc=57.0),
        )
    )
    first, second = parse_storage_data(payload, CTX)
    # SolarEdge + = charging: mean(1000, 2000) W = 1500 W charging -> -1.5 kW, an estimate
    assert first.battery_kw == pytest.approx(-1.5, abs=1e-9)
    # mean(2000, 1500) W = 1750 W charging -> -1.75 kW
    assert second.battery_kw == pytest.approx(-1.75, abs=1e-9)
    assert first.quality == {Channel.BATTERY_KW: ESTIMATED, Channel.SOC_PCT: ACTUAL}


def test_a_battery_without_power_data_is_missing() -> None:
    payload = storage(battery(telemetry("14:00:00", soc=55.0), telemetry("14:05:00", soc=56.0)))
    (r,) = parse_storage_data(payload, CTX)
    assert r.battery_kw is None and r.quality[Channel.BATTERY_KW] is MISSING
    assert r.soc_pct == pytest.approx(56.0, abs=1e-9)


def test_a_counter_going_backwards_is_questionable() -> None:
    payload = storage(
        battery(
            telemetry("14:00:00", charged=5000.0, discharged=1_200_000.0, soc=57.0),
            telemetry("14:05:00", charged=5000.0, discharged=500.0, soc=56.0),  # replaced
        )
    )
    (r,) = parse_storage_data(payload, CTX)
    assert r.battery_kw is None
    assert r.quality == {Channel.BATTERY_KW: QUESTIONABLE, Channel.SOC_PCT: ACTUAL}


def test_two_batteries_sum_their_power_and_weigh_soc_by_nameplate() -> None:
    big = battery(
        telemetry("14:00:00", charged=1000.0, discharged=2000.0, soc=61.0),
        telemetry("14:05:00", charged=1000.0, discharged=2250.0, soc=60.0),
        nameplate=9800,
    )
    small = battery(
        telemetry("14:00:00", charged=500.0, discharged=700.0, soc=31.0),
        telemetry("14:05:00", charged=600.0, discharged=700.0, soc=30.0),
        nameplate=4900,
    )
    (r,) = parse_storage_data(storage(big, small), CTX)
    # big: 250 Wh discharged over 5 min = +3.0 kW; small: 100 Wh charged = -1.2 kW; sum +1.8
    assert r.battery_kw == pytest.approx(1.8, abs=1e-9)
    # (9800 Wh x 60 % + 4900 Wh x 30 %) / 14700 Wh = 735000 / 14700 = 50 %
    assert r.soc_pct == pytest.approx(50.0, abs=1e-9)
    assert (r.devices_reporting, r.devices_total) == (2, 2)


def test_a_battery_counts_only_where_it_has_samples_at_both_ends() -> None:
    a = battery(
        telemetry("14:00:00", charged=0.0, discharged=0.0, soc=61.0),
        telemetry("14:05:00", charged=0.0, discharged=250.0, soc=60.0),
        telemetry("14:10:00", charged=0.0, discharged=500.0, soc=59.0),
    )
    b = battery(  # no sample at 14:05: its 10 minutes are not spread over the two intervals
        telemetry("14:00:00", charged=0.0, discharged=0.0, soc=31.0),
        telemetry("14:10:00", charged=0.0, discharged=900.0, soc=30.0),
        nameplate=4900,
    )
    readings = parse_storage_data(storage(a, b, count=3), CTX)
    # Each interval: battery a alone (1 of 3). Its 250 Wh over 5 min = +3.0 kW is not the
    # site's power (the others' is unknown): missing, never a partial sum; its SoC stands as an
    # estimate of the site's.
    assert [(r.interval_start, r.battery_kw, r.soc_pct) for r in readings] == [
        (utc(7, 1, 18, 0), None, pytest.approx(60.0, abs=1e-9)),
        (utc(7, 1, 18, 5), None, pytest.approx(59.0, abs=1e-9)),
    ]
    assert {(r.devices_reporting, r.devices_total) for r in readings} == {(1, 3)}
    assert {(r.quality[Channel.BATTERY_KW], r.quality[Channel.SOC_PCT]) for r in readings} == {
        (Quality.MISSING, Quality.ESTIMATED)
    }


def test_gaps_over_an_hour_and_repeated_samples_make_no_reading() -> None:
    payload = storage(
        battery(
            telemetry("14:00:00", charged=0.0, discharged=0.0),
            telemetry("14:05:00", charged=0.0, discharged=100.0),
            telemetry("14:05:00", charged=0.0, discharged=999.0),  # 0 s after: ignored
            telemetry("15:05:00", charged=0.0, discharged=1300.0),  # 1 h later: accepted
            telemetry("16:06:00", charged=0.0, discharged=1400.0),  # 61 min later: skipped
        )
    )
    readings = parse_storage_data(payload, CTX)
    # 100 Wh over 5 min = 1.2 kW; (1300 - 100) Wh over 1 h = 1.2 kW
    assert [(r.interval_s, r.battery_kw) for r in readings] == [
        (300, pytest.approx(1.2, abs=1e-9)),
        (3600, pytest.approx(1.2, abs=1e-9)),
    ]


def test_battery_samples_across_the_autumn_repeated_hour() -> None:
    first = telemetry("01:55:00", charged=0.0, discharged=0.0)
    again = telemetry("01:00:00", charged=0.0, discharged=250.0)  # the hour again, in EST
    first["timeStamp"], again["timeStamp"] = "2026-11-01 01:55:00", "2026-11-01 01:00:00"
    (r,) = parse_storage_data(storage(battery(first, again)), CTX)
    # 01:55 EDT = 05:55Z, then 01:00 EST = 06:00Z: 5 minutes, 250 Wh = +3.0 kW
    assert (r.interval_start, r.interval_s) == (utc(11, 1, 5, 55), 300)
    assert r.battery_kw == pytest.approx(3.0, abs=1e-9)


def test_an_implausible_soc_is_flagged_even_inside_a_weighted_mean() -> None:
    one = storage(battery(telemetry("14:00:00", soc=50.0), telemetry("14:05:00", soc=130.0)))
    (r,) = parse_storage_data(one, CTX)
    assert r.soc_pct is None and r.quality[Channel.SOC_PCT] is QUESTIONABLE
    # (9800 x 130 + 9800 x 0) / 19600 would be a plausible 65 %: still flagged
    two = storage(
        battery(telemetry("14:00:00", soc=50.0), telemetry("14:05:00", soc=130.0)),
        battery(telemetry("14:00:00", soc=0.0), telemetry("14:05:00", soc=0.0)),
    )
    (r,) = parse_storage_data(two, CTX)
    assert r.soc_pct is None and r.quality[Channel.SOC_PCT] is QUESTIONABLE


def test_fewer_batteries_counted_than_listed_is_refused() -> None:
    samples = (telemetry("14:00:00"), telemetry("14:05:00"))
    with pytest.raises(FormatError) as err:
        parse_storage_data(storage(battery(*samples), battery(*samples), count=1), CTX)
    assert err.value.field == "storageData.batteryCount"


# --- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        1e308,  # 1e305 kW, beyond any site
        10**400,  # a JSON integer beyond float range
        -50.0,  # negative PV
    ],
)
def test_implausible_values_are_flagged_not_stored(value: Any) -> None:
    (r,) = parse_power_details(details(meter("Production", {"14:15:00": value})), CTX)
    assert r.pv_kw is None and r.quality == {Channel.PV_KW: QUESTIONABLE}


def test_a_negative_magnitude_makes_the_net_questionable() -> None:
    payload = details(meter("FeedIn", {"14:15:00": -500.0}), meter("Purchased", {"14:15:00": 0.0}))
    (r,) = parse_power_details(payload, CTX)
    assert r.net_kw is None and r.quality == {Channel.NET_KW: QUESTIONABLE}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], ""),
        ({}, "powerDetails"),
        ({"powerDetails": "W"}, "powerDetails"),
        ({"powerDetails": {"timeUnit": "QUARTER_OF_AN_HOUR", "unit": "W"}}, "powerDetails.meters"),
        (details({"type": ["Production"], "values": []}), "powerDetails.meters[0].type"),
        (
            details(meter("Production", {"14:15:00": "3210.5"})),
            "powerDetails.meters[0].values[0].value",
        ),
        (
            details(meter("Production", {"14:15:00": True})),
            "powerDetails.meters[0].values[0].value",
        ),
        (
            details({"type": "Production", "values": [{"date": 1782915300, "value": 1.0}]}),
            "powerDetails.meters[0].values[0].date",
        ),
        (
            details({"type": "Production", "values": [{"value": 1.0}]}),
            "powerDetails.meters[0].values[0].date",
        ),
        (
            details(meter("Production", {"14:15:00": 1.0}, day="9999-12-31")),
            "powerDetails.meters[0].values[0].date",
        ),
        (
            details(meter("Production", {"14:15:00": 1.0}, day="1999-07-01")),
            "powerDetails.meters[0].values[0].date",
        ),
        (
            details(meter("Production", {"14:15:00": 1.0}), meter("Production", {})),
            "powerDetails.meters[1].type",
        ),
        (
            details({"type": "Production", "values": [{"date": "2026-07-01 14:15:00"}] * 2}),
            "powerDetails.meters[0].values[1].date",
        ),
    ],
)
def test_unreadable_power_details_name_the_field(payload: Any, field: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_power_details(payload, CTX)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"storageData": {"batteries": []}}, "storageData.batteryCount"),
        (
            storage(battery(telemetry("14:00:00", power="1500"))),
            "storageData.batteries[0].telemetries[0].power",
        ),
        (
            storage(battery(telemetry("2026-07-01 14:00:00"))),
            "storageData.batteries[0].telemetries[0].timeStamp",
        ),
        (storage(battery(nameplate="9800"), battery()), "storageData.batteries[0].nameplate"),
        (storage(battery(nameplate=0), battery()), "storageData.batteries[0].nameplate"),
    ],
)
def test_unreadable_storage_data_names_the_field(payload: Any, field: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_storage_data(payload, CTX)
    assert err.value.field == field


def test_local_times_need_the_site_time_zone() -> None:
    with pytest.raises(FormatError) as err:
        parse_power_details(power_day(), RawContext("SE-1", None, CTX.received_at))
    assert err.value.field == "sitetimezone"


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_no_hostile_variant_raises_anything_but_format_error(fmt: Any) -> None:
    valid = {
        "solaredge.power-details.v1": power_day(),
        "solaredge.energy-details.v1": details(
            meter("Production", {"14:15:00": 250.0}),
            meter("Purchased", {"14:15:00": 25.0}),
            root="energyDetails",
            unit="Wh",
        ),
        "solaredge.storage-data.v1": storage(
            battery(
                telemetry("14:00:00", charged=0.0, discharged=0.0, power=1.0, soc=50.0),
                telemetry("14:05:00", charged=0.0, discharged=250.0, power=1.0, soc=49.0),
            ),
            battery(
                telemetry("14:00:00", soc=30.0), telemetry("14:05:00", soc=31.0), nameplate=4900
            ),
        ),
    }[fmt.name]
    assert fmt.parse(valid, CTX)  # the unchanged payload reads
    refused, crashed = refusals(fmt, valid, CTX)
    assert crashed == []
    assert refused > 0
