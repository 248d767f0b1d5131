"""The simulator's physics against hand-worked values: PV, the battery's limits by coupling,
efficiency, self-consumption, and the simulator loop that runs them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import RESIDENTIAL, Product, build_fleet
from nexwatt_fleet_sim.physics import (
    SiteRatings,
    discharge_limit_kw,
    household_load_kw,
    pv_available_kw,
    site_step,
    solar_elevation_sin,
)
from nexwatt_fleet_sim.simulator import Simulator
from nexwatt_shared.codec import decode
from nexwatt_shared.contracts import AssetCommand, Setpoint
from nexwatt_shared.topics import TELEMETRY_RAW

TOL_KW = 1e-9
MINUTE_H = 1 / 60
NO_ORDER = np.nan
PRODUCTS = {p.inverter: p for p in RESIDENTIAL}
SE7600H = PRODUCTS["SolarEdge SE7600H"]  # DC, 7.6 kW inverter, 9.8 kWh / 5 kW battery, rte 0.92
SBS60 = PRODUCTS["SMA Sunny Boy Storage 6.0"]  # AC, 6.0 kW battery inverter, 10.2 kWh, rte 0.90
IQ8 = PRODUCTS["Enphase IQ8 System"]  # AC, 3.84 kW battery inverter, 10.1 kWh, rte 0.89


def ratings(*products: Product, reserve_pct: float = 20.0) -> SiteRatings:
    """One site of each product, as the fleet builds it."""

    def each(value: Callable[[Product], float]) -> np.ndarray:
        return np.array([value(p) for p in products])

    storage_kwh = each(lambda p: p.storage_kwh)
    return SiteRatings(
        capacity_kw=each(lambda p: p.capacity_kw),
        pv_inverter_kw=each(lambda p: p.pv_inverter_kw),
        continuous_kw=each(lambda p: p.battery_continuous_kw),
        storage_kwh=storage_kwh,
        reserve_kwh=storage_kwh * reserve_pct / 100.0,
        round_trip_efficiency=each(lambda p: p.round_trip_efficiency),
        dc_coupled=each(lambda p: p.coupling == "dc").astype(bool),
    )


def step(
    product: Product, soc_kwh: float, pv_kw: float, load_kw: float, target_kw: float,
    dt_h: float = MINUTE_H, self_consumption: bool = True,
) -> tuple[float, float, float]:  # fmt: skip
    """(pv_kw, battery_kw, soc_kwh) of one site after one step."""
    pv, battery, soc = site_step(
        ratings(product), [soc_kwh], [pv_kw], [load_kw], [target_kw], [self_consumption], dt_h
    )
    return float(pv[0]), float(battery[0]), float(soc[0])


def test_the_ratings_of_the_two_examples() -> None:
    assert (SE7600H.coupling, SE7600H.capacity_kw, SE7600H.storage_kwh) == ("dc", 7.6, 9.8)
    assert SE7600H.battery_continuous_kw == 5.0
    assert (SBS60.coupling, SBS60.capacity_kw) == ("ac", 6.0)
    for product in RESIDENTIAL:
        assert product.battery_peak_kw >= product.battery_continuous_kw
        assert 0.89 <= product.round_trip_efficiency <= 0.94


def test_sun_at_solar_noon_near_the_equinox_in_washington() -> None:
    # 2026-03-20 is day 79: declination = 23.44 * sin(2*pi*(284+79)/365) = -0.806 deg.
    # Solar noon at 77 W is 12 + 77/15 h = 17:08 UTC; elevation = 90 - 38.9 - 0.806 = 50.29 deg,
    # sin = cos(38.9 + 0.806 deg) = 0.7692.
    noon = datetime(2026, 3, 20, 17, 8, tzinfo=UTC)
    assert solar_elevation_sin(noon, 38.9, -77.0) == pytest.approx(0.7692, abs=2e-4)
    assert solar_elevation_sin(datetime(2026, 3, 20, 5, 0, tzinfo=UTC), 38.9, -77.0) < 0


def test_pv_from_the_dc_nameplate_by_mounting_and_weather() -> None:
    # 10 kW DC x 0.83 = 8.3 kW with the sun overhead; at sin(elevation) = 0.5 a fixed array
    # gives 8.3 x 0.5^1.15 = 3.740189 kW, a tracking one 8.3 x 0.5^0.5 = 5.868986 kW; a day
    # at half the clear sky halves it; nothing below the horizon.
    pv = pv_available_kw([10.0, 10.0, 10.0], [False, True, False], 0.5, [1.0, 1.0, 0.5])
    assert pv == pytest.approx([3.740189, 5.868986, 3.740189 / 2], abs=1e-6)
    assert pv_available_kw([10.0], [False], -0.3, [1.0]).tolist() == [0.0]


def test_a_dc_coupled_se7600h_gives_its_battery_rating_at_night() -> None:
    # No PV through the 7.6 kW hybrid inverter: its headroom is 7.6 kW, but the battery holds
    # 5.0 kW continuous. Asked for 7.6 kW with 9.8 kWh stored, it gives 5.0 kW.
    assert discharge_limit_kw(ratings(SE7600H), [0.0]) == pytest.approx([5.0], abs=TOL_KW)
    pv, battery, _ = step(SE7600H, 9.8, pv_kw=0.0, load_kw=0.8, target_kw=7.6)
    assert (pv, battery) == (0.0, pytest.approx(5.0, abs=TOL_KW))


def test_an_ac_coupled_sbs_gives_its_inverter_rating_beside_pv() -> None:
    # 5 kW of PV flows through its own 5.0 kW PV inverter, not the 6.0 kW battery inverter:
    # asked for 6.0 kW, the battery (10.2 kW continuous) gives 6.0 kW, not 6.0 - 5.0 = 1.0;
    # net = 5.0 + 6.0 - 1.2 = 9.8 kW.
    pv, battery, _ = step(SBS60, 10.2, pv_kw=5.0, load_kw=1.2, target_kw=6.0)
    assert battery == pytest.approx(6.0, abs=TOL_KW)
    assert pv + battery - 1.2 == pytest.approx(9.8, abs=TOL_KW)
    # DC-coupled, the same 5 kW of PV leaves the SE7600H 7.6 - 5.0 = 2.6 kW of headroom.
    _, battery, _ = step(SE7600H, 9.8, pv_kw=5.0, load_kw=1.2, target_kw=6.0)
    assert battery == pytest.approx(2.6, abs=TOL_KW)


def test_discharging_draws_the_loss_from_the_cells() -> None:
    # 3.0 kW for an hour from an SE7600H (rte 0.92): 3.0 kWh AC draws 3.0 / sqrt(0.92)
    # = 3.0 / 0.9591663 = 3.1277162 kWh from the cells.
    _, battery, soc = step(SE7600H, 9.8, pv_kw=0.0, load_kw=0.5, target_kw=3.0, dt_h=1.0)
    assert battery == pytest.approx(3.0, abs=TOL_KW)
    assert soc == pytest.approx(9.8 - 3.1277162, abs=1e-7)


def test_the_energy_above_the_reserve_limits_a_discharge_after_its_loss() -> None:
    # 0.05 kWh above the 1.96 kWh reserve (20 % of 9.8), over one minute, through
    # sqrt(0.92) = 0.9591663: 0.05 x 0.9591663 x 60 = 2.8774989 kW, below the 5 kW rating.
    _, battery, soc = step(SE7600H, 1.96 + 0.05, pv_kw=0.0, load_kw=0.5, target_kw=5.0)
    assert battery == pytest.approx(2.8774989, abs=1e-7)
    assert soc == pytest.approx(1.96, abs=1e-12)


def test_charging_from_surplus_stores_it_after_the_loss() -> None:
    # SBS 6.0 at its 2.04 kWh reserve, no order, 5.0 kW PV and 1.0 kW load: it charges the
    # 4.0 kW surplus (below its 6.0 kW inverter) and stores 4.0 x sqrt(0.90) = 3.7947332 kWh in
    # an hour; nothing is exported: net = 5.0 - 4.0 - 1.0 = 0.
    pv, battery, soc = step(SBS60, 2.04, pv_kw=5.0, load_kw=1.0, target_kw=NO_ORDER, dt_h=1.0)
    assert (pv, battery) == (5.0, pytest.approx(-4.0, abs=TOL_KW))
    assert soc == pytest.approx(2.04 + 3.7947332, abs=1e-7)


def test_charge_limits_by_coupling() -> None:
    # AC-coupled: the IQ Battery charges through its 3.84 kW inverter: of a 5.3 kW surplus
    # (5.8 - 0.5) it takes 3.84 kW; net = 5.8 - 3.84 - 0.5 = 1.46 kW.
    pv, battery, _ = step(IQ8, 2.02, pv_kw=5.8, load_kw=0.5, target_kw=NO_ORDER)
    assert (pv, battery) == (5.8, pytest.approx(-3.84, abs=TOL_KW))
    # DC-coupled: 9.0 kW of PV on the SE7600H's DC bus, 0.5 kW load: the battery takes its
    # 5.0 kW rating on the DC bus, the inverter passes 9.0 - 5.0 = 4.0 kW (below 7.6, nothing
    # clipped); pv = 9.0, net = 9.0 - 5.0 - 0.5 = 3.5 kW.
    pv, battery, _ = step(SE7600H, 1.96, pv_kw=9.0, load_kw=0.5, target_kw=NO_ORDER)
    assert (pv, battery) == (9.0, pytest.approx(-5.0, abs=TOL_KW))
    # Full, it charges nothing and the inverter clips the PV at 7.6 kW: net 7.1 kW.
    pv, battery, soc = step(SE7600H, 9.8, pv_kw=9.0, load_kw=0.5, target_kw=NO_ORDER)
    assert (pv, battery, soc) == (7.6, 0.0, 9.8)
    # 0.01 kWh short of full, over a minute: 0.01 / 0.9591663 x 60 = 0.6255432 kW fills it.
    _, battery, soc = step(SE7600H, 9.79, pv_kw=9.0, load_kw=0.5, target_kw=NO_ORDER)
    assert battery == pytest.approx(-0.6255432, abs=1e-7)
    assert soc == pytest.approx(9.8, abs=1e-12)


def test_self_consumption_covers_the_load_down_to_the_reserve() -> None:
    # Evening: 0.2 kW PV, 1.5 kW load: the battery gives 1.3 kW, the meter reads 0.
    pv, battery, _ = step(SE7600H, 5.0, pv_kw=0.2, load_kw=1.5, target_kw=NO_ORDER)
    assert battery == pytest.approx(1.3, abs=TOL_KW)
    assert pv + battery - 1.5 == pytest.approx(0.0, abs=TOL_KW)
    # At its reserve it gives nothing: the site imports 1.3 kW.
    _, battery, soc = step(SE7600H, 1.96, pv_kw=0.2, load_kw=1.5, target_kw=NO_ORDER)
    assert (battery, soc) == (0.0, 1.96)
    # Out of self-consumption (a commercial site) it holds its charge, and still charges.
    _, battery, soc = step(SE7600H, 5.0, pv_kw=0.2, load_kw=1.5, target_kw=NO_ORDER,
                           self_consumption=False)  # fmt: skip
    assert (battery, soc) == (0.0, 5.0)
    _, battery, _ = step(SBS60, 2.04, pv_kw=5.0, load_kw=1.0, target_kw=NO_ORDER,
                         self_consumption=False)  # fmt: skip
    assert battery == pytest.approx(-4.0, abs=TOL_KW)
    # An order overrides self-consumption: 2.0 kW out at noon, no charging from the surplus.
    _, battery, _ = step(SBS60, 5.0, pv_kw=5.0, load_kw=1.0, target_kw=2.0)
    assert battery == pytest.approx(2.0, abs=TOL_KW)


def test_a_battery_at_its_reserve_at_dawn_recharges_from_midday_surplus() -> None:
    # A clear 15 June at 38.9 N, 77 W, one-minute steps from 05:00 local solar time (10:08
    # UTC) for a day; each product with 1.2 kW DC of PV per kW of its PV inverter, fixed, and a
    # 0.7 kW overnight load; every battery starts at its 20 % reserve.
    products = [SE7600H, SBS60, IQ8]
    r = ratings(*products)
    pv_dc_kw = np.array([1.2 * p.pv_inverter_kw for p in products])
    soc = r.reserve_kwh.copy()
    dawn = datetime(2026, 6, 15, 10, 8, tzinfo=UTC)
    path = []
    for k in range(24 * 60):
        mid = dawn + timedelta(minutes=k + 0.5)
        pv = pv_available_kw(pv_dc_kw, [False] * 3, solar_elevation_sin(mid, 38.9, -77.0), 1.0)
        load = household_load_kw([0.7] * 3, 5.0 + (k + 0.5) / 60, 0.0)
        _, _, soc = site_step(r, soc, pv, load, [NO_ORDER] * 3, [True] * 3, MINUTE_H)
        path.append(soc)
    soc_pct = 100 * np.array(path) / r.storage_kwh  # (minutes, assets)
    # Never below the reserve, never above full.
    assert soc_pct.min() >= 20.0 - 1e-9 and soc_pct.max() <= 100.0 + 1e-9
    # Full by 14:00 solar time (540 minutes after 05:00), drawn down by the next dawn.
    assert soc_pct[540] == pytest.approx([100.0] * 3, abs=1e-9)
    assert np.all(soc_pct[-1] < 60.0)


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
    # Discharge 2.0 kW for the whole quarter hour (within a 5 kW battery, and the headroom of a
    # 5 kW+ hybrid inverter beside the low PV at 9 am, of a battery ~90 % full).
    sim.orders.place(np.array([i]), "I-1", start, start + timedelta(hours=1), np.array([2.0]))
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
        # 166.67 Wh AC draws 166.67 / sqrt(rte) Wh from a pack of storage_kwh * 1000 Wh
        # (an SE7600H: rte 0.92, 173.77 Wh of 9800 Wh, 1.773 %).
        pack_wh = fleet.storage_kwh[i] * 1000
        assert last["fullPackEnergyAvailable"] == pytest.approx(pack_wh, abs=0.05)
        fall_pct = first["batteryPercentageState"] - last["batteryPercentageState"]
        drawn_wh = 2.0 * 5 / 60 * 1000 / np.sqrt(fleet.ratings.round_trip_efficiency[i])
        assert fall_pct == pytest.approx(drawn_wh / pack_wh * 100, abs=0.011)
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


class AckRecorder:
    """Keeps the acks the simulator would publish."""

    source = "fleet-sim"

    def __init__(self) -> None:
        self.acks: list[Any] = []

    async def publish_many(self, topic: object, payloads: list[Any], *, event_id: object) -> None:
        self.acks.extend(payloads)


@pytest.mark.parametrize("start", [datetime(2026, 3, 12, 4, 0, tzinfo=UTC),
                                   datetime(2026, 6, 15, 17, 0, tzinfo=UTC)])  # fmt: skip
async def test_acks_hold_what_the_battery_and_its_coupling_allow(start: datetime) -> None:
    # Before dawn (23:00 solar time, no PV) and at solar noon in June (PV), every asset asked
    # for 7.6 kW: an SE7600H acknowledges its battery's 5.0 kW less any PV filling its hybrid
    # inverter (min(5.0, 7.6 - PV)), an SBS 6.0 its battery inverter's 6.0 kW whatever the PV.
    settings = Settings(sim_assets=40, sim_offline_fraction=0.0, sim_refusal_fraction=0.0,
                        sim_under_response_fraction=0.0, sim_history_days=0,
                        sim_start=start)  # fmt: skip
    fleet = build_fleet(settings)
    producer = AckRecorder()
    sim = Simulator(settings, fleet, producer)  # type: ignore[arg-type]
    sim.step()
    inverters = [r["inverter"] for r in fleet.registrations]
    se, sbs = inverters.index(SE7600H.inverter), inverters.index(SBS60.inverter)
    window = (sim.clock, sim.clock + timedelta(hours=1))
    await sim.handle_commands([
        SimpleNamespace(payload=AssetCommand(
            command_id=f"I-1:r1:{gateway}:0", instruction_id="I-1", resource_id="R-1",
            gateway_id=gateway,
            setpoints=[Setpoint(asset_id=fleet.asset_ids[i], setpoint_kw=7.6)],
            window_start=window[0], window_end=window[1], issued_at=window[0],
        ))
        for i in (se, sbs)
        for gateway in [fleet.registrations[i]["gateway_id"]]
    ])  # type: ignore[arg-type]  # fmt: skip
    pv_se = float(sim.pv_now[se])
    assert (pv_se > 0.0) == (start.month == 6)
    acked = {a.asset_id: a.setpoint_kw for message in producer.acks for a in message.acks}
    assert acked[fleet.asset_ids[se]] == pytest.approx(min(5.0, 7.6 - pv_se), abs=1e-3)
    assert acked[fleet.asset_ids[sbs]] == 6.0
