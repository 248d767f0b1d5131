"""Pure, vectorized physics of the simulated fleet (numpy arrays: one element per asset).

The simulator is the independent "real world" the platform's models are tested against, so it
has its own physics here and imports none of the platform's (no `nexwatt_shared.power_model`,
no `nexwatt_shared.battery`).

Powers [kW] are AC at the site unless named otherwise; + = delivered (battery discharging,
export), - = absorbed (battery charging), as on the wire. Energies [kWh] are what the battery
cells hold.

- PV: a clear-sky shape, `pv_dc_kw x PV_AC_PER_DC x clearness x sin(elevation)^exponent`, then
  clipped by the inverter PV flows through. The exponent is 1.15 for a fixed array and 0.5 for
  a tracking one (a tracker faces the sun, so its day is flatter-topped and wider: a shape
  choice, not a tracker model). `clearness` [0-1] is the day's weather, drawn per local day.
- Efficiency: a round-trip efficiency `rte` (AC in to AC out) is split evenly between the two
  ways, sqrt(rte) each: discharging E kWh AC draws E / sqrt(rte) from the cells; charging with
  E kWh stores E x sqrt(rte).
- Discharge (toward a target): within the battery's continuous rating, the inverter headroom
  and the energy above the reserve over the step, after the discharge loss. Inverter headroom:
  DC-coupled (battery and PV behind one hybrid inverter), `capacity_kw` minus the PV flowing
  through it; AC-coupled (the battery has its own inverter), `capacity_kw`, PV not counted.
- Without an order, every battery charges from PV surplus (PV - load > 0), never above full;
  one in self-consumption (what home batteries do by default) also discharges to cover the
  load (load - PV > 0), never below the reserve, while one that is not holds its charge (a
  commercial site keeping its energy for demand peaks and events). Charging is limited by the
  battery's continuous rating, by the room left in the cells (after the charge loss) and, when
  AC-coupled, by the battery inverter's rating. DC-coupled, PV charges the battery on the DC
  bus without passing through the hybrid inverter, so the inverter's AC rating does not limit
  charging, and PV above that rating can still charge the battery instead of being clipped.
- The battery's peak rating (seconds) plays no part: a step lasts a minute or more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
STEP_S = 60  # physics resolution [s]; every interval length is a multiple of it
LOAD_NOISE = 0.05  # relative standard deviation of household load, drawn per asset and step [-]
# AC output per kW of DC nameplate with the sun overhead on a clear day [-]: about PVWatts'
# default 14 % system losses times a 96 % inverter (0.86 x 0.96 = 0.83). A round
# simulation figure, not a site's measurement.
PV_AC_PER_DC = 0.83
FIXED_EXPONENT = 1.15  # clear-sky shape of a fixed array: sin(elevation)^1.15 [-]
TRACKING_EXPONENT = 0.5  # flatter, wider day of a tracking array [-]
# Day-to-day weather [-]: a fleet-wide clearness drawn uniform in CLEARNESS_FLEET, times a
# per-asset factor uniform in CLEARNESS_LOCAL, at most 1 (clear sky). Simulation choices, not
# a climate statistic.
CLEARNESS_FLEET = (0.3, 1.0)
CLEARNESS_LOCAL = (0.85, 1.15)
WEATHER_STREAM = 3  # the weather's own random stream, apart from the load noise's


@dataclass(frozen=True, eq=False)
class SiteRatings:
    """The physical ratings of each asset; every field is an array over assets."""

    capacity_kw: FloatArray  # AC rating of the inverter the battery discharges through [kW]
    pv_inverter_kw: FloatArray  # AC rating that clips PV: the hybrid inverter if DC-coupled [kW]
    continuous_kw: FloatArray  # power the battery holds, charging or discharging [kW]
    storage_kwh: FloatArray  # usable energy [kWh]
    reserve_kwh: FloatArray  # energy kept for the household, never discharged below [kWh]
    round_trip_efficiency: FloatArray  # AC in to AC out [-], in (0, 1]
    dc_coupled: NDArray[np.bool_]  # battery and PV behind one hybrid inverter


class SiteStep(NamedTuple):
    """One step of each site; see `site_step`."""

    pv_kw: FloatArray  # PV output [kW]
    battery_kw: FloatArray  # + discharging, - charging [kW]
    soc_kwh: FloatArray  # energy in the cells at the step's end [kWh]


def solar_elevation_sin(when: datetime, latitude_deg: float, longitude_deg: float) -> float:
    """Sine of the sun's elevation, from declination and hour angle (no refraction, no equation
    of time: good to a degree or two, enough for a load shape).

    Parameters
    ----------
    when : timezone-aware instant
    latitude_deg, longitude_deg : site position [deg], east positive
    """
    utc = when.timestamp() / 3600.0 % 24.0
    day = when.timetuple().tm_yday
    declination = np.radians(23.44) * np.sin(2 * np.pi * (284 + day) / 365.0)
    hour_angle = np.radians(15.0 * (utc + longitude_deg / 15.0 - 12.0))
    lat = np.radians(latitude_deg)
    return float(
        np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(hour_angle)
    )


def clearness(day: date, seed: int, n: int) -> FloatArray:
    """The weather of a local day: each asset's share of clear-sky PV [-], in (0, 1].

    Deterministic for (`day`, `seed`): the history and the live loop see the same weather.

    Parameters
    ----------
    day : local calendar day
    seed : the fleet's seed
    n : number of assets
    """
    rng = np.random.default_rng([seed, WEATHER_STREAM, day.toordinal()])
    fleet = rng.uniform(*CLEARNESS_FLEET)
    return np.minimum(fleet * rng.uniform(*CLEARNESS_LOCAL, n), 1.0)


def pv_available_kw(
    pv_dc_kw: ArrayLike, tracking: ArrayLike, elevation_sin: float, clearness: ArrayLike
) -> FloatArray:
    """PV power the array offers, before any inverter clips it [kW AC equivalent]:
    ``pv_dc_kw * PV_AC_PER_DC * clearness * sin(elevation)^exponent``, zero below the horizon.

    Parameters
    ----------
    pv_dc_kw : array nameplate [kW DC]
    tracking : True for a tracking array, False for a fixed one
    elevation_sin : sine of the sun's elevation [-]
    clearness : share of clear-sky output [-]
    """
    exponent = np.where(np.asarray(tracking, bool), TRACKING_EXPONENT, FIXED_EXPONENT)
    shape = max(elevation_sin, 0.0) ** exponent
    return np.asarray(pv_dc_kw, float) * PV_AC_PER_DC * np.asarray(clearness, float) * shape


def household_load_kw(base_kw: ArrayLike, local_hour: float, noise: ArrayLike) -> FloatArray:
    """A daily load shape: a morning and an evening bump on a base, times (1 + noise).

    Parameters
    ----------
    base_kw : overnight load [kW]
    local_hour : hour of the local day [h]
    noise : relative noise per asset [-]
    """
    shape = 1.0 + 0.6 * np.exp(-(((local_hour - 7.5) / 1.5) ** 2))
    shape += 0.9 * np.exp(-(((local_hour - 19.0) / 2.0) ** 2))
    return np.asarray(base_kw, float) * shape * (1.0 + np.asarray(noise, float))


def discharge_limit_kw(ratings: SiteRatings, pv_kw: ArrayLike) -> FloatArray:
    """The most the battery can discharge now, energy aside [kW]: the least of its continuous
    rating and the inverter headroom (DC-coupled: ``capacity_kw - pv_kw``, at least 0;
    AC-coupled: ``capacity_kw``).

    Parameters
    ----------
    ratings : the assets' ratings
    pv_kw : PV output through the inverter [kW]
    """
    shared = np.clip(ratings.capacity_kw - np.asarray(pv_kw, float), 0.0, None)
    headroom = np.where(ratings.dc_coupled, shared, ratings.capacity_kw)
    return np.minimum(ratings.continuous_kw, headroom)


def site_step(
    ratings: SiteRatings,
    soc_kwh: ArrayLike,
    pv_available: ArrayLike,
    load_kw: ArrayLike,
    target_kw: ArrayLike,
    self_consumption: ArrayLike,
    dt_h: float,
) -> SiteStep:
    """One step of each site: the battery follows its order, or without one charges from PV
    surplus and, in self-consumption, covers the load.

    Parameters
    ----------
    ratings : the assets' ratings
    soc_kwh : energy in the cells at the step's start [kWh]
    pv_available : PV the array offers (`pv_available_kw`) [kW]
    load_kw : household load [kW]
    target_kw : discharge an order asks for [kW], >= 0; NaN: no order
    self_consumption : True where, without an order, the battery covers the load
    dt_h : step length [h]

    Returns
    -------
    pv_kw : PV output [kW]: what the PV inverter passes (AC-coupled), or the PV the hybrid
        inverter passes plus what charged the battery on the DC bus (DC-coupled), so that
        ``pv_kw + battery_kw - load_kw`` is always the site's net power
    battery_kw : battery power [kW], + discharging, - charging
    soc_kwh : energy in the cells at the step's end [kWh]
    """
    r = ratings
    soc = np.asarray(soc_kwh, float)
    available = np.asarray(pv_available, float)
    load = np.asarray(load_kw, float)
    target = np.asarray(target_kw, float)
    ordered = ~np.isnan(target)
    one_way = np.sqrt(r.round_trip_efficiency)
    pv_through = np.minimum(available, r.pv_inverter_kw)  # PV passed without charging [kW]

    covering = np.asarray(self_consumption, bool) & ~ordered
    wanted = np.where(ordered, target, np.where(covering, load - pv_through, 0.0))
    above_reserve_kw = np.clip(soc - r.reserve_kwh, 0.0, None) * one_way / dt_h
    discharge = np.minimum(
        np.clip(wanted, 0.0, None),
        np.minimum(discharge_limit_kw(r, pv_through), above_reserve_kw),
    )

    # DC-coupled, all the array's PV reaches the DC bus, clipped or not.
    surplus = np.clip(np.where(r.dc_coupled, available, pv_through) - load, 0.0, None)
    charge_limit = np.where(
        r.dc_coupled, r.continuous_kw, np.minimum(r.continuous_kw, r.capacity_kw)
    )
    room_kw = np.clip(r.storage_kwh - soc, 0.0, None) / one_way / dt_h
    charge = np.minimum(surplus, np.minimum(charge_limit, room_kw))
    charge = np.where(ordered | (wanted > 0.0), 0.0, charge)

    pv = np.where(r.dc_coupled, np.minimum(available, r.pv_inverter_kw + charge), pv_through)
    new_soc = soc - discharge / one_way * dt_h + charge * one_way * dt_h
    return SiteStep(pv, discharge - charge, new_soc)
