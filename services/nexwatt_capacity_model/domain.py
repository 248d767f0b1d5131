"""Pure rules of the capacity model: what a resource's enrolled assets could deliver now, and
what they are accredited for per delivery year."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, Field

from nexwatt_capacity_model.accreditation import (
    PJM_ELCC_CLASS_RATINGS,
    ElccClass,
    ElccClassRatings,
    hybrid_ucap_mw,
    storage_icap_mw,
)
from nexwatt_capacity_model.soc_forecast import ProgramParams, program_days
from nexwatt_shared.contracts import (
    CapacitySnapshot,
    Channel,
    CohortCapacity,
    PvMounting,
    Quality,
    TelemetryInterval,
)
from nexwatt_shared.event_time import resource_clock
from nexwatt_shared.power_model import AssetRatings, Coupling, deliverable_kw, discharge_efficiency

KW_PER_MW = 1000.0
DISCHARGE_H = 1.0  # capacity is what can be held for one hour [h]
MAX_COHORTS = 1000  # listed in a snapshot; beyond, the smallest are folded (a record < 1 MB)
OTHER_COHORTS = "(other cohorts)"
MW_DECIMALS = 6  # snapshots are published to the watt: float noise below is not a change
TRACKED = (Channel.PV_KW, Channel.SOC_PCT)  # the channels capacity depends on
KNOWN = frozenset({Quality.ACTUAL, Quality.ESTIMATED})  # qualities whose value is used


@dataclass(frozen=True)
class ChannelValue:
    """The newest interval of one channel of one asset: its end and its value, None when the
    source reported it missing or its value was questionable (unknown as of that end)."""

    asset_id: str
    channel: Channel
    interval_end: datetime
    value: float | None
    quality: Quality


def latest_channels(
    readings: Iterable[TelemetryInterval], channels: Sequence[Channel] = TRACKED
) -> list[ChannelValue]:
    """Per asset and channel, the newest interval (latest end; ties: the later reading) among
    the readings that carry that channel. A reading that does not carry a channel says nothing
    about it: a 15-minute PV reading leaves the 5-minute SoC where it was."""
    newest: dict[tuple[str, Channel], ChannelValue] = {}
    for r in readings:
        for channel, quality in r.quality.items():
            if channel not in channels:
                continue
            seen = newest.get((r.asset_id, channel))
            if seen is None or r.interval_end >= seen.interval_end:
                value = r.value(channel) if quality in KNOWN else None
                newest[r.asset_id, channel] = ChannelValue(
                    r.asset_id, channel, r.interval_end, value, quality
                )
    return list(newest.values())


@dataclass(frozen=True)
class Assets:
    """One resource's assets as the capacity model knows them, one array element per asset
    (any status); the arrays are views of `book.ResourceBook`, not to be changed.

    Telemetry is each channel's newest interval: its end [s since the epoch] (NaN = never
    reported) and value (NaN = unknown: reported missing or questionable)."""

    enrolled: NDArray[np.bool_]
    cohort_code: NDArray[np.intp]  # index into cohorts
    cohorts: Sequence[str]
    has_pv: NDArray[np.bool_]  # a battery-only asset has no PV to report
    ratings: AssetRatings
    icap_mw: NDArray[np.float64]  # see `accredit`
    ucap_mw: NDArray[np.float64]  # [delivery year, asset], years as in delivery_years
    delivery_years: Sequence[str]
    updated_at_s: NDArray[np.float64]  # the record's event time [s since the epoch]
    pv_end_s: NDArray[np.float64]
    pv_kw: NDArray[np.float64]
    soc_end_s: NDArray[np.float64]
    soc_pct: NDArray[np.float64]


def accredit(
    ratings: AssetRatings,
    has_pv: ArrayLike,
    pv_mounting: ArrayLike,
    delivery_years: Sequence[str],
    class_ratings: ElccClassRatings = PJM_ELCC_CLASS_RATINGS,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each asset's ICAP [MW] and its UCAP [MW] per delivery year (shape years x assets).

    An asset is accredited by part (`accreditation.hybrid_ucap_mw`):
    - its battery at the power it can give at the site, min(battery continuous kW, inverter AC
      kW), over the energy an event may draw: usable kWh above the backup reserve, after the
      discharge loss sqrt(round trip) (the power model's conventions); storage class and the
      sub-4-hour rule as `accreditation.storage_icap_mw` documents;
    - its PV (if any) at its nameplate, by its class (fixed or tracking). When DC-coupled, PV
      and battery export through one hybrid inverter, so the PV counts only for the inverter's
      AC rating left over the battery's ICAP: both at once can never pass the inverter (PJM's
      hybrids are likewise held to their interconnection rights).
    ICAP is the sum of the parts' ICAP: what the class ratings apply to.
    """
    pv = np.asarray(has_pv, bool)
    battery_kw = np.minimum(ratings.battery_continuous_kw, ratings.inverter_ac_kw)
    event_kwh = (
        ratings.usable_kwh
        * (1.0 - ratings.backup_reserve_pct / 100.0)
        * discharge_efficiency(ratings.round_trip_efficiency)
    )
    battery_icap_kw = storage_icap_mw(battery_kw, event_kwh)  # linear: kW in, kW out
    pv_kw = np.where(pv, ratings.pv_dc_kw, 0.0)
    shared_inverter_left_kw = np.clip(ratings.inverter_ac_kw - battery_icap_kw, 0.0, None)
    pv_kw = np.where(
        ratings.coupling == Coupling.DC, np.minimum(pv_kw, shared_inverter_left_kw), pv_kw
    )
    pv_mw, battery_mw, event_mwh = (
        np.broadcast_to(v, np.shape(pv)) / KW_PER_MW for v in (pv_kw, battery_kw, event_kwh)
    )
    solar_class = np.where(
        np.asarray(pv_mounting, str) == PvMounting.TRACKING,
        ElccClass.SOLAR_TRACKING.value,
        ElccClass.SOLAR_FIXED.value,
    )
    icap_mw = pv_mw + storage_icap_mw(battery_mw, event_mwh)
    ucap_mw = np.array(
        [
            hybrid_ucap_mw(pv_mw, solar_class, battery_mw, event_mwh, year, class_ratings)
            for year in delivery_years
        ]
    ).reshape(len(delivery_years), *np.shape(pv))
    return icap_mw, ucap_mw


