"""The simulated fleet's registrations: what onboarding is told is what the physics runs on."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

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


def test_homes_share_their_vendors_cloud_gateway_and_commercial_sites_have_their_own() -> None:
    fleet = build_fleet(Settings(sim_assets=312, sim_asset_prefix="RUN7-"))
    vendors = {
        "SolarEdge SE7600H": "solaredge",
        "SolarEdge SE5000H": "solaredge",
        "Enphase IQ8 System": "enphase",
        "SMA Sunny Boy Storage 6.0": "sma",
        "Generac PWRcell 7.6": "generac",
    }
    for body in fleet.registrations:
        if body["cohort"] == "commercial":
            assert body["gateway_id"] == f"{body['asset_id']}-gw"
        else:
            assert body["gateway_id"] == f"RUN7-{vendors[body['inverter']]}-cloud"
    # Four vendor clouds for the homes, one gateway per commercial site.
    commercial = sum(b["cohort"] == "commercial" for b in fleet.registrations)
    assert len({b["gateway_id"] for b in fleet.registrations}) == 4 + commercial
    other = build_fleet(Settings(sim_assets=312, sim_asset_prefix="RUN8-"))
    assert not {b["gateway_id"] for b in fleet.registrations} & {
        b["gateway_id"] for b in other.registrations
    }


def test_the_longest_prefix_still_makes_valid_ids_and_others_are_refused() -> None:
    fleet = build_fleet(Settings(sim_assets=40, sim_asset_prefix="P" * 40))
    requests = [RegistrationRequest.model_validate(body) for body in fleet.registrations]
    assert max(len(q.gateway_id or "") for q in requests) == 40 + len("solaredge-cloud")
    for prefix in ["P" * 41, "BTM/", "BTM "]:
        with pytest.raises(ValidationError):
            Settings(sim_asset_prefix=prefix)
