"""Pure rules of the capacity model: what a resource's enrolled assets could deliver now."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from nexwatt_shared.battery import deliverable_kw
from nexwatt_shared.contracts import (
    AssetStatus,
    CapacitySnapshot,
)
from nexwatt_shared.event_time import resource_clock

KW_PER_MW = 1000.0
DISCHARGE_H = 1.0  # capacity is what can be held for one hour [h]
MW_DECIMALS = 6  # snapshots are published to the watt: float noise below is not a change


@dataclass(frozen=True)
class AssetState:
    """One asset as the capacity model knows it: its newest record and newest telemetry."""

    status: str
    capacity_kw: float
    storage_kwh: float
    backup_reserve_pct: float
    updated_at: datetime
    telemetry_end: datetime | None  # end of the newest interval; None = no telemetry yet
    pv_kw: float | None
    soc_pct: float | None


@dataclass(frozen=True)
class Capacity:
    assets_enrolled: int
    assets_reporting: int
    nameplate_mw: float
    storage_mwh: float
    available_mw: float


def resource_capacity(
    capacity_kw: np.ndarray,
    storage_kwh: np.ndarray,
    reserve_pct: np.ndarray,
    telemetry_end_s: np.ndarray,
    pv_kw: np.ndarray,
    soc_pct: np.ndarray,
    freshness_s: float,
) -> Capacity:
    """One resource's capacity from its enrolled assets, one array element per asset.

    Args:
        capacity_kw: inverter AC rating [kW]
        storage_kwh: usable battery energy [kWh]
        reserve_pct: backup reserve kept for the household [%]
        telemetry_end_s: end of the newest telemetry interval [s since the epoch]; NaN = none
        pv_kw: PV output over that interval [kW]; NaN = none
        soc_pct: battery state of charge at that interval's end [%]; NaN = unknown
        freshness_s: an asset reports when its newest interval ends at most this long before
            the resource's clock [s]: the time most of its assets have reached
            (`nexwatt_shared.event_time.resource_clock`; event time, not the wall clock), so
            one asset running ahead cannot make the others stale

    An asset that reports can add, for one hour,
        available [kW] = max(0, min(capacity - pv, (soc - reserve) / 100 * storage / 1 h)):
    the inverter's headroom above what the PV already uses, and the battery energy above the
    backup reserve. An unknown SoC credits no energy; an asset below its reserve adds 0 and
    takes nothing from the others.
    """
    clock_s = resource_clock(telemetry_end_s)
    with np.errstate(invalid="ignore"):  # NaN (no telemetry) compares False: not reporting
        reporting = telemetry_end_s >= clock_s - freshness_s
    available_kw = deliverable_kw(
        capacity_kw, pv_kw, soc_pct, reserve_pct, storage_kwh, DISCHARGE_H
    )
    return Capacity(
        assets_enrolled=int(capacity_kw.size),
        assets_reporting=int(reporting.sum()),
        nameplate_mw=float(capacity_kw.sum()) / KW_PER_MW,
        storage_mwh=float(storage_kwh.sum()) / KW_PER_MW,
        available_mw=float(np.where(reporting, available_kw, 0.0).sum()) / KW_PER_MW,
    )


def snapshot(
    resource_id: str, assets: Sequence[AssetState], touched_at: datetime, freshness_s: float
) -> CapacitySnapshot:
    """The resource's snapshot from every asset now in it (any status).

    `as_of` is the event time of the newest input: the latest record update or interval end of
    its assets, or `touched_at` (the newest input of this batch) when that is later, e.g. the
    last asset just moved to another resource.
    """
    enrolled = [a for a in assets if a.status == AssetStatus.ENROLLED]

    def column(values: Iterable[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    capacity = resource_capacity(
        capacity_kw=column(a.capacity_kw for a in enrolled),
        storage_kwh=column(a.storage_kwh for a in enrolled),
        reserve_pct=column(a.backup_reserve_pct for a in enrolled),
        telemetry_end_s=column(
            a.telemetry_end.timestamp() if a.telemetry_end else None for a in enrolled
        ),
        pv_kw=column(a.pv_kw for a in enrolled),
        soc_pct=column(a.soc_pct for a in enrolled),
        freshness_s=freshness_s,
    )
    input_times = [a.updated_at for a in assets]
    input_times += [a.telemetry_end for a in assets if a.telemetry_end is not None]
    return CapacitySnapshot(
        resource_id=resource_id,
        as_of=max([touched_at, *input_times]),
        assets_enrolled=capacity.assets_enrolled,
        assets_reporting=capacity.assets_reporting,
        nameplate_mw=round(capacity.nameplate_mw, MW_DECIMALS),
        storage_mwh=round(capacity.storage_mwh, MW_DECIMALS),
        available_mw=round(capacity.available_mw, MW_DECIMALS),
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
