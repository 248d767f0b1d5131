"""The simulated fleet: who the assets are (their registrations), how each one behaves, and
its state as the physics moves it on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.physics import (
    FloatArray,
    SiteRatings,
    clearness,
    household_load_kw,
    pv_available_kw,
    site_step,
    solar_elevation_sin,
)


@dataclass(frozen=True)
class Product:
    """A solar + storage system as sold. Power [kW], energy [kWh]."""

    inverter: str  # make and model, as registered
    coupling: str  # "dc": battery and PV behind one hybrid inverter; "ac": a battery inverter
    capacity_kw: float  # AC rating of the inverter the battery discharges through
    storage_kwh: float  # usable battery energy
    battery_continuous_kw: float
    battery_peak_kw: float  # seconds-long bursts
    round_trip_efficiency: float  # AC in to AC out [-]
    pv_inverter_kw: float  # AC rating that clips PV: the hybrid inverter's, or the PV inverter's

    @property
    def vendor(self) -> str:
        """The inverter's make as onboarding names its vendor cloud: "SolarEdge SE7600H" ->
        "solaredge"."""
        make = self.inverter.split(maxsplit=1)[0]
        return "".join(ch for ch in make.lower() if ch.isalnum())


# Typical datasheet-style values, to verify against the vendors' datasheets: none was read
# from one. DC-coupled PV flows through the hybrid inverter (pv_inverter_kw = capacity_kw);
# AC-coupled PV has its own inverter beside the battery inverter.
RESIDENTIAL = [
    # SolarEdge HD-Wave hybrid with a 9.8 kWh battery (LG RESU10H class): 5 kW, 7 kW peak.
    Product("SolarEdge SE7600H", "dc", 7.6, 9.8, 5.0, 7.0, 0.92, 7.6),
    # With SolarEdge's 9.7 kWh Energy Bank (5 kW continuous, 7.5 kW peak).
    Product("SolarEdge SE5000H", "dc", 5.0, 9.7, 5.0, 7.5, 0.94, 5.0),
    # IQ Battery 10: 3.84 kW continuous, ~10.1 kWh; twenty IQ8+ microinverters (290 W) for PV.
    Product("Enphase IQ8 System", "ac", 3.84, 10.1, 3.84, 5.7, 0.89, 5.8),
    # A 6.0 kW battery inverter with a ~10.2 kWh high-voltage battery (BYD HVS class) beside
    # a 5.0 kW PV inverter.
    Product("SMA Sunny Boy Storage 6.0", "ac", 6.0, 10.2, 10.2, 12.8, 0.90, 5.0),
    # PWRcell inverter 7.6 kW with six battery modules: 17.1 kWh, 6.7 kW continuous.
    Product("Generac PWRcell 7.6", "dc", 7.6, 17.1, 6.7, 9.0, 0.91, 7.6),
]
# MW-scale battery inverter with a ~1 C battery and its own PV inverters; every rating is
# scaled per site (see `build_fleet`).
COMMERCIAL = Product(
    "SMA Sunny Central Storage 2200", "ac", 2200.0, 2400.0, 2400.0, 2640.0, 0.89, 1760.0
)
COMMERCIAL_SHARE = 0.1
TRACKING_SHARE = 0.5  # commercial arrays on trackers; residential ones are fixed (roofs)
DC_AC_RATIO = (1.05, 1.3)  # PV nameplate [kW DC] per kW of its inverter, drawn per site


def gateway_id(asset_prefix: str, asset_id: str, product: Product) -> str:
    """The gateway that commands an asset: a commercial site has its own (`<asset id>-gw`); homes
    are commanded through their vendor's cloud connector (`<prefix><vendor>-cloud`), one per
    vendor and fleet, so fleets with other asset prefixes never share one."""
    if product is COMMERCIAL:
        return f"{asset_id}-gw"
    return f"{asset_prefix}{product.vendor}-cloud"


@dataclass
class SimFleet:
    registrations: list[dict]  # bodies for POST /v1/assets/register
    asset_ids: list[str]
    ratings: SiteRatings
    pv_dc_kw: FloatArray  # array nameplate [kW DC]; 0 without PV
    tracking: np.ndarray  # bool: the array tracks the sun
    self_consumption: np.ndarray  # bool: without an order, the battery covers the load
    base_load_kw: FloatArray
    interval_s: np.ndarray
    offline: np.ndarray  # bool: never reports, never acks
    response_factor: FloatArray  # share of an acknowledged setpoint actually delivered
    refuses: np.ndarray  # bool: the owner opted out of events
    unreachable: np.ndarray  # bool: reports, but its gateway cannot reach it: never acks
    solaredge: np.ndarray  # bool: reports through SolarEdge's cloud, in its own formats
    weather_seed: int
    soc_kwh: FloatArray  # state: energy in the cells [kWh]
    _weather: tuple[date, FloatArray] | None = field(default=None, repr=False)

    @property
    def storage_kwh(self) -> FloatArray:
        return self.ratings.storage_kwh

    def soc_pct(self) -> FloatArray:
        """State of charge [% of usable energy]."""
        return 100.0 * self.soc_kwh / self.ratings.storage_kwh

    def clearness(self, local_day: date) -> FloatArray:
        """The day's weather per asset [-] (`physics.clearness`), kept for the day."""
        if self._weather is None or self._weather[0] != local_day:
            self._weather = (local_day, clearness(local_day, self.weather_seed, self.soc_kwh.size))
        return self._weather[1]

    def step(
        self,
        mid: datetime,
        dt_h: float,
        latitude_deg: float,
        longitude_deg: float,
        load_noise: FloatArray,
        target_kw: FloatArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Move the fleet on by one step of `dt_h` [h] around `mid`; returns (pv_kw, load_kw,
        battery_kw) [kW] and updates `soc_kwh`. Local time is solar time at `longitude_deg`.

        Parameters
        ----------
        load_noise : relative load noise per asset [-]
        target_kw : discharge ordered per asset [kW]; NaN: no order
        """
        local_s = mid.timestamp() + longitude_deg / 15.0 * 3600.0
        local_hour = local_s / 3600.0 % 24
        sky = self.clearness(datetime.fromtimestamp(local_s, UTC).date())
        sin_el = solar_elevation_sin(mid, latitude_deg, longitude_deg)
        available = pv_available_kw(self.pv_dc_kw, self.tracking, sin_el, sky)
        load = household_load_kw(self.base_load_kw, local_hour, load_noise)
        pv, battery, self.soc_kwh = site_step(
            self.ratings, self.soc_kwh, available, load, target_kw, self.self_consumption, dt_h
        )
        return pv, load, battery


def build_fleet(settings: Settings) -> SimFleet:
    """A deterministic fleet for the settings' size and seed: about one site in ten commercial
    (MW-scale solar + storage), the rest residential systems, mixed vendors."""
    rng = np.random.default_rng(settings.sim_seed)
    n = settings.sim_assets
    commercial = np.zeros(n, bool)
    commercial[rng.choice(n, size=max(1, round(n * COMMERCIAL_SHARE)), replace=False)] = True
    kinds = [COMMERCIAL if c else RESIDENTIAL[rng.integers(len(RESIDENTIAL))] for c in commercial]
    # Commercial sites vary in size (power and energy separately); residential ones are as sold.
    power_scale = np.where(commercial, rng.uniform(0.66, 0.945, n), 1.0)
    energy_scale = np.where(commercial, rng.uniform(0.8, 1.0, n), 1.0)
    roles = rng.uniform(size=n)  # drawn where it always was: the same assets misbehave
    dc_ac_ratio = rng.uniform(*DC_AC_RATIO, n)
    tracking = commercial & (rng.uniform(size=n) < TRACKING_SHARE)
    reserve_pct = np.where(commercial, 10.0, 20.0)
    asset_ids = [f"{settings.sim_asset_prefix}{i + 1:05d}" for i in range(n)]
    registrations = []
    for i, asset_id in enumerate(asset_ids):
        kind = kinds[i]
        body = {
            "asset_id": asset_id,
            "type": "solar_storage",
            "inverter": kind.inverter,
            "capacity_kw": round(kind.capacity_kw * power_scale[i], 2),
            "storage_kwh": round(kind.storage_kwh * energy_scale[i], 1),
            "battery_continuous_kw": round(kind.battery_continuous_kw * energy_scale[i], 2),
            "battery_peak_kw": round(kind.battery_peak_kw * energy_scale[i], 2),
            "round_trip_efficiency": kind.round_trip_efficiency,
            "coupling": kind.coupling,
            "pv_dc_kw": round(kind.pv_inverter_kw * power_scale[i] * dc_ac_ratio[i], 1),
            "pv_mounting": "tracking" if tracking[i] else "fixed",
            # One meter per asset, named after it: fleets with other prefixes never share one.
            "meter_id": f"MD-{asset_id}-{'C' if commercial[i] else 'R'}",
            "iso_zone": settings.sim_iso_zone,
            "telemetry_interval": 1 if commercial[i] else 5,
            "cohort": "commercial" if commercial[i] else "residential",
            "backup_reserve_pct": float(reserve_pct[i]),
            "subscriber_id": f"SUB-{i + 1:05d}",
            "gateway_id": gateway_id(settings.sim_asset_prefix, asset_id, kind),
        }
        if settings.sim_resource_id:
            body["resource_id"] = settings.sim_resource_id
        registrations.append(body)

    # The physics runs on the registered (rounded) ratings: what the platform is told is true.
    def registered(name: str) -> FloatArray:
        return np.array([r[name] for r in registrations], float)

    capacity = registered("capacity_kw")
    storage = registered("storage_kwh")
    dc_coupled = np.array([k.coupling == "dc" for k in kinds])
    ratings = SiteRatings(
        capacity_kw=capacity,
        pv_inverter_kw=np.where(
            dc_coupled, capacity, np.array([k.pv_inverter_kw for k in kinds]) * power_scale
        ),
        continuous_kw=registered("battery_continuous_kw"),
        storage_kwh=storage,
        reserve_kwh=storage * reserve_pct / 100.0,
        round_trip_efficiency=registered("round_trip_efficiency"),
        dc_coupled=dc_coupled,
    )
    # Each asset's role from one draw: consecutive bands of [0, 1), one per behaviour.
    bands = np.cumsum(
        [settings.sim_offline_fraction, settings.sim_under_response_fraction,
         settings.sim_refusal_fraction, settings.sim_unreachable_fraction]
    )  # fmt: skip
    offline, under, refuses, unreachable = (
        (roles >= low) & (roles < high) for low, high in zip([0.0, *bands[:-1]], bands, strict=True)
    )
    return SimFleet(
        registrations=registrations,
        asset_ids=asset_ids,
        ratings=ratings,
        pv_dc_kw=registered("pv_dc_kw"),
        tracking=tracking,
        # Home batteries run self-consumption by default; a commercial site's keeps its energy
        # for demand peaks and events (and still charges from PV surplus).
        self_consumption=~commercial & settings.sim_home_self_consumption,
        base_load_kw=np.where(commercial, capacity * 0.15, rng.uniform(0.4, 1.0, n)),
        interval_s=np.where(commercial, 60, 300),
        offline=offline,
        response_factor=np.where(under, rng.uniform(0.4, 0.8, n), 1.0),
        refuses=refuses,
        unreachable=unreachable,
        solaredge=np.array([k.vendor == "solaredge" for k in kinds]),
        weather_seed=settings.sim_seed,
        soc_kwh=storage * rng.uniform(0.85, 0.95, n),
    )
