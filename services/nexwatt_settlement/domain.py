"""Pure rules of settlement: telemetry on the settlement grid, the baseline, what was delivered.

Times inside the numeric functions are seconds from the window start [s]; an interval is
[start, end). For asset i, slot k = [a_k, b_k) of length L_k, and intervals j of asset i with
average battery power p_j [kW]:

    overlap_jk  = max(0, min(end_j, b_k) - max(start_j, a_k))                          [s]
    metered_ik  = sum_j overlap_jk * p_j / L_k     (time without telemetry counts 0)  [kW]
    covered_ik  = sum_j overlap_jk / L_k           (share of the slot with telemetry)  [-]
    baseline_i  = sum_j o_j * p_j / sum_j o_j, o_j = overlap of j with [-lookback, 0)  [kW]
                  (0 when sum_j o_j = 0: no telemetry before the window)
    delivered_ik = metered_ik - baseline_i * covered_ik                                 [kW]

so an asset's uncovered time adds neither output nor baseline. Only measured intervals (quality
actual or estimated) cover time: one reported missing, or questionable, is uncovered time, never
a metered 0 kW (that would count the baseline against the asset as if it had stopped). The
resource's slot values are sums over its assets / 1000 [MW]; over the window of length T [s]:

    delivered_mw    = sum_k delivered_k * L_k / T        (time-weighted mean)          [MW]
    delivered_mwh   = sum_k delivered_k * L_k / 3600                                    [MWh]
    performance_pct = delivered_mw / mw_requested * 100                                 [%]

An asset's intervals never overlap each other: the store refuses overlaps (`nexwatt_shared.series`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np

from nexwatt_shared.contracts import CohortSettlement, Quality, SettlementFiled

BASELINE_METHOD = "mgo-pre-window-mean"
SLOT_S = 300.0  # settlement slot [s]
KW_PER_MW = 1000.0
S_PER_H = 3600.0
MW_DECIMALS = 6  # reports are filed to the watt and watt-hour: no float noise on them
PCT_DECIMALS = 3
MEASURED = frozenset({Quality.ACTUAL, Quality.ESTIMATED})  # what counts as metered


class Reading(NamedTuple):
    """One battery interval of one asset, as reported: `battery_kw` is None when missing."""

    asset_id: str
    interval_start: datetime
    interval_s: int
    battery_kw: float | None
    quality: str = Quality.ACTUAL

    @property
    def measured(self) -> bool:
        return self.battery_kw is not None and self.quality in MEASURED


@dataclass(frozen=True)
class Due:
    """A confirmed instruction whose window is ready to settle."""

    instruction_id: str
    resource_id: str
    window_start: datetime
    window_end: datetime
    mw_requested: float
    mw_confirmed: float


@dataclass(frozen=True)
class Settlement:
    """A resource's delivery over one window: per slot, per asset, and in total."""

    edges_s: np.ndarray  # slot edges, n_slots + 1 [s from window start]
    baseline_mw: np.ndarray  # per slot [MW]
    metered_mw: np.ndarray  # per slot [MW]
    delivered_mw: np.ndarray  # per slot [MW]
    asset_delivered_mwh: np.ndarray  # per asset [MWh]
    window_mw: float  # time-weighted mean delivery over the window [MW]
    delivered_mwh: float  # [MWh]
    assets_metered: int  # assets with any telemetry inside the window
    assets_without_baseline: int  # assets with no telemetry in the lookback (baseline 0)
    incomplete_asset_slots: int  # (asset, slot) pairs not fully covered by telemetry


def slot_edges_s(window_s: float, slot_s: float = SLOT_S) -> np.ndarray:
    """Edges of the settlement slots [s from window start]: every `slot_s`, the last slot cut
    at the window's end."""
    return np.append(np.arange(0.0, window_s, slot_s), window_s)


