"""Pure dispatch rules: what each asset can deliver over a window, how to share a request, and
what the answer to an instruction is.

The per-asset functions are vectorized (numpy arrays, one element per asset).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nexwatt_shared.battery import deliverable_kw
from nexwatt_shared.contracts import DispatchStatus
from nexwatt_shared.event_time import resource_clock

FloatArray = NDArray[np.float64]
SETPOINT_ROUNDING_MW = 0.5e-6  # setpoints are sent rounded to the watt [MW]


def dispatchable_kw(
    capacity_kw: ArrayLike,
    pv_kw: ArrayLike,
    soc_pct: ArrayLike,
    reserve_pct: ArrayLike,
    storage_kwh: ArrayLike,
    hours: float,
    telemetry_age_s: ArrayLike,
    max_age_s: float,
    max_ahead_s: float = 0.0,
) -> FloatArray:
    """Battery discharge each asset can hold for the rest of the window [kW]: what it can
    deliver (`nexwatt_shared.battery.deliverable_kw`: inverter headroom, energy above the
    reserve over ``hours``), and zero for an asset whose state is unknown: its newest
    telemetry is older than ``max_age_s`` (or missing: pass ``inf``), or ends more than
    ``max_ahead_s`` after now (a negative age: a clock running ahead, which would otherwise
    keep the asset "fresh" for as long as it is ahead).

    Parameters
    ----------
    capacity_kw, pv_kw, soc_pct, reserve_pct, storage_kwh : as in ``deliverable_kw``
        [kW], [kW], [%], [%], [kWh]
    hours : time from now to the window's end [h], > 0
    telemetry_age_s : event time now minus the newest telemetry's end [s]
    max_age_s : freshness limit [s]
    max_ahead_s : how far telemetry may end after now, for clocks that disagree a little [s]
    """
    limit = deliverable_kw(capacity_kw, pv_kw, soc_pct, reserve_pct, storage_kwh, hours)
    age_s = np.asarray(telemetry_age_s, float)
    return np.where((age_s <= max_age_s) & (age_s >= -max_ahead_s), limit, 0.0)


def telemetry_age_s(issued_s: float, telemetry_end_s: ArrayLike) -> FloatArray:
    """Each asset's telemetry age [s]: from the later of the instruction's issue time and the
    resource's clock (``nexwatt_shared.event_time.resource_clock``) to its newest interval's
    end. An instruction handled late (consumer lag, a restart) meets telemetry newer than its
    issue time, which is not "ahead"; an asset whose clock runs ahead of most of its resource
    gets a negative age.

    Parameters
    ----------
    issued_s : the instruction's issue time [s since the epoch]
    telemetry_end_s : each asset's newest interval end [s since the epoch]; -inf or NaN = none
        (an infinite age)
    """
    ends = np.asarray(telemetry_end_s, float)
    known = np.where(np.isfinite(ends), ends, np.nan)
    now_s = np.fmax(issued_s, resource_clock(known))
    return np.where(np.isfinite(ends), now_s - ends, np.inf)


def allocate(requested_kw: float, limits_kw: ArrayLike, min_setpoint_kw: float = 0.0) -> FloatArray:
    """Share ``requested_kw`` over assets in proportion to their limits, never above a limit.

    When the limits add up to less than the request every asset gets its limit; otherwise each
    gets ``limit * requested / sum(limits)``. A share below ``min_setpoint_kw`` is not worth a
    command: that asset is dropped and the request shared again over the rest, until every
    share is worth sending (each round drops at least one asset, so it ends).

    Parameters
    ----------
    requested_kw : total requested [kW], >= 0
    limits_kw : what each asset can hold [kW], >= 0
    min_setpoint_kw : smallest setpoint worth a command [kW]
    """
    limits = np.asarray(limits_kw, float)
    active = limits > 0
    while requested_kw > 0 and active.any():
        share = min(1.0, requested_kw / limits[active].sum())
        setpoints = np.where(active, limits * share, 0.0)
        too_small = active & (setpoints < min_setpoint_kw)
        if not too_small.any():
            return setpoints
        active &= ~too_small
    return np.zeros_like(limits)


def shortfall_reason(requested_mw: float, limits_kw: Sequence[float]) -> str | None:
    """Why the fleet can't meet the request in full (its limits add up to less), else None.

    Parameters
    ----------
    requested_mw : the request [MW]
    limits_kw : what each commanded asset can hold [kW]
    """
    total_kw = float(sum(limits_kw))
    return f"fleet limit {total_kw / 1000:.3f} MW" if total_kw < requested_mw * 1000 else None


def answer_status(
    requested_mw: float,
    confirmed_mw: float,
    commanded: int,
    acknowledged: int,
    shortfall: str | None,
) -> tuple[DispatchStatus, str | None]:
    """The answer to an instruction and why it is not a full confirmation.

    Parameters
    ----------
    requested_mw : the request [MW]
    confirmed_mw : sum of acknowledged setpoints [MW]
    commanded : assets sent a setpoint
    acknowledged : assets that answered (accepting or refusing) in time
    shortfall : why the fleet could not cover the request (``shortfall_reason``), or why
        nothing was commanded; None when it could

    Rejected when nothing was commanded or nothing acknowledged; confirmed when the
    acknowledged setpoints cover the request (to the watt each setpoint is rounded to);
    partial otherwise, naming the shortfall and the assets that did not answer.
    """
    if commanded == 0:
        return DispatchStatus.REJECTED, shortfall
    if confirmed_mw <= 0:
        return DispatchStatus.REJECTED, "no asset acknowledged its setpoint in time"
    if confirmed_mw + commanded * SETPOINT_ROUNDING_MW >= requested_mw:
        return DispatchStatus.CONFIRMED, shortfall
    notes = [shortfall] if shortfall else []
    if acknowledged < commanded:
        notes.append(
            f"{commanded - acknowledged} of {commanded} assets did not acknowledge in time"
        )
    return DispatchStatus.PARTIAL, "; ".join(notes) or "assets acknowledged less than commanded"
