"""Capacity money: PJM capacity revenue, performance charges and bonuses, and splitting a
resource's money among cohorts and subscribers to the cent.

A pure library; settlement (`nexwatt_settlement.domain`) prices each window with it.

Conventions:

- A delivery year runs from June 1 to May 31 and is named by its two calendar years, "2026/27".
  Capacity revenue [$] = clearing price [$/MW-day] x cleared UCAP [MW] x days. A delivery year
  has 366 days when the February it contains has a 29th (2027/28: Feb 29, 2028), else 365.
- Performance is assessed in Performance Assessment Intervals (PAIs). Expected performance
  [MW] = committed UCAP [MW] x balancing ratio [-]. Shortfall [MW] = expected - actual:
  positive is under-performance, charged at a non-performance rate; negative is
  over-performance, paid a bonus rate. Both rates are data given by the caller [$/MW per
  interval]; this module sets no value for them.
- Capacity deficiency [MW] = committed UCAP - accredited UCAP, when positive: a resource whose
  accreditation falls below what it sold. It is a separate quantity from a PAI shortfall, and
  this module does not price it.
- Money is computed in dollars as floats [$], then converted to integer cents once, rounding
  half to even, and split in integer cents: the parts add up exactly to the total.
- These rules and prices follow secondary descriptions of PJM's capacity market (Reliability
  Pricing Model, Capacity Performance), not the PJM tariff (Attachment DD) or manuals: verify
  them before settling real money.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

NOT_FROM_TARIFF = "not read from the PJM tariff or manuals; verify before relying on it"


@dataclass(frozen=True)
class ClearingPrices:
    """Capacity auction clearing prices by delivery year ("2026/27") [$/MW-day]."""

    by_delivery_year: Mapping[str, float]
    source: str

    def for_year(self, year: str) -> float:
        """The clearing price of delivery year `year` [$/MW-day]; ValueError when unknown."""
        if year not in self.by_delivery_year:
            raise ValueError(f"no clearing price for delivery year {year!r}")
        return self.by_delivery_year[year]


CLEARING_PRICES_USD_PER_MW_DAY = ClearingPrices(
    by_delivery_year=MappingProxyType(
        {"2024/25": 28.92, "2025/26": 269.92, "2026/27": 329.17, "2027/28": 333.44}
    ),
    source=(
        "PJM RTO Base Residual Auction clearing prices as commonly reported; 2026/27 and "
        "2027/28 cleared at the price cap. Secondary: " + NOT_FROM_TARIFF
    ),
)


@dataclass(frozen=True)
class PerformanceRates:
    """What a shortfall costs and an over-performance earns, per MW per 5-minute interval."""

    charge_usd_per_mw_interval: float
    bonus_usd_per_mw_interval: float
    source: str

    @classmethod
    def from_net_cone(
        cls, net_cone_usd_per_mw_day: float, days: int, bonus_share: float, source: str
    ) -> PerformanceRates:
        """The charge rate as Net CONE spread over 360 hours of PAIs, per 5-minute interval:
        Net CONE [$/MW-day] x days / 360 / 12; the bonus rate a share of it [-]."""
        charge = net_cone_usd_per_mw_day * days / 360.0 / 12.0
        return cls(charge, charge * bonus_share, source)


# Nexwatt placeholders, not PJM's published values: Net CONE $300/MW-day over a 365-day year
# (25.35 $/MW per interval), and a bonus at the charge rate (PJM pays bonuses out of the
# charges collected, so the real rate is at most this).
PLACEHOLDER_PERFORMANCE_RATES = PerformanceRates.from_net_cone(
    300.0,
    365,
    1.0,
    source="Nexwatt placeholder: Net CONE $300/MW-day, bonus at the charge rate; "
    + NOT_FROM_TARIFF,
)


def capacity_revenue_usd(
    price_usd_per_mw_day: ArrayLike, cleared_ucap_mw: ArrayLike, days: ArrayLike
) -> np.ndarray:
    """Capacity revenue = price x cleared UCAP x days [$]. Arguments broadcast."""
    return (
        np.asarray(price_usd_per_mw_day, dtype=float)
        * np.asarray(cleared_ucap_mw, dtype=float)
        * np.asarray(days, dtype=float)
    )


def expected_performance_mw(committed_ucap_mw: ArrayLike, balancing_ratio: ArrayLike) -> np.ndarray:
    """What a resource owes in a PAI: committed UCAP x balancing ratio [MW].

    The commonly cited form of PJM's Expected Performance for a committed capacity resource;
    not checked against the tariff. It is taken on the committed UCAP, not the accredited: in
    a PJM staff example a unit commits 90 MW, its accreditation falls to 80 MW, and producing
    80 MW in a PAI is 10 MW of non-performance, which is 90 x 1.0 - 80 with a balancing ratio
    of 1.0 (the ratio is our assumption). The balancing ratio [-] is given by the caller, one
    per PAI. Arguments broadcast.
    """
    return np.asarray(committed_ucap_mw, dtype=float) * np.asarray(balancing_ratio, dtype=float)


def performance_shortfall_mw(expected_mw: ArrayLike, actual_mw: ArrayLike) -> np.ndarray:
    """Expected - actual performance in a PAI [MW]: positive is a shortfall, negative is
    over-performance. Arguments broadcast."""
    return np.asarray(expected_mw, dtype=float) - np.asarray(actual_mw, dtype=float)


def capacity_deficiency_mw(
    committed_ucap_mw: ArrayLike, accredited_ucap_mw: ArrayLike
) -> np.ndarray:
    """UCAP committed beyond the resource's accreditation: max(committed - accredited, 0) [MW].
    Arguments broadcast."""
    return np.maximum(
        np.asarray(committed_ucap_mw, dtype=float) - np.asarray(accredited_ucap_mw, dtype=float),
        0.0,
    )


def non_performance_charge_usd(
    shortfall_mw: ArrayLike, rate_usd_per_mw_interval: ArrayLike, intervals: ArrayLike
) -> np.ndarray:
    """The charge for a shortfall held over `intervals` PAIs: max(shortfall, 0) x rate x
    intervals [$], >= 0; over-performance is charged nothing.

    The rate [$/MW per interval] is the caller's: it is commonly described as derived from
    Net CONE spread over 360 intervals, which this module does not compute. With one shortfall
    per PAI, pass intervals=1 and sum. Arguments broadcast.
    """
    return (
        np.maximum(np.asarray(shortfall_mw, dtype=float), 0.0)
        * np.asarray(rate_usd_per_mw_interval, dtype=float)
        * np.asarray(intervals, dtype=float)
    )


def bonus_usd(
    shortfall_mw: ArrayLike, rate_usd_per_mw_interval: ArrayLike, intervals: ArrayLike
) -> np.ndarray:
    """The bonus for over-performance held over `intervals` PAIs: max(-shortfall, 0) x rate x
    intervals [$], >= 0; a shortfall earns nothing.

    The bonus rate [$/MW per interval] is the caller's. Arguments broadcast.
    """
    return (
        np.maximum(-np.asarray(shortfall_mw, dtype=float), 0.0)
        * np.asarray(rate_usd_per_mw_interval, dtype=float)
        * np.asarray(intervals, dtype=float)
    )


def to_cents(amount_usd: Decimal | float | int | str) -> int:
    """Dollars to whole cents, rounding half to even: 0.125 -> 12, 0.135 -> 14, -0.125 -> -12.

    A float is taken as the shortest decimal that prints as it (str(2.675) is "2.675", so 268
    cents, though the binary value is a hair below 2.675); pass a Decimal or a str for exact
    amounts. Half to even does not drift up or down over many roundings. NaN and infinities
    raise ValueError.
    """
    amount = Decimal(str(amount_usd))
    if not amount.is_finite():
        raise ValueError(f"not an amount: {amount_usd!r}")
    return int((amount * 100).to_integral_value(rounding=ROUND_HALF_EVEN))


def _weights(weights: ArrayLike) -> np.ndarray:
    """`weights` as a 1-D float array, each finite and >= 0."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {w.shape}")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError(f"weights must be finite and >= 0, got {w}")
    return w


