"""The simulator's physics against hand-worked values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import build_fleet
from nexwatt_fleet_sim.physics import battery_step, pv_output_kw, solar_elevation_sin
from nexwatt_fleet_sim.simulator import Order, Simulator
from nexwatt_shared.codec import decode
from nexwatt_shared.topics import TELEMETRY_RAW


def test_sun_at_solar_noon_near_the_equinox_in_washington() -> None:
    # 2026-03-20 is day 79: declination = 23.44 * sin(2*pi*(284+79)/365) = -0.806 deg.
    # Solar noon at 77 W is 12 + 77/15 h = 17:08 UTC; elevation = 90 - 38.9 - 0.806 = 50.29 deg,
    # sin = cos(38.9 + 0.806 deg) = 0.7692.
    noon = datetime(2026, 3, 20, 17, 8, tzinfo=UTC)
    assert solar_elevation_sin(noon, 38.9, -77.0) == pytest.approx(0.7692, abs=2e-4)
    assert solar_elevation_sin(datetime(2026, 3, 20, 5, 0, tzinfo=UTC), 38.9, -77.0) < 0
    assert pv_output_kw([10.0], -0.3).tolist() == [0.0]
    assert pv_output_kw([10.0], 0.5) == pytest.approx([10.0 * 0.5**1.15])


def test_the_battery_stops_at_its_reserve_and_at_the_inverter_rating() -> None:
    # Target 5 kW; headroom 7.6 - 3.0 = 4.6 kW; energy above reserve 2.0 - 1.96 = 0.04 kWh
    # in a one-minute step -> 2.4 kW. Power = 2.4 kW, state of charge ends at the reserve.
    power, soc = battery_step([5.0, 5.0], [7.6, 7.6], [3.0, 3.0], [2.0, 9.0], [1.96, 1.96], 1 / 60)
    assert power == pytest.approx([2.4, 4.6], abs=1e-9)
    assert soc == pytest.approx([1.96, 9.0 - 4.6 / 60], abs=1e-9)


def test_intervals_close_on_their_own_length_and_average_the_steps() -> None:
    settings = Settings(sim_assets=20, sim_offline_fraction=0.0,
                        sim_start=datetime(2026, 3, 12, 13, 0, tzinfo=UTC))  # fmt: skip
    fleet = build_fleet(settings)
    sim = Simulator(settings, fleet, producer=None)  # type: ignore[arg-type]
    emitted = [r for _ in range(5) for r in sim.step().readings]
    one_minute = int((fleet.interval_s == 60).sum())
    sites = int(fleet.solaredge.sum())  # report in SolarEdge's formats instead
    assert 0 < sites < 20 and not (fleet.solaredge & (fleet.interval_s == 60)).any()
    # Five one-minute steps: 1-minute assets report 5 times, other 5-minute assets once.
    assert len(emitted) == 5 * one_minute + (20 - one_minute - sites)
    for r in emitted:
        assert r.net_kw == pytest.approx(r.pv_kw + r.battery_kw - r.load_kw, abs=1e-3)
        assert r.interval_start.timestamp() % r.interval_s == 0
    assert np.all(fleet.soc_kwh <= fleet.storage_kwh)


def test_solaredge_sites_publish_storage_data_and_power_details_from_the_physics() -> None:
    # 13:00 UTC on 2026-03-12 is 09:00 in New York (EDT, UTC-4, since 2026-03-08).
    start = datetime(2026, 3, 12, 13, 0, tzinfo=UTC)
    settings = Settings(sim_assets=20, sim_offline_fraction=0.0, sim_refusal_fraction=0.0,
                        sim_under_response_fraction=0.0, sim_start=start)  # fmt: skip
    fleet = build_fleet(settings)
    sim = Simulator(settings, fleet, producer=SimpleNamespace(source="fleet-sim"))  # type: ignore[arg-type]
    i = int(np.flatnonzero(fleet.solaredge)[0])
    asset_id = fleet.asset_ids[i]
    # Discharge 2.0 kW for the whole quarter hour (well within a 5 kW+ inverter at 9 am and a
    # battery ~90 % full).
    sim.orders[i] = Order("I-1", start, start + timedelta(hours=1), 2.0)
    raw = [p for _ in range(15) for p in sim.step().raw if p.asset_id == asset_id]
    storage = [p for p in raw if p.fmt == "solaredge.storage-data.v1"]
    [power] = [p for p in raw if p.fmt == "solaredge.power-details.v1"]

    # Three 5-minute intervals, each two samples (start, end), local times without offset;
    # each interval starts with the sample the previous one ended on.
    samples = [p.data["storageData"]["batteries"][0]["telemetries"] for p in storage]
    assert [[t["timeStamp"] for t in s] for s in samples] == [
        ["2026-03-12 09:00:00", "2026-03-12 09:05:00"],
        ["2026-03-12 09:05:00", "2026-03-12 09:10:00"],
        ["2026-03-12 09:10:00", "2026-03-12 09:15:00"],
    ]
    assert samples[1][0] == samples[0][1] and samples[2][0] == samples[1][1]
    for first, last in samples:
        # 2.0 kW for 5 min = 2.0 * 5/60 h = 0.16667 kWh = 166.67 Wh discharged, none charged
        # (counters rounded to 0.1 Wh); SolarEdge's power is + when charging: -2000 W.
        discharged = last["lifeTimeEnergyDischarged"] - first["lifeTimeEnergyDischarged"]
        assert discharged == pytest.approx(2.0 * 5 / 60 * 1000, abs=0.11)
        assert last["lifeTimeEnergyCharged"] == first["lifeTimeEnergyCharged"]
        assert last["power"] == pytest.approx(-2000.0, abs=1e-9)
        # 166.67 Wh of a pack of storage_kwh * 1000 Wh: the SoC falls by 166.67 / pack * 100 %.
        pack_wh = fleet.storage_kwh[i] * 1000
        assert last["fullPackEnergyAvailable"] == pytest.approx(pack_wh, abs=0.05)
        fall_pct = first["batteryPercentageState"] - last["batteryPercentageState"]
        assert fall_pct == pytest.approx(2.0 * 5 / 60 * 1000 / pack_wh * 100, abs=0.011)
    assert samples[2][1]["batteryPercentageState"] == pytest.approx(
        100 * fleet.soc_kwh[i] / fleet.storage_kwh[i], abs=0.005
    )

    # One quarter hour, labelled by its local start; each step's net = pv + battery - load,
    # so FeedIn - Purchased - Production + Consumption = the battery's 2.0 kW = 2000 W
    # (four values rounded to 0.1 W: within 0.2 W).
    details = power.data["powerDetails"]
    assert (details["timeUnit"], details["unit"]) == ("QUARTER_OF_AN_HOUR", "W")
    values = {m["type"]: m["values"] for m in details["meters"]}
    assert {v[0]["date"] for v in values.values()} == {"2026-03-12 09:00:00"}
    w = {name: v[0]["value"] for name, v in values.items()}
    assert min(w["FeedIn"], w["Purchased"]) >= 0.0
    assert w["FeedIn"] - w["Purchased"] - w["Production"] + w["Consumption"] == pytest.approx(
        2000.0, abs=0.2
    )

    # On the wire: the format in the type, the asset as subject, the site's zone, stable ids.
    event = decode(TELEMETRY_RAW, sim._encoded(power))
    assert event.type == "nexwatt.telemetry.raw.solaredge.power-details.v1"
    assert (event.subject, event.sitetimezone) == (asset_id, "America/New_York")
    assert event.id == f"{asset_id}@20260312T130000Z:solaredge.power-details.v1"
    assert event.data.root == power.data


def test_a_run_starting_mid_quarter_skips_the_partial_quarter() -> None:
    settings = Settings(sim_assets=20, sim_start=datetime(2026, 3, 12, 13, 5, tzinfo=UTC))
    sim = Simulator(settings, build_fleet(settings), producer=None)  # type: ignore[arg-type]
    raw = [p for _ in range(25) for p in sim.step().raw]  # 13:05 to 13:30
    quarters = {
        p.data["powerDetails"]["meters"][0]["values"][0]["date"]
        for p in raw
        if p.fmt == "solaredge.power-details.v1"
    }
    assert quarters == {"2026-03-12 09:15:00"}  # 13:15-13:30 UTC; 13:05-13:15 was partial
