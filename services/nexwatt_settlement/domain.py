"""Pure rules of settlement: a resource's window measured against each asset's baseline, the
hourly ISO report, the money, and what changed since the last version.

Times inside the numeric functions are seconds from the window start [s]; an interval is
[start, end). For asset i and 5-minute slot k = [a_k, b_k) of length L_k, with intervals j of
the settled channel, each of mean power p_j [kW]:

    overlap_jk   = max(0, min(end_j, b_k) - max(start_j, a_k))                         [s]
    metered_ik   = sum_j overlap_jk * p_j / L_k   (time without measured data counts 0) [kW]
    covered_ik   = sum_j overlap_jk / L_k         (share of the slot measured)          [-]
    baseline_ik  = the asset's baseline for the slot's local hour * covered_ik          [kW]
    credited_ik  = baselines.reduction_kw(baseline_ik, metered_ik, model)               [kW]

so time without data adds neither output nor baseline. Only measured intervals (quality actual
or estimated) cover time: one reported missing, or questionable, is uncovered time, never 0 kW.
When every asset's window is wholly covered by billing-quality meter data (a utility's own
interval data), the settlement is final: nothing later can be more authoritative.

What is measured follows the participation model: demand response settles the site meter
(load = -net_kw, import positive; export not credited), the DER aggregator model settles the
battery (battery_kw, discharge positive; export counted). The baseline of each asset is the
resource's method (High X of Y with the symmetric additive adjustment, or Match Day, on the
asset's hourly history in market time; or Hour Before), else Hour Before from the 5-minute
data as a fallback, else none: an asset without a baseline is not credited, and the report
counts the assets per method used. A battery's baseline output is never below 0: charging
before an event is the program's preparation, not output the event displaced (a negative
baseline would credit the same energy twice).

The resource's slot values are sums over credited assets / 1000 [MW]; over the window of
length T [s]: delivered_mw = sum_k delivered_k * L_k / T, delivered_mwh = sum_k delivered_k *
L_k / 3600, performance_pct = delivered_mw / mw_requested * 100. Coverage = the share of the
enrolled assets' slot-time that is measured [%].

What was asked follows the instruction's revisions in force: answered, and either not
rejected or rejected after commands went out (assets_commanded > 0: the gateways may apply
them). Revision r takes effect at start_r = its answer's commands_start (when dispatch's
commands start), else max(issued_r, window_start) for answers that do not say. The window is
the first revision's, cut at the first cancellation in force (its start_r clamped into the
window; at the start: nothing to settle); revision r requests mw_r from start_r until the next
revision in force, so

    requested_k  = sum_r mw_r * overlap(revision r's span, slot k) / L_k                 [MW]
    mw_requested = sum_k requested_k * L_k / T                                           [MW]

A slot is assessed when a request is in force for some of it (every slot from the first
request's start on); its shortfall (the money) is requested_k - delivered_k. A slot before the
first request is left out of the money, as noise would otherwise earn a bonus or a charge; it
still shows in `intervals_csv`, asking 0. A capability test is settled the same way and priced
at 0: it is scored, not paid. A window filed before a cancellation in force left nothing of it
(called off at or before its start, found out later) is withdrawn: one more version, final,
asking 0 MW with no interval assessed and no money, its data as measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from nexwatt_settlement import baselines as bl
from nexwatt_settlement import money
from nexwatt_settlement.baselines import DayKind, ParticipationModel
from nexwatt_settlement.market_time import HOURS, MarketClock, day_kind, is_holiday
from nexwatt_shared.contracts import (
    BaselineAccuracy,
    Channel,
    CohortSettlement,
    DataQuality,
    DispatchStatus,
    HourlyDelivery,
    InstructionKind,
    PerformanceMoney,
    Quality,
    SettlementDiff,
    SettlementFiled,
)
from nexwatt_shared.delivery_year import delivery_year
from nexwatt_shared.series import Interval

SLOT_S = 300.0  # settlement slot, and a Performance Assessment Interval [s]
KW_PER_MW = 1000.0
S_PER_H = 3600.0
WH_PER_MWH = 1_000_000
MW_DECIMALS = 6  # reports are filed to the watt and watt-hour: no float noise on them
KWH_DECIMALS = 3
PCT_DECIMALS = 3
MEASURED = frozenset({Quality.ACTUAL, Quality.ESTIMATED})  # what counts as metered
HOUR_BEFORE_MIN_COVERED = 0.5  # share of the hour before that must be measured [-]
NO_BASELINE = "none"


class BaselineMethod(StrEnum):
    """A resource's baseline method, as settlement applies it to every asset."""

    HIGH_X_OF_Y = "pjm-high-x-of-y-adjusted"  # High 4 of 5 / 2 of 3 + additive adjustment
    MATCH_DAY = "pjm-match-day"
    HOUR_BEFORE = "hour-before"  # the emergency-energy baseline, from the 5-minute data