def available_kw(assets: Assets, freshness_s: float) -> tuple[NDArray[np.bool_], NDArray]:
    """Which assets report, and what each adds now for one hour [kW] (0 unless it reports).

    An asset reports when its PV and its SoC are known and fresh (the SoC only if it has a
    battery, the PV only if it has PV); fresh = its newest interval ends at most
    `freshness_s` before the resource's clock: the time most of its assets have reached
    (`nexwatt_shared.event_time.resource_clock`; event time, not the wall clock), so one asset
    running ahead cannot make the others stale. A reporting asset adds what its battery can
    hold for an hour at the site (`power_model.deliverable_kw`: battery rating, inverter
    headroom by coupling, energy above the reserve after losses). Unknown is never taken as 0:
    an unknown SoC credits no energy and an unknown PV leaves a DC-coupled inverter's headroom
    unknown, so either makes the asset enrolled but not reporting.
    """
    clock_s = resource_clock(np.fmax(assets.pv_end_s, assets.soc_end_s))
    no_pv = ~assets.has_pv
    pv_kw = np.where(no_pv, 0.0, assets.pv_kw)
    with np.errstate(invalid="ignore"):  # NaN (never, unknown) compares False: not fresh
        fresh_pv = (assets.pv_end_s >= clock_s - freshness_s) & ~np.isnan(pv_kw) | no_pv
        fresh_soc = (assets.soc_end_s >= clock_s - freshness_s) & ~np.isnan(assets.soc_pct)
    reporting = fresh_pv & (fresh_soc | (assets.ratings.usable_kwh == 0))
    soc_pct = np.where(reporting, assets.soc_pct, np.nan)
    kw = deliverable_kw(assets.ratings, np.where(reporting, pv_kw, 0.0), soc_pct, DISCHARGE_H)
    return reporting, np.where(reporting, kw, 0.0)


class FleetSoc(NamedTuple):
    """The energy-weighted state of charge and backup reserve of a fleet's batteries [%]."""

    soc_pct: float
    reserve_pct: float
    assets: int  # batteries counted