def resample(
    asset_index: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    value_kw: np.ndarray,
    n_assets: int,
    edges_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Intervals of several assets onto the spans between `edges_s`, time-weighted by overlap.

    Args:
        asset_index: which asset each interval belongs to, 0..n_assets-1
        start_s, end_s: each interval's start and end [s]
        value_kw: each interval's average power [kW]
        edges_s: span edges [s], increasing
    Returns:
        (mean_kw, covered), both (n_assets, n_spans): the span's mean power with time without
        telemetry counted as 0 [kW], and the share of the span covered by telemetry [0..1].
    """
    lo_s, hi_s = edges_s[:-1], edges_s[1:]
    overlap_s = np.clip(
        np.minimum(end_s[:, None], hi_s[None, :]) - np.maximum(start_s[:, None], lo_s[None, :]),
        0.0,
        None,
    )
    energy_kws = np.zeros((n_assets, lo_s.size))  # [kW*s]
    seconds = np.zeros((n_assets, lo_s.size))  # [s]
    np.add.at(energy_kws, asset_index, overlap_s * value_kw[:, None])
    np.add.at(seconds, asset_index, overlap_s)
    span_s = hi_s - lo_s
    return energy_kws / span_s, seconds / span_s


def settle(
    asset_index: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    battery_kw: np.ndarray,
    n_assets: int,
    window_s: float,
    lookback_s: float,
) -> Settlement:
    """Delivery of `n_assets` over a window of `window_s` [s] against the pre-window mean of each
    asset's own battery output over `lookback_s` [s]; see the module docstring for the formulas.
    Intervals are given in seconds from the window start and may extend beyond it."""
    edges_s = slot_edges_s(window_s)
    slot_s = np.diff(edges_s)
    metered_kw, covered = resample(asset_index, start_s, end_s, battery_kw, n_assets, edges_s)
    before_kw, before_covered = resample(
        asset_index, start_s, end_s, battery_kw, n_assets, np.array([-lookback_s, 0.0])
    )
    has_baseline = before_covered[:, 0] > 0
    baseline_kw = np.divide(
        before_kw[:, 0],
        before_covered[:, 0],
        out=np.zeros(n_assets),
        where=has_baseline,
    )
    baseline_slot_kw = baseline_kw[:, None] * covered  # the baseline only where metered
    delivered_kw = metered_kw - baseline_slot_kw
    baseline_mw = baseline_slot_kw.sum(axis=0) / KW_PER_MW
    metered_mw = metered_kw.sum(axis=0) / KW_PER_MW
    delivered_mw = metered_mw - baseline_mw
    return Settlement(
        edges_s=edges_s,
        baseline_mw=baseline_mw,
        metered_mw=metered_mw,
        delivered_mw=delivered_mw,
        asset_delivered_mwh=(delivered_kw * slot_s).sum(axis=1) / S_PER_H / KW_PER_MW,
        window_mw=float((delivered_mw * slot_s).sum() / window_s),
        delivered_mwh=float((delivered_mw * slot_s).sum() / S_PER_H),
        assets_metered=int((covered.sum(axis=1) > 0).sum()),
        assets_without_baseline=int((~has_baseline).sum()),
        incomplete_asset_slots=int((covered < 1.0 - 1e-9).sum()),
    )


def performance_pct(delivered_mw: float, mw_requested: float) -> float:
    """Delivered over requested [%]; 0 when nothing was requested."""
    return delivered_mw / mw_requested * 100.0 if mw_requested > 0 else 0.0


def cohort_summary(
    cohorts: Sequence[str], asset_delivered_mwh: np.ndarray
) -> list[CohortSettlement]:
    """Assets and delivered energy [MWh, to the Wh] per cohort, and each cohort's share of the
    resource's net delivered energy [%, 3 decimals] (0 when the net is 0), sorted by cohort."""
    names, which = np.unique(np.asarray(cohorts, dtype=str), return_inverse=True)
    mwh = np.bincount(which, weights=asset_delivered_mwh, minlength=names.size)
    assets = np.bincount(which, minlength=names.size)
    total_mwh = float(asset_delivered_mwh.sum())
    return [
        CohortSettlement(
            cohort=str(name),
            assets=int(n),
            delivered_mwh=round(float(e), MW_DECIMALS),
            share_pct=round(float(e) / total_mwh * 100.0, PCT_DECIMALS) if total_mwh != 0 else 0.0,
        )
        for name, n, e in zip(names, assets, mwh, strict=True)
    ]


def intervals_csv(
    window_start: datetime,
    edges_s: np.ndarray,
    baseline_mw: np.ndarray,
    metered_mw: np.ndarray,
    delivered_mw: np.ndarray,
) -> str:
    """`interval_start,baseline_mw,metered_mw,delivered_mw`, one row per slot: ISO 8601 UTC
    starts, MW to 4 decimals."""

    def mw(value: float) -> str:
        return f"{round(value, 4) + 0.0:.4f}"  # + 0.0 turns -0.0 into 0.0: no "-0.0000"

    rows = ["interval_start,baseline_mw,metered_mw,delivered_mw"]
    for start_s, b, m, d in zip(edges_s[:-1], baseline_mw, metered_mw, delivered_mw, strict=True):
        start = (window_start + timedelta(seconds=float(start_s))).isoformat()
        rows.append(f"{start.replace('+00:00', 'Z')},{mw(b)},{mw(m)},{mw(d)}")
    return "\n".join(rows) + "\n"


def build_report(
    due: Due,
    assets: Sequence[tuple[str, str]],
    readings: Sequence[Reading],
    lookback_s: float,
    filed_at: datetime,
) -> tuple[SettlementFiled, Settlement]:
    """The report for `due` from the resource's enrolled assets ((asset_id, cohort) pairs) and
    their readings around the window; readings of other assets, and intervals not measured
    (missing, questionable), are left out: their time is uncovered."""
    index = {asset_id: i for i, (asset_id, _) in enumerate(assets)}
    counted = [r for r in readings if r.asset_id in index and r.measured]
    start_s = np.array(
        [(r.interval_start - due.window_start).total_seconds() for r in counted], dtype=float
    )
    result = settle(
        asset_index=np.array([index[r.asset_id] for r in counted], dtype=np.intp),
        start_s=start_s,
        end_s=start_s + np.array([r.interval_s for r in counted], dtype=float),
        battery_kw=np.array([r.battery_kw for r in counted], dtype=float),
        n_assets=len(assets),
        window_s=(due.window_end - due.window_start).total_seconds(),
        lookback_s=lookback_s,
    )
    report = SettlementFiled(
        window_start=due.window_start,
        window_end=due.window_end,
        report_id=f"SR-{due.instruction_id}",
        instruction_id=due.instruction_id,
        resource_id=due.resource_id,
        baseline_method=BASELINE_METHOD,
        mw_requested=due.mw_requested,
        mw_confirmed=due.mw_confirmed,
        delivered_mw=round(result.window_mw, MW_DECIMALS),
        delivered_mwh=round(result.delivered_mwh, MW_DECIMALS),
        performance_pct=round(performance_pct(result.window_mw, due.mw_requested), PCT_DECIMALS),
        assets_metered=result.assets_metered,
        intervals_csv=intervals_csv(
            due.window_start,
            result.edges_s,
            result.baseline_mw,
            result.metered_mw,
            result.delivered_mw,
        ),
        cohorts=cohort_summary([cohort for _, cohort in assets], result.asset_delivered_mwh),
        filed_at=filed_at,
    )
    return report, result