@dataclass(frozen=True)
class Program:
    """How a resource's windows are settled."""

    model: ParticipationModel
    method: BaselineMethod
    clock: MarketClock
    coverage_threshold: float  # share of asset-slots to be measured before filing [0..1]
    rates: money.PerformanceRates
    accuracy_days: int = 10  # most recent non-event like-days each method is tested on
    # Sources of billing-quality meter data: a utility's own interval data (telemetry-ingest's
    # Green Button and Download My Data importers), never a device's or a vendor cloud's.
    billing_sources: frozenset[str] = frozenset({"espi", "utility-csv"})

    def billing(self, reading: object, interval: Interval) -> bool:
        """Whether a stored channel interval is billing-quality meter data: an actual value
        from one of `billing_sources`."""
        source = getattr(reading, "source", None)
        return (
            source is not None
            and source.vendor in self.billing_sources
            and interval.quality == Quality.ACTUAL
            and interval.value is not None
        )

    @property
    def channel(self) -> Channel:
        """The channel settled on: the site meter for demand response, else the battery."""
        if self.model == ParticipationModel.DEMAND_RESPONSE:
            return Channel.NET_KW
        return Channel.BATTERY_KW

    def measured_kw(self, value_kw: np.ndarray) -> np.ndarray:
        """The settled quantity from the channel's values [kW]: site load (= -net_kw, import
        positive) for demand response, battery output for the DER aggregator model."""
        return -value_kw if self.channel == Channel.NET_KW else value_kw

    @property
    def history_days(self) -> int:
        """Days of hourly history the baseline and its accuracy test read before an event."""
        return bl.PJM_ECONOMIC_CBL.lookback_days


class Reading(NamedTuple):
    """One interval of the settled channel of one asset, as reported (None when missing)."""

    asset_id: str
    interval_start: datetime
    interval_s: int
    value_kw: float | None
    quality: str = Quality.ACTUAL
    billing: bool = False  # billing-quality meter data

    @property
    def measured(self) -> bool:
        return self.value_kw is not None and self.quality in MEASURED


class Readings(NamedTuple):
    """Measured intervals of the settled channel of a fleet's assets, as columns."""

    asset_index: np.ndarray  # position of each interval's asset in the fleet
    start_s: np.ndarray  # each interval's start [s since 1970, UTC]
    interval_s: np.ndarray  # each interval's length [s]
    value_kw: np.ndarray  # each interval's mean value of the channel, as reported [kW]
    billing: np.ndarray  # bool: billing-quality meter data (a utility's own, actual)

    @classmethod
    def of(cls, fleet: Fleet, readings: Sequence[Reading]) -> Readings:
        """The measured readings of the fleet's assets (others, and intervals reported missing
        or questionable, left out: their time is uncovered)."""
        index = {asset_id: i for i, asset_id in enumerate(fleet.asset_ids)}
        kept = [r for r in readings if r.measured and r.asset_id in index]
        return cls(
            np.fromiter((index[r.asset_id] for r in kept), np.intp, len(kept)),
            np.fromiter((r.interval_start.timestamp() for r in kept), float, len(kept)),
            np.fromiter((r.interval_s for r in kept), float, len(kept)),
            np.fromiter((r.value_kw for r in kept), float, len(kept)),
            np.fromiter((r.billing for r in kept), bool, len(kept)),
        )


class Revision(NamedTuple):
    """One revision of an instruction as settlement stored it, with dispatch's answer to it."""

    revision: int
    issued_at: datetime
    mw: float  # requested [MW]
    cancelled: bool  # the ISO calls the event off from `issued_at`
    kind: InstructionKind
    answer: DispatchStatus | None  # None: no answer seen (yet)
    mw_confirmed: float  # what the answer confirmed [MW]; 0 without one
    assets_commanded: int = 0  # assets the answer says were commanded; 0 without one
    commands_start: datetime | None = None  # when the answer says the commands start [UTC]

    @property
    def in_force(self) -> bool:
        """Answered, and not rejected, or rejected after its commands went out: dispatch answers
        `rejected` when no asset acknowledged, but the gateways may still apply what they were
        sent. A revision rejected with nothing commanded left the assets on the previous one."""
        return self.answer is not None and (
            self.answer != DispatchStatus.REJECTED or self.assets_commanded > 0
        )

    def start(self, window_start: datetime) -> datetime:
        """When the revision takes effect [UTC]: when dispatch's commands start, else (an answer
        that does not say) its issue time; not before the window's start."""
        return max(self.commands_start or self.issued_at, window_start)


@dataclass(frozen=True)
class Due:
    """A window to settle, on the terms of its instruction's revisions in force (see `terms`)."""

    instruction_id: str
    resource_id: str
    window_start: datetime
    window_end: datetime  # the settled end: the window's, or where a cancellation cut it
    requested_from_s: tuple[float, ...]  # when each request starts, by revision [s from start]
    requested_mw: tuple[float, ...]  # each request [MW]
    mw_confirmed: float  # the newest request's answer [MW]
    revision: int  # the highest revision in force
    kind: InstructionKind = InstructionKind.EVENT

    @property
    def paid(self) -> bool:
        """Whether the window earns or owes money: a capability test is scored, not paid."""
        return self.kind == InstructionKind.EVENT

    @property
    def withdraws(self) -> bool:
        """Whether nothing is requested: the terms of a version withdrawing a filed window (see
        `withdrawal`)."""
        return not self.requested_mw


def settled_end(
    window_start: datetime, window_end: datetime, revisions: Sequence[Revision]
) -> datetime:
    """Where settling a window ends [UTC]: the start (`Revision.start`) of the first
    cancellation in force (the lowest revision), clamped into [window_start, window_end]; the
    window's end without one. At `window_start`: the event was called off before it began,
    nothing to settle."""
    cancels = [r for r in revisions if r.in_force and r.cancelled]
    if not cancels:
        return window_end
    first = min(cancels, key=lambda r: r.revision)
    return min(first.start(window_start), window_end)


