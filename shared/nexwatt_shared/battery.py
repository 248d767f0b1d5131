"""What a solar + storage asset can deliver: the one rule the capacity model and dispatch share."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def deliverable_kw(
    capacity_kw: ArrayLike,
    pv_kw: ArrayLike,
    soc_pct: ArrayLike,
    reserve_pct: ArrayLike,
    storage_kwh: ArrayLike,
    hours: float,
) -> NDArray[np.float64]:
    """Battery discharge each asset can hold for ``hours``, vectorized over assets.

    The least of the inverter's headroom above what PV already uses, ``capacity_kw - pv_kw``
    [kW], and the energy above the backup reserve spread over the time,
    ``(soc_pct - reserve_pct) / 100 * storage_kwh / hours`` [kW]; never below 0, so an asset
    under its reserve adds nothing and takes nothing from others. An unknown state of charge
    (NaN) credits no energy.

    Parameters
    ----------
    capacity_kw : inverter AC rating [kW]
    pv_kw : PV output [kW]
    soc_pct : battery state of charge [%]
    reserve_pct : state of charge kept for the household [%]
    storage_kwh : usable battery energy [kWh]
    hours : how long the discharge must last [h], > 0
    """
    if hours <= 0:
        raise ValueError("hours must be positive")
    headroom_kw = np.asarray(capacity_kw, float) - np.asarray(pv_kw, float)
    soc = np.asarray(soc_pct, float)
    usable_kwh = np.where(
        np.isnan(soc),
        0.0,
        (soc - np.asarray(reserve_pct, float)) / 100.0 * np.asarray(storage_kwh, float),
    )
    return np.clip(np.minimum(headroom_kw, usable_kwh / hours), 0.0, None)
