"""The simulator's physics against hand-worked values."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import build_fleet
from nexwatt_fleet_sim.physics import battery_step, pv_output_kw, solar_elevation_sin
from nexwatt_fleet_sim.simulator import Simulator


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
    emitted = [r for _ in range(5) for r in sim.step()]
    one_minute = int((fleet.interval_s == 60).sum())
    # Five one-minute steps: 1-minute assets report 5 times, 5-minute assets once.
    assert len(emitted) == 5 * one_minute + (20 - one_minute)
    for r in emitted:
        assert r.net_kw == pytest.approx(r.pv_kw + r.battery_kw - r.load_kw, abs=1e-3)
        assert r.interval_start.timestamp() % r.interval_s == 0
    assert np.all(fleet.soc_kwh <= fleet.storage_kwh)