def requested_mw(edges_s: np.ndarray, from_s: ArrayLike, mw: ArrayLike) -> np.ndarray:
    """Each slot's requested power, time-weighted within the slot [MW].

    Request j holds `mw[j]` from `from_s[j]` until the next request starts (the last one until
    the window's end, `edges_s[-1]`); nothing is requested before the first (those slots are
    not assessed, see `assessed`). A request whose start lies before an earlier one's starts
    with it: a higher revision replaces a lower one, never the other way round.

    Parameters
    ----------
    edges_s : slot edges, increasing [s from the window start]
    from_s : when each request starts, in revision order [s from the window start]
    mw : each request [MW]
    """
    end_s = float(edges_s[-1])
    start_s = np.maximum.accumulate(np.clip(np.asarray(from_s, dtype=float), 0.0, end_s))
    stop_s = np.append(start_s[1:], end_s)
    mean_mw, _ = resample(
        np.zeros(start_s.size, np.intp), start_s, stop_s, np.asarray(mw, dtype=float), 1, edges_s
    )
    return mean_mw[0]


def assessed(edges_s: np.ndarray, from_s: ArrayLike) -> np.ndarray:
    """Which slots are assessed for money: those a request is in force in for some of their
    time. Requests hold from the first one's start to the window's end (see `requested_mw`), so
    every slot ending after that start is; none without a request.

    Parameters
    ----------
    edges_s : slot edges, increasing [s from the window start]
    from_s : when each request starts, in revision order [s from the window start]

    Returns
    -------
    One bool per slot.
    """
    starts = np.asarray(from_s, dtype=float)
    if starts.size == 0:
        return np.zeros(np.size(edges_s) - 1, dtype=bool)
    first_s = min(max(float(starts[0]), 0.0), float(edges_s[-1]))
    return np.asarray(edges_s[1:]) > first_s


def terms(
    instruction_id: str,
    resource_id: str,
    window_start: datetime,
    window_end: datetime,
    revisions: Sequence[Revision],
) -> Due | None:
    """What a window is settled on, from its instruction's revisions (the first revision's
    window): the revisions in force below the first cancellation in force, each requesting its
    MW from its start (`Revision.start`) until the next one, over [window_start,
    `settled_end`). None while no revision requesting delivery is in force, and when a
    cancellation leaves nothing of the window or of what was requested in it. Revisions that
    dispatch rejected with nothing commanded (one changing the window, one after a
    cancellation) are not in force: they change nothing."""
    ordered = sorted((r for r in revisions if r.in_force), key=lambda r: r.revision)
    end = settled_end(window_start, window_end, ordered)
    cut = next((r.revision for r in ordered if r.cancelled), None)
    asking = [r for r in ordered if cut is None or r.revision < cut]
    if not asking or asking[0].start(window_start) >= end:
        return None
    return Due(
        instruction_id=instruction_id,
        resource_id=resource_id,
        window_start=window_start,
        window_end=end,
        requested_from_s=tuple(
            (r.start(window_start) - window_start).total_seconds() for r in asking
        ),
        requested_mw=tuple(r.mw for r in asking),
        mw_confirmed=asking[-1].mw_confirmed,
        revision=cut if cut is not None else asking[-1].revision,
        kind=asking[0].kind,
    )


def withdrawal(
    instruction_id: str,
    resource_id: str,
    window_start: datetime,
    window_end: datetime,
    revisions: Sequence[Revision],
) -> Due:
    """The terms of a version withdrawing a filed window that `terms` now leaves nothing of (a
    cancellation in force at or before its start, come into force after the filing): the
    instruction's window, measured as ever, with nothing requested (so no slot is assessed and
    no money is owed or earned) and no MW confirmed; its revision is the cancellation's."""
    cancels = [r.revision for r in revisions if r.in_force and r.cancelled]
    return Due(
        instruction_id=instruction_id,
        resource_id=resource_id,
        window_start=window_start,
        window_end=window_end,
        requested_from_s=(),
        requested_mw=(),
        mw_confirmed=0.0,
        revision=min(cancels, default=max(r.revision for r in revisions)),
        kind=min(revisions, key=lambda r: r.revision).kind,
    )


@dataclass(frozen=True)
class Fleet:
    """The resource's assets enrolled as of the window, in one order."""

    asset_ids: Sequence[str]
    cohorts: Sequence[str]
    subscribers: Sequence[str]  # the asset id where no subscriber is recorded
    accredited_kw: np.ndarray  # each asset's accredited share: its rating [kW]

    @property
    def size(self) -> int:
        return len(self.asset_ids)


@dataclass(frozen=True)
class History:
    """Each asset's hourly mean of the settled channel in market time, as stored."""

    first_day: date
    hourly_kw: np.ndarray  # (n_assets, n_days, 24) channel values [kW]; NaN: not fully covered
    event_days: frozenset[date]  # days with an earlier event of the resource

    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=d) for d in range(self.hourly_kw.shape[1])]


