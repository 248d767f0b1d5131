"""A resource's capacity revenue split to its cohorts and subscribers by accredited share, to
the cent.

A pure library over `money` (arrays in, cents out); `nexwatt-admin settlements revenue` prints
it. Revenue [$] = clearing price [$/MW-day] x cleared UCAP [MW] x days, rounded to cents once
(half to even), then split with `split_cents_by_cohort`: each cohort by the accredited kW of its
assets, each cohort's part to its subscribers by theirs. Subscribers' cents add up exactly to
their cohort's, cohorts' to the total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nexwatt_settlement.money import capacity_revenue_usd, split_cents_by_cohort, to_cents


@dataclass(frozen=True)
class RevenueSplit:
    """Capacity revenue per cohort and per subscriber of a cohort [US cents].

    Cohorts are sorted by name; subscribers by cohort, then subscriber id. A subscriber with
    assets in two cohorts has a row in each.
    """

    total_cents: int
    cohorts: tuple[str, ...]
    cohort_assets: np.ndarray  # (n_cohorts,) int
    cohort_kw: np.ndarray  # (n_cohorts,) accredited [kW]
    cohort_cents: np.ndarray  # (n_cohorts,) int64, adds up to total_cents
    subscriber_cohorts: tuple[str, ...]
    subscribers: tuple[str, ...]
    subscriber_assets: np.ndarray  # (n_subscribers,) int
    subscriber_kw: np.ndarray  # (n_subscribers,) accredited [kW]
    subscriber_cents: np.ndarray  # (n_subscribers,) int64, adds up to its cohort's

    @property
    def cohort_share_pct(self) -> np.ndarray:
        """Each cohort's share of the resource's accredited kW [%]."""
        return self.cohort_kw / self.cohort_kw.sum() * 100.0


def split_capacity_revenue(
    price_usd_per_mw_day: float,
    cleared_ucap_mw: float,
    days: int,
    cohorts: Sequence[str],
    subscribers: Sequence[str],
    accredited_kw: ArrayLike,
) -> RevenueSplit:
    """Capacity revenue = price [$/MW-day] x cleared UCAP [MW] x days, in cents, split by
    accredited share. `cohorts`, `subscribers` and `accredited_kw` [kW] hold one entry per
    asset of the resource.

    ValueError when there is no asset, the three do not have one entry per asset, an
    accredited kW is negative or not finite, or every one is zero (nothing to split by).
    """
    kw = np.asarray(accredited_kw, dtype=float)
    if kw.ndim != 1 or not len(cohorts) == len(subscribers) == kw.size:
        raise ValueError(
            f"one cohort, subscriber and accredited kW per asset: got {len(cohorts)}, "
            f"{len(subscribers)} and shape {kw.shape}"
        )
    if kw.size == 0:
        raise ValueError("no assets: nothing to split the revenue among")
    if not np.all(np.isfinite(kw) & (kw >= 0)):
        raise ValueError("accredited kW must be finite and >= 0")
    if not np.any(kw > 0):
        raise ValueError("every asset's accredited kW is zero: nothing to split the revenue by")
    total_cents = to_cents(float(capacity_revenue_usd(price_usd_per_mw_day, cleared_ucap_mw, days)))

    pairs = sorted(set(zip(cohorts, subscribers, strict=True)))
    pair_of = {pair: i for i, pair in enumerate(pairs)}
    per_asset = np.fromiter(
        (pair_of[pair] for pair in zip(cohorts, subscribers, strict=True)), np.intp, kw.size
    )
    subscriber_kw = np.bincount(per_asset, weights=kw, minlength=len(pairs))
    subscriber_assets = np.bincount(per_asset, minlength=len(pairs))
    names = tuple(dict.fromkeys(cohort for cohort, _ in pairs))  # sorted, as `pairs` is
    members = [np.array([c == name for c, _ in pairs]) for name in names]
    split = split_cents_by_cohort(
        total_cents,
        [subscriber_kw[m].sum() for m in members],
        [subscriber_kw[m] for m in members],
    )
    return RevenueSplit(
        total_cents=total_cents,
        cohorts=names,
        cohort_assets=np.array([subscriber_assets[m].sum() for m in members]),
        cohort_kw=np.array([subscriber_kw[m].sum() for m in members]),
        cohort_cents=split.cohort_cents,
        subscriber_cohorts=tuple(cohort for cohort, _ in pairs),
        subscribers=tuple(subscriber for _, subscriber in pairs),
        subscriber_assets=subscriber_assets,
        subscriber_kw=subscriber_kw,
        subscriber_cents=np.concatenate(split.subscriber_cents),
    )
