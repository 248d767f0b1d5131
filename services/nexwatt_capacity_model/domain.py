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
    Channel,
    Quality,
    TelemetryInterval,
)
from nexwatt_shared.event_time import resource_clock

KW_PER_MW = 1000.0
DISCHARGE_H = 1.0  # capacity is what can be held for one hour [h]
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
class AssetState:
    """One asset as the capacity model knows it: its newest record and, per channel, its newest
    interval's end (None = never reported) and value (None = unknown)."""

    status: str
    capacity_kw: float
    storage_kwh: float
    has_pv: bool
    backup_reserve_pct: float
    updated_at: datetime
    pv_end: datetime | None
    pv_kw: float | None
    soc_end: datetime | None
    soc_pct: float | None

    @property
    def telemetry_end(self) -> datetime | None:
        """The newest end over its channels: the time its telemetry has reached."""
        return max((e for e in (self.pv_end, self.soc_end) if e is not None), default=None)


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
    pv_end_s: np.ndarray,
    pv_kw: np.ndarray,
    soc_end_s: np.ndarray,
    soc_pct: np.ndarray,
    freshness_s: float,
    has_pv: np.ndarray | None = None,
) -> Capacity:
    """One resource's capacity from its enrolled assets, one array element per asset.

    Args:
        capacity_kw: inverter AC rating [kW]
        storage_kwh: usable battery energy [kWh]
        reserve_pct: backup reserve kept for the household [%]
        pv_end_s: end of the newest PV interval [s since the epoch]; NaN = never reported
        pv_kw: PV output over that interval [kW]; NaN = unknown (reported missing)
        soc_end_s: end of the newest SoC interval [s since the epoch]; NaN = never reported
        soc_pct: battery state of charge at that end [%]; NaN = unknown
        has_pv: whether the asset has PV behind its inverter (None: all have); a battery-only
            asset has no PV to report: its PV is 0, always known
        freshness_s: a channel is fresh when its newest interval ends at most this long
            before the resource's clock [s]: the time most of its assets have reached (each
            asset's newest end over both channels, `nexwatt_shared.event_time.resource_clock`;
            event time, not the wall clock), so one asset running ahead cannot make the
            others stale

    An asset reports when its PV and its SoC are known and fresh (the SoC only if it has a
    battery: one without has none to report); only then can it add, for one hour,
        available [kW] = max(0, min(capacity - pv, (soc - reserve) / 100 * storage / 1 h)):
    the inverter's headroom above what the PV already uses, and the battery energy above the
    backup reserve. Unknown is never taken as 0: an unknown SoC credits no energy, and an
    unknown PV leaves the headroom unknown (0 PV would overstate it), so either makes the asset
    enrolled but not reporting, adding nothing. An asset below its reserve adds 0 and takes
    nothing from the others.
    """
    clock_s = resource_clock(np.fmax(pv_end_s, soc_end_s))
    no_pv = np.zeros(pv_kw.shape, bool) if has_pv is None else ~np.asarray(has_pv, bool)
    pv_kw = np.where(no_pv, 0.0, pv_kw)
    with np.errstate(invalid="ignore"):  # NaN (never, unknown) compares False: not fresh
        fresh_pv = (pv_end_s >= clock_s - freshness_s) & ~np.isnan(pv_kw) | no_pv
        fresh_soc = (soc_end_s >= clock_s - freshness_s) & ~np.isnan(soc_pct)
    reporting = fresh_pv & (fresh_soc | (storage_kwh == 0))
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
        pv_end_s=column(a.pv_end.timestamp() if a.pv_end else None for a in enrolled),
        pv_kw=column(a.pv_kw for a in enrolled),
        soc_end_s=column(a.soc_end.timestamp() if a.soc_end else None for a in enrolled),
        soc_pct=column(a.soc_pct for a in enrolled),
        freshness_s=freshness_s,
        has_pv=np.array([a.has_pv for a in enrolled], dtype=bool),
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