@dataclass(frozen=True)
class Settlement:
    """A resource's delivery over one window: per slot, per asset, per hour and in total."""

    edges_s: np.ndarray  # slot edges, n_slots + 1 [s from window start]
    baseline_mw: np.ndarray  # per slot [MW]
    metered_mw: np.ndarray  # per slot [MW]
    delivered_mw: np.ndarray  # per slot [MW]
    coverage: np.ndarray  # per slot, share of enrolled asset-time measured [-]
    asset_delivered_mwh: np.ndarray  # per asset [MWh]
    methods: np.ndarray  # per asset, the baseline method used (or "none")
    window_mw: float  # time-weighted mean delivery over the window [MW]
    delivered_mwh: float  # [MWh]
    coverage_pct: float  # over the window [%]
    billing_complete: bool  # every asset's window wholly covered by billing-quality data
    assets_metered: int  # assets with measured data inside the window
    hours: list[HourlyDelivery]  # the ISO-format hourly report


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
    # Only the spans an interval can touch: an interval is at most an hour, a span 5 minutes.
    first = np.clip(np.searchsorted(hi_s, start_s, side="right"), 0, lo_s.size)
    energy_kws = np.zeros((n_assets, lo_s.size))  # [kW*s]
    seconds = np.zeros((n_assets, lo_s.size))  # [s]
    span = first.copy()
    live = np.flatnonzero(span < lo_s.size)
    while live.size:
        k = span[live]
        overlap_s = np.minimum(end_s[live], hi_s[k]) - np.maximum(start_s[live], lo_s[k])
        touching = overlap_s > 0
        rows, cols, o = asset_index[live][touching], k[touching], overlap_s[touching]
        np.add.at(energy_kws, (rows, cols), o * value_kw[live][touching])
        np.add.at(seconds, (rows, cols), o)
        span[live] += 1
        live = live[(span[live] < lo_s.size) & (end_s[live] > hi_s[k])]
    span_s = hi_s - lo_s
    return energy_kws / span_s, seconds / span_s


def _history_calendar(days: Sequence[date], event_days: frozenset[date]) -> tuple[np.ndarray, ...]:
    """(day kind, past event day, holiday) of each history day, for High X of Y."""
    return (
        np.array([DayKind.WEEKEND if d.weekday() >= 5 else DayKind.WEEKDAY for d in days]),
        np.array([d in event_days for d in days], dtype=bool),
        np.array([is_holiday(d) for d in days], dtype=bool),
    )


def day_baseline_kw(
    method: BaselineMethod,
    before_kw: np.ndarray,
    before_days: Sequence[date],
    event_days: frozenset[date],
    today_kw: np.ndarray,
    today: date,
    event_start: int,
    event_end: int,
) -> np.ndarray:
    """One method's baseline for the hours of one event day, from hourly data [kW per hour].

    Args:
        before_kw: hourly load of the days before, (..., n_days, 24) [kW]; NaN: missing
        before_days: those days' dates; event_days: days with an earlier event
        today_kw: the event day's hourly load, (..., 24) [kW]
        event_start, event_end: the event's local hours [event_start, event_end), 0-based
    Returns:
        (..., 24) [kW], NaN for an asset the method cannot serve (too few days, no readings).
        HOUR_BEFORE on hourly data is the hour just before the event, for every hour.
    """
    if method == BaselineMethod.HOUR_BEFORE:
        if event_start == 0:
            return np.full(today_kw.shape, np.nan)
        one = bl.hour_before(today_kw, event_start, 1, missing="nan")
        return np.broadcast_to(one[..., None], today_kw.shape).copy()
    if not before_days:  # the multi-day methods have no day to draw on
        return np.full(today_kw.shape, np.nan)
    kinds, past_events, holidays = _history_calendar(before_days, event_days)
    kind = day_kind(today)
    if method == BaselineMethod.MATCH_DAY:
        like = np.flatnonzero((kinds == kind) & ~holidays)[-bl.PJM_ECONOMIC_CBL.lookback_days :]
        return bl.match_day(
            before_kw[..., like, :],
            past_events[like],
            today_kw,
            event_start,
            event_end,
            missing="nan",
        )
    cbl = bl.high_x_of_y(
        before_kw, kinds, past_events, holidays, kind, event_start, event_end, missing="nan"
    )
    adjustment = bl.PJM_ADDITIVE_ADJUSTMENT
    window_start = event_start - adjustment.gap_hours - adjustment.hours
    if window_start < 0:  # an event early in the day: the window is cut at midnight
        adjustment = bl.AdditiveAdjustmentParams(
            hours=max(event_start - adjustment.gap_hours, 0),
            gap_hours=adjustment.gap_hours,
            cap_kw=adjustment.cap_kw,
            source=adjustment.source + " (cut at the event day's midnight)",
        )
    if adjustment.hours == 0:
        return cbl
    return bl.symmetric_additive_adjustment(
        cbl, today_kw, event_start, params=adjustment, missing="nan"
    )


