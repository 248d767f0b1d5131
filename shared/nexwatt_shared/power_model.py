"""What a solar + storage asset's battery can add at the site, from its ratings and topology:
the one rule the capacity model and dispatch share (the fleet simulator has physics of its own,
so the tests do not agree with this rule by construction).

Conventions:

- Units are in the names: `_kw` power [kW], `_kwh` energy [kWh], `_pct` percent [0-100],
  `hours` [h]; `round_trip_efficiency` is a fraction (0, 1].
- Coupling decides which limit PV shares. DC-coupled: battery and PV feed one hybrid inverter
  (SolarEdge StorEdge with an SE7600), so the battery gets only the inverter's AC headroom above
  the PV already flowing through it. AC-coupled: the battery has its own inverter (SMA Sunny
  Boy Storage beside a PV inverter), so PV does not limit it. `inverter_ac_kw` is the AC rating
  of the inverter the battery discharges through: the hybrid inverter when DC-coupled, the
  battery inverter when AC-coupled (a separate PV inverter's rating plays no part).
- Battery power ratings are taken as vendors quote them, as what the battery system delivers:
  no efficiency is applied to them. Efficiency applies to energy: `usable_kwh` is the energy
  drawn from the battery, and what reaches the site is that times the one-way discharge
  efficiency, sqrt(round trip) - the common convention of splitting a round-trip efficiency
  evenly between charge and discharge when only the round trip is known.
- `battery_peak_kw` is stored and checked but not used: vendors quote peak power for seconds
  (typically about 10 s), while the platform's shortest dispatch and telemetry interval is
  5 minutes and capacity events last hours, so crediting it would promise power the battery
  cannot hold. A future product with second-scale events would be the place to use it.
- An unknown reading (NaN) credits nothing: NaN state of charge gives no energy, and NaN PV on
  a DC-coupled asset gives no headroom. Deliverable power is never below 0.
- Ratings are vectorized: each field is a number or an array over assets, broadcast together.
  Impossible ratings are refused with ValueError naming the field (and the first asset's
  index): negative or non-finite ratings, a round trip outside (0, 1], a reserve outside
  [0, 100], peak below continuous power, or continuous power above `MAX_C_RATE` x usable energy.
  A reserve of 100 % (a battery kept for backup only) is possible, and credits nothing;
  onboarding refuses it for a new enrolment, as such a battery has nothing to offer.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Nexwatt plausibility bound, not a vendor figure: home batteries discharge at about 0.3-1 C
# (5 kW from 9.8 kWh is 0.5 C); 10 C means a registration confused kW and kWh or their scale.
MAX_C_RATE = 10.0  # [1/h] battery_continuous_kw / usable_kwh

_NON_NEGATIVE = (
    "battery_continuous_kw",
    "battery_peak_kw",
    "usable_kwh",
    "pv_dc_kw",
    "inverter_ac_kw",
)


class Coupling(StrEnum):
    """How the battery connects to the site."""

    AC = "ac"  # its own inverter, beside the PV inverter
    DC = "dc"  # shares one hybrid inverter with the PV


@dataclass(frozen=True, eq=False)
class AssetRatings:
    """An asset's ratings, as registered; each field a number or an array over assets.

    Construction checks them (ValueError naming the field) and stores each as a read-only
    numpy array. `pv_dc_kw` (PV array nameplate, DC) is carried for accreditation; the power
    model uses measured PV output instead.
    """

    battery_continuous_kw: ArrayLike  # power the battery holds indefinitely [kW]
    battery_peak_kw: ArrayLike  # short-burst power (seconds) [kW]; stored, not credited
    usable_kwh: ArrayLike  # energy the battery can give from full to empty [kWh]
    round_trip_efficiency: ArrayLike  # AC in to AC out [-], in (0, 1]
    coupling: Coupling | ArrayLike  # Coupling values ("ac", "dc")
    pv_dc_kw: ArrayLike  # PV array nameplate [kW DC]
    inverter_ac_kw: ArrayLike  # rating of the inverter the battery discharges through [kW AC]
    backup_reserve_pct: ArrayLike  # state of charge kept for the household [%], in [0, 100]

    def __post_init__(self) -> None:
        for field in fields(self):
            dtype = None if field.name == "coupling" else float
            value = np.array(getattr(self, field.name), dtype=dtype)
            value.flags.writeable = False
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the field (and first asset) of any impossible rating."""
        try:
            np.broadcast_shapes(*(np.shape(getattr(self, f.name)) for f in fields(self)))
        except ValueError:
            shapes = {f.name: np.shape(getattr(self, f.name)) for f in fields(self)}
            raise ValueError(f"ratings of different numbers of assets: {shapes}") from None
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            _require(name, np.isfinite(value) & (value >= 0), "must be a finite number >= 0")
        rte = self.round_trip_efficiency
        _require("round_trip_efficiency", (rte > 0) & (rte <= 1), "must be in (0, 1]")
        reserve = self.backup_reserve_pct
        _require("backup_reserve_pct", (reserve >= 0) & (reserve <= 100), "must be in [0, 100]")
        for field, ok, must in power_rules(
            self.battery_continuous_kw, self.battery_peak_kw, self.usable_kwh
        ):
            _require(field, ok, must)
        couplings = [c.value for c in Coupling]
        _require("coupling", np.isin(self.coupling, couplings), f"must be one of {couplings}")


