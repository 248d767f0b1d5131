"""The simulated fleet: who the assets are (their registrations) and how each one behaves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nexwatt_fleet_sim.config import Settings

# (inverter as sold, inverter rating [kW], usable battery [kWh]) — common residential systems.
RESIDENTIAL = [
    ("SolarEdge SE7600H", 7.6, 9.8),
    ("SolarEdge SE5000H", 5.0, 9.7),
    ("Enphase IQ8 System", 6.0, 10.0),
    ("SMA Sunny Boy Storage 6.0", 6.0, 9.8),
    ("Generac PWRcell 7.6", 7.6, 17.1),
]
COMMERCIAL = [("SMA Sunny Central Storage 2200", 2200.0, 2400.0)]
COMMERCIAL_SHARE = 0.1


@dataclass
class SimFleet:
    registrations: list[dict]  # bodies for POST /v1/assets/register
    asset_ids: list[str]
    capacity_kw: np.ndarray
    storage_kwh: np.ndarray
    reserve_kwh: np.ndarray
    pv_peak_kw: np.ndarray
    base_load_kw: np.ndarray
    interval_s: np.ndarray
    offline: np.ndarray  # bool: never reports, never acks
    response_factor: np.ndarray  # share of an acknowledged setpoint actually delivered
    refuses: np.ndarray  # bool: the owner opted out of events
    solaredge: np.ndarray  # bool: reports through SolarEdge's cloud, in its own formats
    soc_kwh: np.ndarray  # state: stored energy


def build_fleet(settings: Settings) -> SimFleet:
    """A deterministic fleet for the settings' size and seed: about one site in ten commercial
    (MW-scale solar + storage), the rest residential systems, mixed vendors."""
    rng = np.random.default_rng(settings.sim_seed)
    n = settings.sim_assets
    commercial = np.zeros(n, bool)
    commercial[rng.choice(n, size=max(1, round(n * COMMERCIAL_SHARE)), replace=False)] = True
    kinds = [
        COMMERCIAL[0] if c else RESIDENTIAL[rng.integers(len(RESIDENTIAL))] for c in commercial
    ]
    # Commercial sites vary in size; residential systems are as sold.
    capacity_scale = np.where(commercial, rng.uniform(0.66, 0.945, n), 1.0)
    storage_scale = np.where(commercial, rng.uniform(0.8, 1.0, n), 1.0)
    capacity = np.array([k[1] for k in kinds]) * capacity_scale
    storage = np.array([k[2] for k in kinds]) * storage_scale
    reserve_pct = np.where(commercial, 10.0, 20.0)
    asset_ids = [f"{settings.sim_asset_prefix}{i + 1:05d}" for i in range(n)]
    registrations = []
    for i, asset_id in enumerate(asset_ids):
        body = {
            "asset_id": asset_id,
            "type": "solar_storage",
            "inverter": kinds[i][0],
            "capacity_kw": round(float(capacity[i]), 1),
            "storage_kwh": round(float(storage[i]), 1),
            # One meter per asset, named after it: fleets with other prefixes never share one.
            "meter_id": f"MD-{asset_id}-{'C' if commercial[i] else 'R'}",
            "iso_zone": settings.sim_iso_zone,
            "telemetry_interval": 1 if commercial[i] else 5,
            "cohort": "commercial" if commercial[i] else "residential",
            "backup_reserve_pct": float(reserve_pct[i]),
            "subscriber_id": f"SUB-{i + 1:05d}",
        }
        if settings.sim_resource_id:
            body["resource_id"] = settings.sim_resource_id
        registrations.append(body)
    capacity = np.array([r["capacity_kw"] for r in registrations])
    storage = np.array([r["storage_kwh"] for r in registrations])
    roles = rng.uniform(size=n)
    offline = roles < settings.sim_offline_fraction
    under = ~offline & (
        roles < settings.sim_offline_fraction + settings.sim_under_response_fraction
    )
    refuses = (
        ~offline
        & ~under
        & (
            roles
            < settings.sim_offline_fraction
            + settings.sim_under_response_fraction
            + settings.sim_refusal_fraction
        )
    )
    return SimFleet(
        registrations=registrations,
        asset_ids=asset_ids,
        capacity_kw=capacity,
        storage_kwh=storage,
        reserve_kwh=storage * reserve_pct / 100.0,
        pv_peak_kw=capacity
        * np.where(commercial, rng.uniform(0.6, 0.8, n), rng.uniform(0.9, 1.1, n)),
        base_load_kw=np.where(commercial, capacity * 0.15, rng.uniform(0.4, 1.0, n)),
        interval_s=np.where(commercial, 60, 300),
        offline=offline,
        response_factor=np.where(under, rng.uniform(0.4, 0.8, n), 1.0),
        refuses=refuses,
        # Registered with a SolarEdge inverter: onboarding names its vendor "solaredge".
        solaredge=np.array([k[0].startswith("SolarEdge ") for k in kinds]),
        soc_kwh=storage * rng.uniform(0.85, 0.95, n),
    )