def settle(
    due: Due,
    fleet: Fleet,
    readings: Readings,
    history: History,
    program: Program,
) -> Settlement:
    """Delivery of the fleet over the window; see the module docstring for the formulas.
    Readings are the settled channel's measured intervals from an hour before the window to
    its end."""
    n = fleet.size
    start_s = readings.start_s - due.window_start.timestamp()
    end_s = start_s + readings.interval_s
    value_kw = program.measured_kw(readings.value_kw)
    asset_index = readings.asset_index

    window_s = (due.window_end - due.window_start).total_seconds()
    edges_s = slot_edges_s(window_s)
    slot_s = np.diff(edges_s)
    metered_kw, covered = resample(asset_index, start_s, end_s, value_kw, n, edges_s)
    before_kw, before_covered = resample(
        asset_index, start_s, end_s, value_kw, n, np.array([-S_PER_H, 0.0])
    )
    hour_before_kw = np.divide(
        before_kw[:, 0],
        before_covered[:, 0],
        out=np.full(n, np.nan),
        where=before_covered[:, 0] >= HOUR_BEFORE_MIN_COVERED,
    )

    # Each slot's local day and hour; the baseline per asset for each.
    slot_starts = [due.window_start + timedelta(seconds=float(s)) for s in edges_s[:-1]]
    local = [program.clock.local_date(t) for t in slot_starts]
    local_hour = np.array([program.clock.local_hour(t) for t in slot_starts], dtype=np.intp)
    baseline_kw = np.full(covered.shape, np.nan)
    method_used = np.full(n, str(program.method), dtype=object)
    days = history.days()
    for today in sorted(set(local)):
        slots = np.array([d == today for d in local])
        hours = local_hour[slots]
        if program.method == BaselineMethod.HOUR_BEFORE or today not in days:
            day_kw = np.full((n, HOURS), np.nan)
        else:
            t = days.index(today)
            day_kw = day_baseline_kw(
                program.method,
                program.measured_kw(history.hourly_kw[:, :t, :]),
                days[:t],
                history.event_days | frozenset(local),  # a window across midnight: its own days
                program.measured_kw(history.hourly_kw[:, t, :]),
                today,
                int(hours.min()),
                int(hours.max()) + 1,
            )
        baseline_kw[:, slots] = day_kw[:, hours]
    has_method = ~np.isnan(baseline_kw).any(axis=1)
    fallback = ~has_method & ~np.isnan(hour_before_kw)
    baseline_kw[fallback] = hour_before_kw[fallback, None]
    method_used[fallback] = str(BaselineMethod.HOUR_BEFORE)
    credited = has_method | fallback
    method_used[~credited] = NO_BASELINE
    if program.model == ParticipationModel.DER_AGGREGATOR:
        baseline_kw = np.maximum(baseline_kw, 0.0)

    baseline_slot_kw = np.where(credited[:, None], baseline_kw * covered, 0.0)
    metered_credited_kw = np.where(credited[:, None], metered_kw, 0.0)
    delivered_kw = np.where(
        credited[:, None], bl.reduction_kw(baseline_slot_kw, metered_kw, program.model), 0.0
    )
    baseline_mw = baseline_slot_kw.sum(axis=0) / KW_PER_MW
    metered_mw = metered_credited_kw.sum(axis=0) / KW_PER_MW
    delivered_mw = delivered_kw.sum(axis=0) / KW_PER_MW
    # No asset enrolled: nothing to settle on (the deadline files what there is).
    coverage = covered.mean(axis=0) if n else np.zeros(slot_s.size)
    billed = readings.billing
    _, billing_covered = resample(
        asset_index[billed], start_s[billed], end_s[billed], value_kw[billed], n, edges_s
    )
    return Settlement(
        edges_s=edges_s,
        baseline_mw=baseline_mw,
        metered_mw=metered_mw,
        delivered_mw=delivered_mw,
        coverage=coverage,
        asset_delivered_mwh=(delivered_kw * slot_s).sum(axis=1) / S_PER_H / KW_PER_MW,
        methods=method_used,
        window_mw=float((delivered_mw * slot_s).sum() / window_s),
        delivered_mwh=float((delivered_mw * slot_s).sum() / S_PER_H),
        coverage_pct=float((coverage * slot_s).sum() / window_s * 100.0),
        billing_complete=bool(n) and bool((billing_covered >= 1.0 - 1e-9).all()),
        assets_metered=int((covered.sum(axis=1) > 0).sum()),
        hours=hourly_report(
            due.resource_id, local, local_hour, slot_s, baseline_mw, metered_mw, delivered_mw
        ),
    )


def hourly_report(
    registration_id: str,
    local_days: Sequence[date],
    local_hours: np.ndarray,
    slot_s: np.ndarray,
    baseline_mw: np.ndarray,
    metered_mw: np.ndarray,
    delivered_mw: np.ndarray,
) -> list[HourlyDelivery]:
    """Slots summed into local hours [kWh]: one row per hour the window touches, in the shape
    of a PJM demand-response settlement submission (registration, date, hour ending)."""
    rows: dict[tuple[date, int], np.ndarray] = {}
    kwh_per_mw_s = KW_PER_MW / S_PER_H
    for day, hour, s, b, m, d in zip(
        local_days, local_hours, slot_s, baseline_mw, metered_mw, delivered_mw, strict=True
    ):
        row = rows.setdefault((day, int(hour)), np.zeros(3))
        row += np.array([b, m, d]) * s * kwh_per_mw_s
    return [
        HourlyDelivery(
            registration_id=registration_id,
            date=day.isoformat(),
            hour_ending=hour + 1,
            baseline_kwh=round(float(b), KWH_DECIMALS) + 0.0,
            metered_kwh=round(float(m), KWH_DECIMALS) + 0.0,
            reduction_kwh=round(float(d), KWH_DECIMALS) + 0.0,
        )
        for (day, hour), (b, m, d) in sorted(rows.items())
    ]