def power_rules(
    continuous_kw: Any, peak_kw: Any, usable_kwh: Any
) -> tuple[tuple[str, Any, str], ...]:
    """The rules between a battery's power ratings, as (field, ok, must): `ok` a bool for
    numbers, a bool array for arrays. One record's check (`contracts.BatteryRatings`) takes
    them on numbers, without building AssetRatings for it."""
    return (
        ("battery_peak_kw", peak_kw >= continuous_kw, "must not be below battery_continuous_kw"),
        (
            "battery_continuous_kw",
            continuous_kw <= MAX_C_RATE * usable_kwh,
            f"must not exceed {MAX_C_RATE:g} x usable_kwh",
        ),
    )


def _require(field: str, ok: ArrayLike, must: str) -> None:
    """Raise ValueError("<field> <must>") unless all of `ok`, naming the first failing asset."""
    ok = np.asarray(ok)
    if not ok.all():
        where = f" (asset {', '.join(map(str, np.argwhere(~ok)[0]))})" if ok.ndim else ""
        raise ValueError(f"{field} {must}{where}")


def default_battery_kw(inverter_ac_kw: ArrayLike, usable_kwh: ArrayLike) -> NDArray[np.float64]:
    """The battery power [kW] of an asset registered without one: the inverter's rating (what
    the platform assumed before batteries had ratings), within MAX_C_RATE x usable energy (0
    without a battery)."""
    return np.minimum(np.asarray(inverter_ac_kw, float), MAX_C_RATE * np.asarray(usable_kwh, float))


def discharge_efficiency(round_trip_efficiency: ArrayLike) -> NDArray[np.float64]:
    """One-way discharge efficiency [-]: sqrt(round trip), the loss split evenly both ways."""
    return np.sqrt(np.asarray(round_trip_efficiency, float))


def deliverable_kw(
    ratings: AssetRatings, pv_ac_kw: ArrayLike, soc_pct: ArrayLike, hours: float
) -> NDArray[np.float64]:
    """AC power [kW] each asset's battery can add at the site and hold for `hours`.

    The least of:
    - the battery's continuous rating, `battery_continuous_kw`;
    - the inverter headroom: `inverter_ac_kw - pv_ac_kw` when DC-coupled (PV shares the
      inverter), `inverter_ac_kw` when AC-coupled (PV has its own);
    - the energy above the reserve over the time, delivered through the discharge losses:
      `(soc_pct - backup_reserve_pct) / 100 * usable_kwh * sqrt(round_trip_efficiency) / hours`;
    never below 0. NaN `soc_pct`, or NaN `pv_ac_kw` on a DC-coupled asset, credits 0.

    Parameters
    ----------
    ratings : the assets' ratings
    pv_ac_kw : PV output [kW AC], >= 0 or NaN (unknown), broadcast over assets
    soc_pct : battery state of charge [%], in [0, 100] or NaN (unknown)
    hours : how long the discharge must last [h], > 0
    """
    if not (np.isfinite(hours) and hours > 0):
        raise ValueError(f"hours must be a positive number, got {hours}")
    pv = np.asarray(pv_ac_kw, float)
    soc = np.asarray(soc_pct, float)
    _require("pv_ac_kw", np.isnan(pv) | (pv >= 0), "must be >= 0 or NaN")
    _require("soc_pct", np.isnan(soc) | ((soc >= 0) & (soc <= 100)), "must be in [0, 100] or NaN")

    pv_through_inverter = np.where(ratings.coupling == Coupling.DC, pv, 0.0)
    headroom_kw = np.where(
        np.isnan(pv_through_inverter), 0.0, ratings.inverter_ac_kw - pv_through_inverter
    )
    above_reserve_kwh = (soc - ratings.backup_reserve_pct) / 100.0 * ratings.usable_kwh
    energy_kw = np.where(
        np.isnan(soc),
        0.0,
        above_reserve_kwh * discharge_efficiency(ratings.round_trip_efficiency) / hours,
    )
    limit_kw = np.minimum(np.minimum(ratings.battery_continuous_kw, headroom_kw), energy_kw)
    return np.clip(limit_kw, 0.0, None)