def split_cents(total_cents: int, weights: ArrayLike) -> np.ndarray:
    """Split `total_cents` in proportion to `weights`, by the largest-remainder method: the
    parts (int64 cents) add up exactly to the total.

    Each part first gets its exact share rounded toward zero; the cents left over go one each
    to the parts with the largest fractional remainders, ties to the lower index: 100 cents
    over weights (1, 1, 1) is (34, 33, 33). Each part is therefore within 1 cent of its exact
    share, and a zero weight gets 0. A negative total (a charge) is split as its magnitude and
    negated, so split_cents(-n, w) == -split_cents(n, w).

    The arithmetic is exact: each float weight is taken as the rational number it holds, so
    the result does not depend on floating-point rounding, and scaling all weights by a power
    of 2 leaves it unchanged. The weights are the caller's choice (e.g. accredited share x
    delivered energy). All-zero weights raise ValueError; a non-integer total raises TypeError.
    """
    total = operator.index(total_cents)
    w = _weights(weights)
    rationals = [Fraction(x) for x in w.tolist()]
    common_denominator = max(r.denominator for r in rationals)  # all powers of 2
    units = [r.numerator * (common_denominator // r.denominator) for r in rationals]
    total_units = sum(units)
    if total_units == 0:
        raise ValueError("weights are all zero: no one to split the money among")
    magnitude = abs(total)
    quotients, remainders = zip(*(divmod(magnitude * u, total_units) for u in units), strict=True)
    # leftover = the sum of remainder / total_units, each below 1: there are at least as many
    # nonzero remainders as cents left over, so a zero weight never gets one.
    leftover = magnitude - sum(quotients)
    parts = np.array(quotients, dtype=np.int64)
    by_remainder = sorted(range(len(units)), key=lambda i: (-remainders[i], i))
    parts[by_remainder[:leftover]] += 1
    return parts if total >= 0 else -parts


def attribute_usd(total_usd: Decimal | float | int | str, weights: ArrayLike) -> np.ndarray:
    """Split a dollar amount in proportion to `weights`: the parts are int64 CENTS adding up to
    to_cents(total_usd) (rounded half to even) exactly. See split_cents."""
    return split_cents(to_cents(total_usd), weights)


class CohortSplit(NamedTuple):
    """A resource's money split to cohorts, then to each cohort's subscribers [cents]."""

    cohort_cents: np.ndarray  # (n_cohorts,), adds up to the resource total
    subscriber_cents: tuple[np.ndarray, ...]  # one per cohort, each adding up to its cohort's


def split_cents_by_cohort(
    total_cents: int, cohort_weights: ArrayLike, subscriber_weights: Sequence[ArrayLike]
) -> CohortSplit:
    """Split a resource's total to cohorts by `cohort_weights`, then each cohort's part to its
    subscribers by `subscriber_weights[c]`, both with split_cents: the subscribers' cents add
    up exactly to their cohort's, and the cohorts' to the total.

    Both weightings are the caller's choice: cohort weights need not be the sums of their
    subscribers' weights (e.g. a cohort's accredited share x delivered energy, and within it
    each subscriber's delivered energy). A cohort of zero weight gets 0 cents and pays 0 to
    each subscriber, whose weights may then all be zero; any other cohort whose subscriber
    weights are all zero raises ValueError.
    """
    cohort_w = _weights(cohort_weights)
    if len(subscriber_weights) != cohort_w.size:
        raise ValueError(
            f"{cohort_w.size} cohort weights but {len(subscriber_weights)} subscriber weightings"
        )
    cohort_cents = split_cents(total_cents, cohort_w)
    subscriber_cents = tuple(
        split_cents(int(cents), weights)
        if cohort_weight > 0
        else np.zeros(_weights(weights).size, dtype=np.int64)
        for cents, cohort_weight, weights in zip(
            cohort_cents, cohort_w, subscriber_weights, strict=True
        )
    )
    return CohortSplit(cohort_cents=cohort_cents, subscriber_cents=subscriber_cents)