def hourly_csv(rows: Sequence[HourlyDelivery]) -> str:
    """The ISO-format hourly report as CSV, one column per field of `HourlyDelivery` in order
    (registration, local date, hour ending, kWh to the Wh)."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [",".join(HourlyDelivery.model_fields)]
    lines += [",".join(cell(v) for v in row.model_dump().values()) for row in rows]
    return "\n".join(lines) + "\n"


def baseline_accuracy(
    history: History, today: date, event_start: int, event_end: int, program: Program
) -> list[BaselineAccuracy]:
    """Each method's relative RMSE on the resource's most recent non-event like-days: each
    test day's baseline computed as if it had been an event day over the same hours, against
    its metered load (summed over assets; an hour some assets miss is scaled up from the
    assets present). Same Day (3+2) is reported too, though it is not settled on (it needs
    hours after the event)."""
    days = history.days()
    load_kw = program.measured_kw(history.hourly_kw)
    present = (~np.isnan(load_kw)).sum(axis=0)
    total_kw = np.divide(
        np.nansum(load_kw, axis=0) * load_kw.shape[0],
        present,
        out=np.full(load_kw.shape[1:], np.nan),
        where=present > 0,
    )  # (n_days, 24)
    kind = day_kind(today)
    tests = [
        t
        for t, d in enumerate(days)
        if d < today and day_kind(d) == kind and d not in history.event_days and not is_holiday(d)
    ][-program.accuracy_days :]
    methods: list[str] = [*map(str, BaselineMethod), "pjm-same-day-3+2"]
    results = []
    for method in methods:
        predicted, actual = [], []
        for t in tests:
            if method == "pjm-same-day-3+2":
                try:
                    value = bl.same_day(total_kw[t], event_start, event_end, missing="nan")
                except ValueError:
                    continue
                guess = np.full(HOURS, float(value))
            else:
                guess = day_baseline_kw(
                    BaselineMethod(method),
                    total_kw[:t],
                    days[:t],
                    history.event_days,
                    total_kw[t],
                    days[t],
                    event_start,
                    event_end,
                )
            predicted.append(guess[event_start:event_end])
            actual.append(total_kw[t, event_start:event_end])
        try:
            if not predicted:
                raise ValueError("no test day has the hours it needs")
            rrmse = float(bl.relative_rmse(np.concatenate(predicted), np.concatenate(actual)))
        except ValueError as exc:
            results.append(
                BaselineAccuracy(
                    method=method, rrmse_pct=None, accepted=False, days=0, note=str(exc)
                )
            )
            continue
        results.append(
            BaselineAccuracy(
                method=method,
                rrmse_pct=round(rrmse * 100.0, PCT_DECIMALS),
                accepted=bool(bl.accepted(rrmse)),
                days=sum(not np.isnan(p).all() for p in predicted),
            )
        )
    return results


def performance_pct(delivered_mw: float, mw_requested: float) -> float:
    """Delivered over requested [%]; 0 when nothing was requested."""
    return delivered_mw / mw_requested * 100.0 if mw_requested > 0 else 0.0


# What a capability test is priced at: it is scored, not paid.
TEST_RATES = money.PerformanceRates(0.0, 0.0, source="capability test: scored, not paid")


def mean_mw(slot_mw: np.ndarray, slot_s: np.ndarray) -> float:
    """The time-weighted mean of per-slot powers over the window [MW]: sum_k p_k L_k / sum L_k."""
    return float(np.sum(np.asarray(slot_mw) * slot_s) / np.sum(slot_s))


def performance_money(
    requested_mw: np.ndarray,
    delivered_mw: np.ndarray,
    slot_s: np.ndarray,
    assessed_slots: np.ndarray,
    rates: money.PerformanceRates,
    day: date,
) -> PerformanceMoney:
    """The window assessed as Performance Assessment Intervals, one per 5-minute slot with a
    request in force: the resource owes what the ISO asked in the slot (committed UCAP x
    balancing ratio is the MW dispatched); each slot's shortfall is charged and its
    over-performance earns the bonus rate, so a slot short does not hide behind another over.
    A slot shorter than 5 minutes (the window's last) counts pro rata. Slots not assessed (no
    request in force yet) owe and earn nothing; expected and shortfall are time-weighted over
    the assessed slots (0 when none is).

    Args:
        requested_mw: each slot's request [MW] (see `requested_mw`)
        delivered_mw: each slot's delivery [MW]
        slot_s: each slot's length [s]
        assessed_slots: bool, whether each slot is assessed (see `assessed`)
    """
    counted = np.asarray(assessed_slots, dtype=bool)
    shortfall_mw = money.performance_shortfall_mw(requested_mw, delivered_mw)[counted]
    counted_s = np.asarray(slot_s, dtype=float)[counted]
    share = counted_s / SLOT_S  # of an assessment interval [-]
    charge_usd = money.non_performance_charge_usd(
        shortfall_mw, rates.charge_usd_per_mw_interval, share
    ).sum()
    bonus_usd = money.bonus_usd(shortfall_mw, rates.bonus_usd_per_mw_interval, share).sum()
    charge, bonus = money.to_cents(float(charge_usd)), money.to_cents(float(bonus_usd))
    expected_mw = mean_mw(np.asarray(requested_mw)[counted], counted_s) if counted.any() else 0.0
    mean_shortfall_mw = mean_mw(shortfall_mw, counted_s) if counted.any() else 0.0
    return PerformanceMoney(
        delivery_year=delivery_year(day),
        expected_mw=round(expected_mw, MW_DECIMALS) + 0.0,
        shortfall_mw=round(mean_shortfall_mw, MW_DECIMALS) + 0.0,
        intervals=int(counted.sum()),
        charge_rate_usd_per_mw_interval=rates.charge_usd_per_mw_interval,
        bonus_rate_usd_per_mw_interval=rates.bonus_usd_per_mw_interval,
        charge_cents=charge,
        bonus_cents=bonus,
        net_cents=bonus - charge,
    )


class Payout(NamedTuple):
    """A subscriber's part of one window's money [US cents] and delivered energy [Wh]."""

    subscriber_id: str
    cohort: str
    assets: int
    delivered_wh: int
    cents: int


def _money_weights(
    accredited_kw: np.ndarray, delivered_mwh: np.ndarray, net_cents: int
) -> np.ndarray:
    """Who carries a window's money: a charge by accredited share (the obligation is shared
    by what each sold), a bonus by energy delivered (by accredited share when none was; evenly
    when no rating is known)."""
    delivered = np.maximum(delivered_mwh, 0.0)
    if net_cents > 0 and delivered.sum() > 0:
        return delivered
    if accredited_kw.sum() > 0:
        return accredited_kw
    return np.ones_like(accredited_kw)  # no ratings known (records kept before v2): per asset


def attribute(
    fleet: Fleet, settlement: Settlement, net_cents: int
) -> tuple[list[CohortSettlement], list[Payout]]:
    """Per cohort (sorted): assets, delivered energy [MWh, to the Wh], share of the net
    delivered energy [%, 3 decimals; 0 when the net is 0], accredited kW and money; and per
    subscriber within each cohort: the money split to the cent, summing exactly to the
    cohort's, which sum exactly to `net_cents`."""
    if fleet.size == 0:
        return [], []
    cohorts, which = np.unique(np.asarray(fleet.cohorts, dtype=str), return_inverse=True)
    per_asset_mwh = settlement.asset_delivered_mwh
    mwh = np.bincount(which, weights=per_asset_mwh, minlength=cohorts.size)
    accredited = np.bincount(which, weights=fleet.accredited_kw, minlength=cohorts.size)
    counts = np.bincount(which, minlength=cohorts.size)
    total_mwh = float(per_asset_mwh.sum())

    # Subscribers within cohorts: one row per (cohort, subscriber).
    subscribers = np.asarray(fleet.subscribers, dtype=str)
    pairs, pair_of = np.unique(
        np.char.add(np.char.add(cohorts[which], "\x1f"), subscribers), return_inverse=True
    )
    pair_cohort = np.empty(pairs.size, dtype=np.intp)
    pair_cohort[pair_of] = which
    pair_mwh = np.bincount(pair_of, weights=per_asset_mwh, minlength=pairs.size)
    pair_kw = np.bincount(pair_of, weights=fleet.accredited_kw, minlength=pairs.size)
    pair_assets = np.bincount(pair_of, minlength=pairs.size)
    cohort_weights = _money_weights(accredited, mwh, net_cents)
    if net_cents == 0 or cohort_weights.sum() == 0:
        cohort_cents = np.zeros(cohorts.size, dtype=np.int64)
        subscriber_cents = [
            np.zeros(int((pair_cohort == c).sum()), np.int64) for c in range(cohorts.size)
        ]
    else:
        split = money.split_cents_by_cohort(
            net_cents,
            cohort_weights,
            [
                _money_weights(pair_kw[pair_cohort == c], pair_mwh[pair_cohort == c], net_cents)
                for c in range(cohorts.size)
            ],
        )
        cohort_cents, subscriber_cents = split.cohort_cents, list(split.subscriber_cents)
    summary = [
        CohortSettlement(
            cohort=str(name),
            assets=int(k),
            delivered_mwh=round(float(e), MW_DECIMALS) + 0.0,
            share_pct=round(float(e) / total_mwh * 100.0, PCT_DECIMALS) if total_mwh != 0 else 0.0,
            accredited_kw=round(float(kw), KWH_DECIMALS),
            performance_cents=int(cents),
        )
        for name, k, e, kw, cents in zip(
            cohorts, counts, mwh, accredited, cohort_cents, strict=True
        )
    ]
    payouts = []
    for c in range(cohorts.size):
        members = np.flatnonzero(pair_cohort == c)
        for member, cents in zip(members, subscriber_cents[c], strict=True):
            payouts.append(
                Payout(
                    subscriber_id=str(pairs[member]).split("\x1f", 1)[1],
                    cohort=str(cohorts[c]),
                    assets=int(pair_assets[member]),
                    delivered_wh=round(float(pair_mwh[member]) * WH_PER_MWH),
                    cents=int(cents),
                )
            )
    return summary, payouts


