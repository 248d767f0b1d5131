"""The simulated fleet's registrations: what onboarding is told is what the physics runs on."""

from __future__ import annotations

import numpy as np
import pytest

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import COMMERCIAL, RESIDENTIAL, build_fleet
from nexwatt_onboarding.models import RegistrationRequest


def test_every_registration_is_a_valid_request_with_the_physics_ratings() -> None:
    fleet = build_fleet(Settings(sim_assets=312))
    # Onboarding's request model forbids unknown fields and refuses impossible ratings.
    requests = [RegistrationRequest.model_validate(body) for body in fleet.registrations]
    r = fleet.ratings
    assert [q.capacity_kw for q in requests] == r.capacity_kw.tolist()
    assert [q.storage_kwh for q in requests] == r.storage_kwh.tolist()
    assert [q.battery_continuous_kw for q in requests] == r.continuous_kw.tolist()
    assert [q.round_trip_efficiency for q in requests] == r.round_trip_efficiency.tolist()
    assert [q.coupling == "dc" for q in requests] == r.dc_coupled.tolist()
    assert [q.pv_dc_kw for q in requests] == fleet.pv_dc_kw.tolist()
    assert [q.pv_mounting == "tracking" for q in requests] == fleet.tracking.tolist()
    assert r.reserve_kwh == pytest.approx(
        [q.storage_kwh * q.backup_reserve_pct / 100 for q in requests], abs=1e-12
    )
    # DC-coupled, PV is clipped by the hybrid inverter the battery shares.
    assert np.array_equal(r.pv_inverter_kw[r.dc_coupled], r.capacity_kw[r.dc_coupled])
    # Every product sold shows up; only commercial sites track the sun and hold their charge.
    assert {q.inverter for q in requests} == {p.inverter for p in [*RESIDENTIAL, COMMERCIAL]}
    commercial = np.array([q.cohort == "commercial" for q in requests])
    assert not (fleet.tracking & ~commercial).any()
    assert np.array_equal(fleet.self_consumption, ~commercial)


def test_the_fleet_is_deterministic_for_a_seed() -> None:
    first, again = build_fleet(Settings()), build_fleet(Settings())
    assert first.registrations == again.registrations
    assert np.array_equal(first.soc_kwh, again.soc_kwh)
    other = build_fleet(Settings(sim_seed=43))
    assert other.registrations != first.registrations