def fleet_soc(assets: Assets, freshness_s: float) -> FleetSoc | None:
    """The enrolled batteries' SoC and reserve weighted by usable energy, sum(x kWh) /
    sum(kWh), over those reporting (`available_kw`) with a battery; None without any."""
    reporting, _ = available_kw(assets, freshness_s)
    usable_kwh = assets.ratings.usable_kwh
    counted = assets.enrolled & reporting & (usable_kwh > 0) & ~np.isnan(assets.soc_pct)
    weights = usable_kwh[counted]
    if not weights.size:
        return None
    return FleetSoc(
        float(np.average(assets.soc_pct[counted], weights=weights)),
        float(np.average(assets.ratings.backup_reserve_pct[counted], weights=weights)),
        int(weights.size),
    )


def window_opening(
    as_of: datetime, market_tz: ZoneInfo, minutes: float, program: ProgramParams
) -> date | None:
    """The local date when `as_of` falls in the first `minutes` of a program day's event
    window (a weekday of the program's months, at its opening hour in market time), else
    None. Holidays are not known here: a holiday's reading counts as a weekday's."""
    local = as_of.astimezone(market_tz)
    opening = local.replace(hour=program.window_start_h, minute=0, second=0, microsecond=0)
    if not program_days([local.date()], program=program)[0]:
        return None
    return local.date() if opening <= local < opening + timedelta(minutes=minutes) else None


def soc_availability(soc_pct: ArrayLike, reserve_pct: ArrayLike) -> NDArray[np.float64]:
    """The share of the batteries' energy above the reserve that is there [-], in [0, 1]:
    (SoC - reserve) / (100 - reserve). UCAP counts full batteries; an event at 60 % SoC with a
    20 % reserve finds (60 - 20) / 80 = 0.5 of it."""
    soc, reserve = np.asarray(soc_pct, float), np.asarray(reserve_pct, float)
    return np.clip((soc - reserve) / (100.0 - reserve), 0.0, 1.0)


def snapshot(
    resource_id: str, assets: Assets, touched_at: datetime, freshness_s: float
) -> CapacitySnapshot:
    """The resource's snapshot from every asset now in it (any status): the enrolled assets'
    figures per cohort, and the resource's totals as the sums of the cohorts' (each rounded
    to the watt first, so the parts add up to the totals).

    `as_of` is the event time of the newest input: the latest record update or interval end of
    its assets, or `touched_at` (the newest input of this batch) when that is later, e.g. the
    last asset just moved to another resource.
    """
    enrolled = assets.enrolled
    reporting, kw = available_kw(assets, freshness_s)
    names, code_of = _cohorts_shown(assets)
    n_cohorts = len(names)
    # Assets not enrolled go to one more bin, dropped: no mask copies every column.
    bins = np.where(enrolled, code_of[assets.cohort_code], n_cohorts)

    def per_cohort(weights: ArrayLike | None) -> NDArray[np.float64]:
        return np.bincount(bins, weights, minlength=n_cohorts + 1)[:n_cohorts]

    counts = per_cohort(None).astype(int)
    counts_reporting = per_cohort(reporting).astype(int)
    available = _mw(per_cohort(kw) / KW_PER_MW)
    icap = _mw(per_cohort(assets.icap_mw))
    ucap = {
        year: _mw(per_cohort(assets.ucap_mw[i])) for i, year in enumerate(assets.delivery_years)
    }
    cohorts = [
        CohortCapacity(
            cohort=name,
            assets_enrolled=int(counts[c]),
            assets_reporting=int(counts_reporting[c]),
            available_mw=float(available[c]),
            icap_mw=float(icap[c]),
            ucap_mw={year: float(mw[c]) for year, mw in ucap.items()},
        )
        for c, name in enumerate(names)
        if counts[c]
    ]
    inputs_s = np.concatenate([assets.updated_at_s, assets.pv_end_s, assets.soc_end_s])
    newest_s = np.nanmax(inputs_s, initial=touched_at.timestamp())
    return CapacitySnapshot(
        resource_id=resource_id,
        as_of=max(touched_at, datetime.fromtimestamp(newest_s, UTC)),
        assets_enrolled=int(counts.sum()),
        assets_reporting=int(counts_reporting.sum()),
        nameplate_mw=float(_mw(assets.ratings.inverter_ac_kw[enrolled].sum() / KW_PER_MW)),
        storage_mwh=float(_mw(assets.ratings.usable_kwh[enrolled].sum() / KW_PER_MW)),
        available_mw=float(_mw(available.sum())),
        icap_mw=float(_mw(icap.sum())),
        ucap_mw={year: float(_mw(mw.sum())) for year, mw in ucap.items()},
        cohorts=cohorts,
    )