def intervals_csv(window_start: datetime, settlement: Settlement, requested: np.ndarray) -> str:
    """`interval_start,baseline_mw,metered_mw,delivered_mw,coverage_pct,requested_mw`, one row
    per slot: ISO 8601 UTC starts, MW to 4 decimals, coverage to 1. The request comes last, so
    a reader of the columns before it by position still reads them."""

    def mw(value: float) -> str:
        return f"{round(value, 4) + 0.0:.4f}"  # + 0.0 turns -0.0 into 0.0: no "-0.0000"

    rows = ["interval_start,baseline_mw,metered_mw,delivered_mw,coverage_pct,requested_mw"]
    for start_s, b, m, d, c, r in zip(
        settlement.edges_s[:-1],
        settlement.baseline_mw,
        settlement.metered_mw,
        settlement.delivered_mw,
        settlement.coverage,
        requested,
        strict=True,
    ):
        start = (window_start + timedelta(seconds=float(start_s))).isoformat()
        rows.append(f"{start.replace('+00:00', 'Z')},{mw(b)},{mw(m)},{mw(d)},{c * 100:.1f},{mw(r)}")
    return "\n".join(rows) + "\n"


def _wh(mwh: float) -> int:
    return round(mwh * WH_PER_MWH)


def _slot_wh(csv: str, column: int) -> dict[str, int]:
    """Per-hour Wh of one column of an ISO-format CSV, keyed 'YYYY-MM-DD HEnn'."""
    out = {}
    for line in csv.splitlines()[1:]:
        cells = line.split(",")
        out[f"{cells[1]} HE{int(cells[2]):02d}"] = round(float(cells[column]) * 1000)
    return out


