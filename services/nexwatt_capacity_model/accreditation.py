"""Accreditation: the unforced capacity (UCAP) PJM would accredit an aggregator's assets for a
delivery year, per asset and summed per resource, cohort and portfolio.

A pure library; the capacity model's books accredit each asset with it (`domain.accredit`).

Conventions:

- UCAP [MW] = ICAP [MW] x the ELCC class rating of the asset's class for the delivery year
  [-]. ICAP is what the class rating applies to: a PV array's nameplate, a demand resource's
  load reduction, a battery's discharge power, limited below 4 hours of duration (see
  `storage_icap_mw`). Which nameplate (AC or DC) counts for PV is the caller's choice.
- A delivery year runs from June 1 to May 31 and is named by its two calendar years, "2026/27".
- Class ratings are data (`ElccClassRatings`), fractions of nameplate (the published percent /
  100). The values are a secondary transcription of PJM's published ratings, not read from a
  PJM report: verify them before selling capacity on them.
- A battery's duration [h] = usable energy [MWh] / discharge power [MW]. Usable energy is what
  events may draw on, e.g. above a backup reserve (13.5 kWh keeping 20 % is 10.8 kWh): the
  caller's choice.
- Totals are sums in float64 rounded once (math.fsum): the per-group totals of `ucap_by` add up
  to its total within a few units in the last place, far inside 1e-6 MW.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class ElccClass(StrEnum):
    """PJM ELCC classes of the assets Nexwatt aggregates."""

    STORAGE_4H = "storage-4h"
    STORAGE_6H = "storage-6h"
    STORAGE_8H = "storage-8h"
    STORAGE_10H = "storage-10h"
    SOLAR_FIXED = "solar-fixed"
    SOLAR_TRACKING = "solar-tracking"
    DEMAND_RESOURCE = "demand-resource"  # load reduction


# The storage classes, longest first, with the hours a battery must hold its ICAP [h].
STORAGE_CLASS_HOURS: tuple[tuple[ElccClass, float], ...] = (
    (ElccClass.STORAGE_10H, 10.0),
    (ElccClass.STORAGE_8H, 8.0),
    (ElccClass.STORAGE_6H, 6.0),
    (ElccClass.STORAGE_4H, 4.0),
)
SHORTEST_CLASS_H = 4.0  # [h]
# A duration within this relative distance below a class's hours meets it: energy / power in
# floats can land a hair short (0.6 MWh / 0.1 MW = 5.999999999999999 h), and 1e-9 of 10 h is
# 36 microseconds, far below anything a battery is rated to.
CLASS_HOURS_RTOL = 1e-9
SOLAR_CLASSES = (ElccClass.SOLAR_FIXED, ElccClass.SOLAR_TRACKING)


@dataclass(frozen=True)
class ElccClassRatings:
    """ELCC class ratings by delivery year ("2026/27") and class, as fractions of ICAP [-]."""

    by_delivery_year: Mapping[str, Mapping[ElccClass, float]]
    source: str

    def rating(self, elcc_class: ArrayLike, delivery_year: str) -> np.ndarray:
        """The rating of each class in `elcc_class` (one class or an array of them) in
        `delivery_year` [-], shaped like `elcc_class`. ValueError for a delivery year or a
        class without a rating."""
        ratings = self.by_delivery_year.get(delivery_year)
        if ratings is None:
            raise ValueError(
                f"no ELCC class ratings for delivery year {delivery_year!r}; "
                f"known: {sorted(self.by_delivery_year)}"
            )
        classes = np.asarray(elcc_class, dtype=str)
        names, index = np.unique(classes, return_inverse=True)
        unknown = [str(n) for n in names if n not in ratings]
        if unknown:
            raise ValueError(f"no ELCC class rating in {delivery_year} for {unknown}")
        return np.array([ratings[n] for n in names], dtype=float)[index].reshape(classes.shape)


# [% of ICAP] per class for 2025/26, 2026/27, 2027/28: laid out as the table transcribed.
_YEARS = ("2025/26", "2026/27", "2027/28")
_PERCENT = {
    ElccClass.STORAGE_4H: (55, 50, 58),
    ElccClass.STORAGE_6H: (65, 58, 67),
    ElccClass.STORAGE_8H: (68, 62, 70),
    ElccClass.STORAGE_10H: (77, 72, 78),
    ElccClass.SOLAR_FIXED: (10, 8, 7),
    ElccClass.SOLAR_TRACKING: (14, 11, 8),
    ElccClass.DEMAND_RESOURCE: (77, 69, 92),
}
PJM_ELCC_CLASS_RATINGS = ElccClassRatings(
    by_delivery_year=MappingProxyType(
        {
            year: MappingProxyType({c: percent[i] / 100 for c, percent in _PERCENT.items()})
            for i, year in enumerate(_YEARS)
        }
    ),
    source=(
        "PJM ELCC class ratings for the 2025/26, 2026/27 and 2027/28 Base Residual Auctions, "
        "transcribed from Nexwatt's reference notes: a secondary transcription, not read from "
        "PJM's ELCC class rating reports; verify before relying on it"
    ),
)


def _nonnegative(values: ArrayLike, what: str) -> np.ndarray:
    """`values` as a float array; ValueError unless each is finite and >= 0."""
    array = np.asarray(values, dtype=float)
    bad = ~(np.isfinite(array) & (array >= 0))
    if np.any(bad):
        raise ValueError(f"{what} must be finite and >= 0, got {array[bad][0]}")
    return array


def ucap_mw(
    icap_mw: ArrayLike,
    elcc_class: ArrayLike,
    delivery_year: str,
    ratings: ElccClassRatings = PJM_ELCC_CLASS_RATINGS,
) -> np.ndarray:
    """UCAP = ICAP x the class rating of `delivery_year` [MW], per asset.

    Args:
        icap_mw: each asset's ICAP [MW], >= 0: PV nameplate, demand resource load reduction,
            or for a battery `storage_icap_mw` (or use `storage_ucap_mw`)
        elcc_class: each asset's ElccClass (its value, e.g. "solar-fixed")
    Arguments broadcast: 10 MW of fixed PV in 2026/27 is 10 x 0.08 = 0.8 MW.
    """
    icap = _nonnegative(icap_mw, "ICAP [MW]")
    return icap * ratings.rating(elcc_class, delivery_year)


def storage_duration_h(power_mw: ArrayLike, energy_mwh: ArrayLike) -> np.ndarray:
    """How long a battery holds its power: usable energy / discharge power [h], 0 for a
    battery of zero power (it holds nothing). Arguments broadcast, each finite and >= 0."""
    power, energy = np.broadcast_arrays(
        _nonnegative(power_mw, "battery power [MW]"),
        _nonnegative(energy_mwh, "battery energy [MWh]"),
    )
    return np.divide(energy, power, out=np.zeros(power.shape), where=power > 0)


def storage_class(duration_h: ArrayLike) -> np.ndarray:
    """Each battery's storage class: the longest of 4/6/8/10 hours its duration [h] meets
    (7.5 h is the 6-hour class, 12 h the 10-hour one), and the 4-hour class below 4 hours,
    where `storage_icap_mw` derates the battery instead. An array of ElccClass values."""
    duration = _nonnegative(duration_h, "battery duration [h]")
    return np.select(
        [duration >= hours * (1 - CLASS_HOURS_RTOL) for _, hours in STORAGE_CLASS_HOURS],
        [elcc_class.value for elcc_class, _ in STORAGE_CLASS_HOURS],
        default=ElccClass.STORAGE_4H.value,
    )


def storage_icap_mw(power_mw: ArrayLike, energy_mwh: ArrayLike) -> np.ndarray:
    """A battery's ICAP: the power it can hold for the shortest class's 4 hours,
    min(power, energy / 4 h) [MW].

    A battery of 4 hours or more counts its full power. A shorter one (Nexwatt's rule for
    sub-4-hour storage) counts as the 4-hour battery it can act as: over 4 hours it can
    sustain energy / 4 h, so a 5 kW / 9.8 kWh battery (1.96 h) is 9.8 / 4 = 2.45 kW of
    4-hour storage. This is the same as derating its power in proportion to its duration
    d = energy / power, with r4 the 4-hour class rating:

        UCAP = min(P, E / 4) x r4 = P x min(1, d / 4) x r4

    so a 2-hour battery counts as half a 4-hour one of the same power (5 kW x 1.96 / 4 x 0.50
    = 1.225 kW in 2026/27), and UCAP is continuous at 4 hours. Why: ELCC rates a class on
    holding its power through the class's hours; a shorter battery cannot hold its full power
    that long, but can hold energy / 4 h. PJM's earlier "10-hour rule" valued
    duration-limited storage the same way (the power it can give for 10 continuous hours).
    The rule is Nexwatt's, not read from PJM's rules: verify before selling on it.

    Zero power or zero energy is 0 MW: nothing to accredit. Arguments broadcast, each finite
    and >= 0 (ValueError otherwise).
    """
    power = _nonnegative(power_mw, "battery power [MW]")
    energy = _nonnegative(energy_mwh, "battery energy [MWh]")
    return np.minimum(power, energy / SHORTEST_CLASS_H)


def storage_ucap_mw(
    power_mw: ArrayLike,
    energy_mwh: ArrayLike,
    delivery_year: str,
    ratings: ElccClassRatings = PJM_ELCC_CLASS_RATINGS,
) -> np.ndarray:
    """A battery's UCAP [MW]: its ICAP (`storage_icap_mw`) x the rating of its storage class
    (`storage_class`) in `delivery_year`. 1 MW / 4 MWh in 2026/27 is 1 x 0.50 = 0.5 MW;
    1 MW / 6 MWh in 2027/28 is 1 x 0.67 = 0.67 MW. Arguments broadcast."""
    return ucap_mw(
        storage_icap_mw(power_mw, energy_mwh),
        storage_class(storage_duration_h(power_mw, energy_mwh)),
        delivery_year,
        ratings,
    )


def hybrid_ucap_mw(
    pv_mw: ArrayLike,
    solar_class: ArrayLike,
    power_mw: ArrayLike,
    energy_mwh: ArrayLike,
    delivery_year: str,
    ratings: ElccClassRatings = PJM_ELCC_CLASS_RATINGS,
) -> np.ndarray:
    """A solar + storage site's UCAP [MW]: its PV by its solar class plus its battery by its
    storage class, each accredited as if alone.

    8 kW of fixed PV with a 5 kW / 9.8 kWh battery in 2026/27: 8 x 0.08 + 1.225 = 1.865 kW. A
    site without a battery has power and energy 0, one without PV pv_mw 0. Summing the parts
    is Nexwatt's choice: PJM has hybrid rules of its own (e.g. output counted only up to the
    site's interconnection rights, here a shared inverter's rating), which this does not
    apply. `solar_class` must be solar-fixed or solar-tracking (ValueError otherwise).
    Arguments broadcast.
    """
    classes = np.asarray(solar_class, dtype=str)
    if not np.all(np.isin(classes, [c.value for c in SOLAR_CLASSES])):
        raise ValueError(f"a hybrid's PV is solar-fixed or solar-tracking, got {classes}")
    return ucap_mw(pv_mw, classes, delivery_year, ratings) + storage_ucap_mw(
        power_mw, energy_mwh, delivery_year, ratings
    )


class UcapTotals(NamedTuple):
    """UCAP summed per group and in all [MW]."""

    by_group: dict[Hashable, float]  # in the order the groups first appear
    total_mw: float


def ucap_by(group_keys: Sequence[Hashable], asset_ucap_mw: ArrayLike) -> UcapTotals:
    """Per-asset UCAP [MW] summed per group (resource, cohort, or any hashable key such as a
    (resource, cohort) pair) and in all, each with math.fsum: every sum is the exact sum
    rounded once, so the groups add up to the total to float precision.

    ValueError unless there is one key per asset and each UCAP is finite and >= 0.
    """
    values = _nonnegative(asset_ucap_mw, "UCAP [MW]")
    keys = list(group_keys)
    if values.ndim != 1 or values.size != len(keys):
        raise ValueError(f"{len(keys)} group keys for UCAP of shape {values.shape}")
    members: dict[Hashable, list[float]] = {}
    for key, mw in zip(keys, values.tolist(), strict=True):
        members.setdefault(key, []).append(mw)
    by_group = {key: math.fsum(group) for key, group in members.items()}
    return UcapTotals(by_group=by_group, total_mw=math.fsum(values.tolist()))