def _cohorts_shown(assets: Assets) -> tuple[list[str], NDArray[np.intp]]:
    """The cohorts a snapshot lists, by name (the same order on every replica), and each of
    the book's cohort codes' index among them. Beyond MAX_COHORTS, the largest (most enrolled
    assets) stay and the rest are folded into OTHER_COHORTS, so a resource of endless cohort
    names still fits one snapshot."""
    counts = np.bincount(assets.cohort_code[assets.enrolled], minlength=len(assets.cohorts))
    present = [c for c in range(len(assets.cohorts)) if counts[c]]
    if len(present) > MAX_COHORTS:
        present.sort(key=lambda c: (-counts[c], assets.cohorts[c]))
        kept = sorted(present[: MAX_COHORTS - 1], key=lambda c: assets.cohorts[c])
        names = [assets.cohorts[c] for c in kept] + [OTHER_COHORTS]
        code_of = np.full(len(assets.cohorts), len(kept), np.intp)
    else:
        kept = sorted(range(len(assets.cohorts)), key=lambda c: assets.cohorts[c])
        names = [assets.cohorts[c] for c in kept]
        code_of = np.zeros(len(assets.cohorts), np.intp)
    code_of[kept] = np.arange(len(kept))
    return names, code_of


def _mw(value: ArrayLike) -> NDArray[np.float64]:
    """Rounded to the watt [MW]: float noise below is not a change."""
    return np.round(np.asarray(value, float), MW_DECIMALS)


class PortfolioCapacity(BaseModel):
    """Every resource's latest snapshot, and the portfolio's totals as the sums of their
    parts: per resource, and per cohort over the resources [MW]."""

    as_of: datetime | None = Field(description="The newest snapshot's as_of (None: none yet)")
    assets_enrolled: int
    available_mw: float
    icap_mw: float
    ucap_mw: dict[str, float]
    resources: list[CapacitySnapshot]
    cohorts: list[CohortCapacity] = Field(description="Each cohort summed over the resources")


def portfolio(snapshots: Sequence[CapacitySnapshot]) -> PortfolioCapacity:
    """The portfolio of these resources: each figure the sum of the resources' (rounded to
    the watt again, so it equals the sum of the parts within 1e-6 MW), cohorts summed by
    name over the resources."""
    years = sorted({year for snap in snapshots for year in snap.ucap_mw})
    by_cohort: dict[str, list[CohortCapacity]] = {}
    for snap in snapshots:
        for cohort in snap.cohorts:
            by_cohort.setdefault(cohort.cohort, []).append(cohort)

    def total(values: Iterable[float]) -> float:
        return float(_mw(math.fsum(values)))

    cohorts = [
        CohortCapacity(
            cohort=name,
            assets_enrolled=sum(c.assets_enrolled for c in parts),
            assets_reporting=sum(c.assets_reporting for c in parts),
            available_mw=total(c.available_mw for c in parts),
            icap_mw=total(c.icap_mw for c in parts),
            ucap_mw={year: total(c.ucap_mw.get(year, 0.0) for c in parts) for year in years},
        )
        for name, parts in sorted(by_cohort.items())
    ]
    return PortfolioCapacity(
        as_of=max((snap.as_of for snap in snapshots), default=None),
        assets_enrolled=sum(snap.assets_enrolled for snap in snapshots),
        available_mw=total(snap.available_mw for snap in snapshots),
        icap_mw=total(snap.icap_mw for snap in snapshots),
        ucap_mw={year: total(snap.ucap_mw.get(year, 0.0) for snap in snapshots) for year in years},
        resources=sorted(snapshots, key=lambda snap: snap.resource_id),
        cohorts=cohorts,
    )


def changed(previous: CapacitySnapshot | None, current: CapacitySnapshot) -> bool:
    """Whether the figures differ from the last published ones (`as_of` alone is no change)."""
    if previous is None:
        return True
    return previous.model_dump(exclude={"as_of"}) != current.model_dump(exclude={"as_of"})


def snapshot_event_id(snap: CapacitySnapshot) -> str:
    """The same snapshot always gets the same id, so a re-publish after a crash is deduplicable."""
    digest = hashlib.sha256(snap.model_dump_json().encode()).hexdigest()[:16]
    return f"capacity:{snap.resource_id}:{digest}"
