"""Pure, vectorized physics of the simulated fleet (numpy arrays: one element per asset)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
STEP_S = 60  # physics resolution [s]; every interval length is a multiple of it
LOAD_NOISE = 0.05  # relative standard deviation of household load, drawn per asset and step [-]


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


def pv_output_kw(peak_kw: ArrayLike, elevation_sin: float) -> FloatArray:
    """Clear-sky-shaped PV output: ``peak * sin(elevation)^1.15``, zero below the horizon.

    Parameters
    ----------
    peak_kw : output with the sun overhead [kW]
    elevation_sin : sine of the sun's elevation [-]
    """
    return np.asarray(peak_kw, float) * max(elevation_sin, 0.0) ** 1.15


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


def battery_step(
    target_kw: ArrayLike,
    capacity_kw: ArrayLike,
    pv_kw: ArrayLike,
    soc_kwh: ArrayLike,
    reserve_kwh: ArrayLike,
    dt_h: float,
) -> tuple[FloatArray, FloatArray]:
    """Discharge toward ``target_kw`` within the inverter's headroom and the energy above the
    reserve; return (battery power [kW], new state of charge [kWh]).

    Parameters
    ----------
    target_kw : wanted discharge [kW], >= 0
    capacity_kw : inverter rating shared with PV [kW]
    pv_kw : PV output this step [kW]
    soc_kwh, reserve_kwh : stored energy and the part kept for the household [kWh]
    dt_h : step length [h]
    """
    headroom = np.clip(np.asarray(capacity_kw, float) - np.asarray(pv_kw, float), 0.0, None)
    energy_kw = np.clip((np.asarray(soc_kwh, float) - reserve_kwh) / dt_h, 0.0, None)
    power = np.minimum(np.minimum(np.asarray(target_kw, float), headroom), energy_kw)
    return power, np.asarray(soc_kwh, float) - power * dt_h