def diff(new: SettlementFiled, old: SettlementFiled) -> SettlementDiff:
    """What changed from `old` to `new`, to the watt-hour."""

    def baseline_mwh(report: SettlementFiled) -> float:
        return sum(h.baseline_kwh for h in report.iso_report) / KW_PER_MW

    def metered_mwh(report: SettlementFiled) -> float:
        return sum(h.metered_kwh for h in report.iso_report) / KW_PER_MW

    new_hours, old_hours = _slot_wh(new.iso_report_csv, 5), _slot_wh(old.iso_report_csv, 5)
    new_cohorts = {c.cohort: _wh(c.delivered_mwh) for c in new.cohorts}
    old_cohorts = {c.cohort: _wh(c.delivered_mwh) for c in old.cohorts}
    hours = {
        h: new_hours.get(h, 0) - old_hours.get(h, 0)
        for h in sorted(new_hours.keys() | old_hours.keys())
        if new_hours.get(h, 0) != old_hours.get(h, 0)
    }
    cohorts = {
        c: new_cohorts.get(c, 0) - old_cohorts.get(c, 0)
        for c in sorted(new_cohorts.keys() | old_cohorts.keys())
        if new_cohorts.get(c, 0) != old_cohorts.get(c, 0)
    }
    return SettlementDiff(
        previous_report_id=old.report_id,
        delivered_wh=_wh(new.delivered_mwh) - _wh(old.delivered_mwh),
        baseline_wh=_wh(baseline_mwh(new)) - _wh(baseline_mwh(old)),
        metered_wh=_wh(metered_mwh(new)) - _wh(metered_mwh(old)),
        coverage_pct=round(new.coverage_pct - old.coverage_pct, PCT_DECIMALS) + 0.0,
        assets_metered=new.assets_metered - old.assets_metered,
        hours_wh=hours,
        cohorts_wh=cohorts,
    )


def changed(d: SettlementDiff) -> bool:
    """Whether a new version's data says anything the previous did not, to the Wh."""
    return bool(
        d.delivered_wh
        or d.baseline_wh
        or d.metered_wh
        or d.coverage_pct
        or d.assets_metered
        or d.hours_wh
        or d.cohorts_wh
    )


# What a new revision of the instruction can change in a report without changing its data.
TERMS = ("window_end", "mw_requested", "mw_confirmed", "revision", "kind")


def differs(new: SettlementFiled, old: SettlementFiled) -> bool:
    """Whether a new version says anything the previous did not: in its data to the Wh, in the
    terms of the instruction (a revision, a cancellation, an answer), or in its money."""
    return (
        changed(diff(new, old))
        or any(getattr(new, name) != getattr(old, name) for name in TERMS)
        or new.performance != old.performance
        or [c.performance_cents for c in new.cohorts] != [c.performance_cents for c in old.cohorts]
    )


def report_id(instruction_id: str, version: int) -> str:
    return f"SR-{instruction_id}-v{version}"


def build_report(
    due: Due,
    fleet: Fleet,
    settlement: Settlement,
    accuracy: list[BaselineAccuracy],
    program: Program,
    data_quality: DataQuality,
    previous: SettlementFiled | None,
    filed_at: datetime,
) -> tuple[SettlementFiled, list[Payout]]:
    """The next version of the window's report (version 1 without `previous`), and the
    subscribers' payouts. On a withdrawal's terms (`Due.withdraws`) it asks 0 MW, assesses no
    interval and carries no money: the marker readers know a withdrawal by."""
    version = previous.version + 1 if previous else 1
    slot_s = np.diff(settlement.edges_s)
    requested = requested_mw(settlement.edges_s, due.requested_from_s, due.requested_mw)
    mw_requested = round(mean_mw(requested, slot_s), MW_DECIMALS) + 0.0
    performance = performance_money(
        requested,
        settlement.delivered_mw,
        slot_s,
        assessed(settlement.edges_s, due.requested_from_s),
        program.rates if due.paid else TEST_RATES,
        program.clock.local_date(due.window_start),
    )
    cohorts, payouts = attribute(fleet, settlement, performance.net_cents)
    methods, counts = np.unique(settlement.methods.astype(str), return_counts=True)
    report = SettlementFiled(
        window_start=due.window_start,
        window_end=due.window_end,
        report_id=report_id(due.instruction_id, version),
        instruction_id=due.instruction_id,
        resource_id=due.resource_id,
        version=version,
        supersedes=previous.report_id if previous else None,
        data_quality=data_quality,
        participation_model=str(program.model),
        baseline_method=str(program.method),
        baseline_methods={str(m): int(k) for m, k in zip(methods, counts, strict=True)},
        baseline_accuracy=accuracy,
        mw_requested=mw_requested,
        mw_confirmed=due.mw_confirmed,
        revision=due.revision,
        kind=due.kind,
        delivered_mw=round(settlement.window_mw, MW_DECIMALS) + 0.0,
        delivered_mwh=round(settlement.delivered_mwh, MW_DECIMALS) + 0.0,
        performance_pct=round(performance_pct(settlement.window_mw, mw_requested), PCT_DECIMALS)
        + 0.0,
        assets_enrolled=fleet.size,
        assets_metered=settlement.assets_metered,
        coverage_pct=round(settlement.coverage_pct, PCT_DECIMALS),
        coverage_threshold_pct=round(program.coverage_threshold * 100.0, PCT_DECIMALS),
        intervals_csv=intervals_csv(due.window_start, settlement, requested),
        iso_report=settlement.hours,
        iso_report_csv=hourly_csv(settlement.hours),
        performance=performance,
        cohorts=cohorts,
        filed_at=filed_at,
    )
    if previous is not None:
        report = report.model_copy(update={"diff": diff(report, previous)})
    return report, payouts
