"""Pure dispatch rules: what each asset can deliver over a window, how to share a request, and
what the answer to an instruction is.

The per-asset functions are vectorized (numpy arrays, one element per asset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nexwatt_shared.contracts import (
    MAX_SETPOINTS_PER_COMMAND,
    DispatchInstruction,
    DispatchStatus,
)
from nexwatt_shared.event_time import resource_clock
from nexwatt_shared.power_model import AssetRatings, deliverable_kw

FloatArray = NDArray[np.float64]
SETPOINT_ROUNDING_MW = 0.5e-6  # setpoints are sent rounded to the watt [MW]


def usable(
    value: ArrayLike, age_s: ArrayLike, max_age_s: float, max_ahead_s: float = 0.0
) -> NDArray[np.bool_]:
    """Whether each asset's channel (its PV, its SoC) can be relied on: its value is known (not
    NaN: never reported, or reported missing or questionable) and its newest interval is
    neither older than ``max_age_s`` (never reported: pass an ``inf`` age) nor ends more than
    ``max_ahead_s`` after now (a negative age: a clock running ahead, which would otherwise
    keep the channel "fresh" for as long as it is ahead).

    Parameters
    ----------
    value : the channel's newest value per asset; NaN = unknown
    age_s : event time now minus that interval's end [s]
    max_age_s : freshness limit [s]
    max_ahead_s : how far telemetry may end after now, for clocks that disagree a little [s]
    """
    age = np.asarray(age_s, float)
    return ~np.isnan(np.asarray(value, float)) & (age <= max_age_s) & (age >= -max_ahead_s)


def dispatchable_kw(
    ratings: AssetRatings,
    pv_kw: ArrayLike,
    soc_pct: ArrayLike,
    hours: float,
    pv_age_s: ArrayLike,
    soc_age_s: ArrayLike,
    max_age_s: float,
    max_ahead_s: float = 0.0,
    has_pv: ArrayLike | None = None,
) -> FloatArray:
    """Battery discharge each asset can hold for the rest of the window [kW]: what it can
    deliver (`nexwatt_shared.power_model.deliverable_kw`: battery rating, inverter headroom by
    coupling, energy above the reserve over ``hours`` after losses), and zero for an asset
    whose state is not known: its PV or its SoC is unknown or not fresh (`usable`, each channel
    by its own age). Unknown is never taken as 0: an unknown SoC would credit no energy anyway,
    but an unknown PV taken as 0 would overstate a DC-coupled inverter's headroom.

    Parameters
    ----------
    ratings : the assets' ratings
    pv_kw, soc_pct : PV output [kW] and state of charge [%]; NaN = unknown
    hours : time from now to the window's end [h], > 0
    pv_age_s, soc_age_s : event time now minus each channel's newest interval end [s]
    max_age_s, max_ahead_s : as in ``usable`` [s]
    has_pv : whether PV sits behind each asset's inverter (None: all); a battery-only asset
        has no PV to report: its PV is 0, always known
    """
    pv_kw, pv_ok = pv_state(pv_kw, pv_age_s, max_age_s, max_ahead_s, has_pv)
    known = pv_ok & usable(soc_pct, soc_age_s, max_age_s, max_ahead_s)
    limit = deliverable_kw(
        ratings, np.where(known, pv_kw, 0.0), np.where(known, soc_pct, np.nan), hours
    )
    return np.where(known, limit, 0.0)


def pv_state(
    pv_kw: ArrayLike,
    pv_age_s: ArrayLike,
    max_age_s: float,
    max_ahead_s: float,
    has_pv: ArrayLike | None,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Each asset's PV [kW] and whether it can be relied on (`usable`): an asset without PV
    has 0 kW, known whatever its age."""
    pv = np.asarray(pv_kw, float)
    no_pv = np.zeros(pv.shape, bool) if has_pv is None else ~np.asarray(has_pv, bool)
    return np.where(no_pv, 0.0, pv), usable(pv, pv_age_s, max_age_s, max_ahead_s) | no_pv


def unavailable_reason(pv_usable: ArrayLike, soc_usable: ArrayLike) -> str:
    """Why no asset of a resource could be dispatched, counted per cause (`usable` of each
    asset's PV and SoC); the assets whose state is known were at their reserve or had no
    inverter headroom left."""
    pv_ok, soc_ok = np.asarray(pv_usable, bool), np.asarray(soc_usable, bool)
    n = pv_ok.size
    causes = [
        f"{int(count)} of {n} assets {what}"
        for count, what in (
            ((~soc_ok).sum(), "with SoC unknown or stale"),
            ((~pv_ok).sum(), "with PV unknown or stale"),
            ((pv_ok & soc_ok).sum(), "at their reserve or without inverter headroom"),
        )
        if count
    ]
    return "no asset available: " + "; ".join(causes)


def telemetry_age_s(
    issued_s: float, telemetry_end_s: ArrayLike, channel_end_s: ArrayLike | None = None
) -> FloatArray:
    """Each asset's telemetry age [s]: from the later of the instruction's issue time and the
    resource's clock (``nexwatt_shared.event_time.resource_clock`` over each asset's newest
    end) to its newest interval's end, or to ``channel_end_s`` (one channel's newest end). An
    instruction handled late (consumer lag, a restart) meets telemetry newer than its issue
    time, which is not "ahead"; an asset whose clock runs ahead of most of its resource gets a
    negative age.

    Parameters
    ----------
    issued_s : the instruction's issue time [s since the epoch]
    telemetry_end_s : each asset's newest interval end, over its channels [s since the epoch];
        -inf or NaN = none (an infinite age)
    channel_end_s : one channel's newest interval end per asset [s since the epoch], whose age
        is wanted; None = the ages of ``telemetry_end_s``
    """
    known = np.asarray(telemetry_end_s, float)
    known = np.where(np.isfinite(known), known, np.nan)
    now_s = np.fmax(issued_s, resource_clock(known))
    ends = np.asarray(telemetry_end_s if channel_end_s is None else channel_end_s, float)
    return np.where(np.isfinite(ends), now_s - ends, np.inf)


def allocate(
    requested_kw: float,
    limits_kw: ArrayLike,
    min_setpoint_kw: float = 0.0,
    performance_ratio: ArrayLike | None = None,
) -> FloatArray:
    """Share ``requested_kw`` over assets in proportion to their limits, never above a limit,
    so that what the assets are expected to deliver covers the request.

    An asset is expected to deliver its setpoint x its performance ratio (what it delivered of
    what it was commanded before; 1 when unknown). With the limits' expected sum E =
    sum(limit x ratio): when E is below the request every asset gets its limit; otherwise
    each gets ``limit * requested / E``, so the expected deliveries add up to the request
    (over-dispatch: with ratios of 1 the setpoints add up to the request). A share below
    ``min_setpoint_kw`` is not worth a command: that asset is dropped and the request shared
    again over the rest, until every share is worth sending (each round drops at least one
    asset, so it ends).

    Parameters
    ----------
    requested_kw : total requested [kW], >= 0
    limits_kw : what each asset can hold [kW], >= 0
    min_setpoint_kw : smallest setpoint worth a command [kW]
    performance_ratio : each asset's expected delivery per kW commanded [-], in (0, 1]
        (`performance_ratio`); None = 1 for all
    """
    limits = np.asarray(limits_kw, float)
    ratio = np.ones_like(limits) if performance_ratio is None else np.asarray(performance_ratio)
    expected = limits * ratio
    active = limits > 0
    while requested_kw > 0 and active.any():
        share = min(1.0, requested_kw / expected[active].sum())
        setpoints = np.where(active, limits * share, 0.0)
        too_small = active & (setpoints < min_setpoint_kw)
        if not too_small.any():
            return setpoints
        active &= ~too_small
    return np.zeros_like(limits)


def performance_ratio(
    delivered_kwh: ArrayLike, commanded_kwh: ArrayLike, floor: float = 0.1
) -> FloatArray:
    """Each asset's delivery per kWh commanded over its past events [-]: delivered /
    commanded, at most 1 (delivering more earns no credit for the next event) and at least
    `floor` (an asset that delivered nothing is still commanded, but counted for little);
    1 for an asset never commanded (nothing known against it).

    Parameters
    ----------
    delivered_kwh : energy each asset delivered in its commanded windows [kWh], >= 0
    commanded_kwh : energy it was commanded over those windows [kWh], >= 0
    floor : the lowest ratio [-], in (0, 1]
    """
    delivered = np.asarray(delivered_kwh, float)
    commanded = np.asarray(commanded_kwh, float)
    ratio = np.divide(delivered, commanded, out=np.ones_like(commanded), where=commanded > 0)
    return np.clip(ratio, floor, 1.0)


class CommandWindow(NamedTuple):
    """When the commands for an instruction run, and why not over the whole window."""

    start: datetime
    end: datetime
    note: str | None  # None: the instruction's whole window


def command_window(
    window_start: datetime, window_end: datetime, issued_at: datetime, lead_time: timedelta
) -> CommandWindow | None:
    """The one rule for when commands run: from the later of the window's start and the
    instruction's issue time plus the fleet's lead time (gateways need it to reach every
    asset), to the window's end; None when nothing of the window is left.

    An instruction for a window already running is answered for what can still be delivered,
    and the note says so: issued 09:17 for 09:15-10:15 with 1 minute of lead time, the
    commands cover 09:18-10:15.
    """
    start = max(window_start, issued_at + lead_time)
    if start >= window_end:
        return None
    if start == window_start:
        return CommandWindow(start, window_end, None)
    return CommandWindow(
        start,
        window_end,
        f"the window opened at {window_start:%H:%M} UTC; commands cover"
        f" {start:%H:%M}-{window_end:%H:%M} UTC, what can still be delivered",
    )


class Answer(NamedTuple):
    """An asset's answer to its setpoint (an ack entry, without the rest of the message)."""

    accepted: bool
    setpoint_kw: float


class Acknowledged(NamedTuple):
    kw: dict[str, float]  # acknowledged setpoint per asset [kW]; 0: refused
    above_command: int  # acks for more than the asset was commanded: ignored
    not_commanded: int  # acks of assets the round did not command: ignored


def acknowledged_kw(
    commanded_kw: Mapping[str, float], answers: Mapping[str, Answer]
) -> Acknowledged:
    """What each commanded asset acknowledged it holds [kW]: its accepted setpoint, 0 for a
    refusal; an ack for more than commanded (beyond the watt setpoints are rounded to) and acks
    of assets not commanded are ignored and counted. Assets without an answer are left out."""
    acked: dict[str, float] = {}
    above = matched = 0
    for asset_id, commanded in commanded_kw.items():
        answer = answers.get(asset_id)
        if answer is None:
            continue
        matched += 1
        if answer.setpoint_kw > commanded + 0.0005:
            above += 1
            continue
        acked[asset_id] = answer.setpoint_kw if answer.accepted else 0.0
    return Acknowledged(acked, above, len(answers) - matched)


@dataclass(frozen=True)
class EventLimits:
    """What a program promises its subscribers: at most this many events a season, each at
    most this long."""

    max_events_per_season: int
    max_hours_per_event: float  # [h]
    source: str


def season_start(when: datetime) -> datetime:
    """The start of the program season `when` falls in [UTC]: summer from April 1, winter from
    October 1 (to March 31), the halves of the year a subscriber's event count starts over."""
    year, month = when.year, when.month
    if 4 <= month <= 9:
        return datetime(year, 4, 1, tzinfo=when.tzinfo)
    return datetime(year if month >= 10 else year - 1, 10, 1, tzinfo=when.tzinfo)


def within_limits(events_this_season: ArrayLike, hours: float, limits: EventLimits) -> NDArray:
    """Which assets may take part in an event of `hours` [h]: their subscriber's events this
    season are below the program's maximum, and the event is no longer than its maximum per
    event (an asset is not commanded for part of an event: the subscriber was promised the
    whole limit)."""
    used = np.asarray(events_this_season)
    return (used < limits.max_events_per_season) & (hours <= limits.max_hours_per_event)


def instruction_refusal(
    instruction: DispatchInstruction,
    resource_known: bool,
    earlier: DispatchInstruction | None,
    other_revisions: Sequence[DispatchInstruction] = (),
) -> str | None:
    """Why an instruction is answered `rejected` before any asset is looked at, else None:
    its id and revision were used for a different instruction (the same one again is a
    replay, not a refusal), a higher revision of it came first, the event was already called
    off, a revision moves the window (a revision changes the MW or cancels: another window is
    another instruction), its MW is not positive, its window is over when it is issued, or its
    resource has no enrolled asset. A cancellation needs none of the last four: it only stops
    what was commanded.

    Parameters
    ----------
    instruction : the instruction received
    resource_known : whether its resource has enrolled assets
    earlier : what was first received under its id and revision, if anything
    other_revisions : the other revisions of its id received before it
    """
    i = instruction
    if earlier is not None and earlier != i:
        return (
            f"instruction id {i.instruction_id!r} revision {i.revision} was already used for"
            " another instruction"
        )
    latest = max((o.revision for o in other_revisions), default=0)
    if latest > i.revision:
        return f"superseded: revision {latest} of this instruction came first"
    called_off = sorted(o.revision for o in other_revisions if o.cancelled)
    if called_off:
        return f"the event was cancelled in revision {called_off[0]}"
    if i.cancelled:
        return None
    first = min(other_revisions, key=lambda o: o.revision, default=i)
    if (i.window_start, i.window_end) != (first.window_start, first.window_end):
        return (
            f"a revision keeps the window of revision {first.revision}"
            f" ({first.window_start:%Y-%m-%d %H:%M}-{first.window_end:%H:%M} UTC); another"
            " window is another instruction"
        )
    if i.mw <= 0:
        return f"mw must be positive, got {i.mw:g}"
    if i.window_end <= i.issued_at:
        return f"the window ended at {i.window_end:%Y-%m-%d %H:%M} UTC, before it was issued"
    if not resource_known:
        return f"unknown resource {i.resource_id!r}: no enrolled assets"
    return None


def shortfall_reason(requested_mw: float, expected_kw: ArrayLike) -> str | None:
    """Why the fleet can't meet the request in full (what the assets are expected to deliver
    at their limits adds up to less), else None.

    Parameters
    ----------
    requested_mw : the request [MW]
    expected_kw : each usable asset's limit times its performance ratio [kW]
    """
    total_kw = float(np.sum(expected_kw))
    if total_kw >= requested_mw * 1000 - SETPOINT_ROUNDING_MW * 1000 * np.size(expected_kw):
        return None
    return f"fleet limit {total_kw / 1000:.3f} MW"


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
    confirmed_mw : what the acknowledged setpoints are expected to deliver (each times its
        asset's performance ratio) [MW]
    commanded : assets sent a setpoint (replacements included)
    acknowledged : assets that answered (accepting or refusing) in time
    shortfall : why the fleet could not cover the request (``shortfall_reason``), or why
        nothing was commanded; None when it could

    Rejected when nothing was commanded or nothing acknowledged; confirmed when the expected
    delivery covers the request (to the watt each setpoint is rounded to); partial otherwise,
    naming the shortfall and the assets that did not answer.
    """
    if commanded == 0:
        return DispatchStatus.REJECTED, shortfall
    if confirmed_mw <= 0:
        return DispatchStatus.REJECTED, "no asset acknowledged its setpoint in time"
    if confirmed_mw + commanded * SETPOINT_ROUNDING_MW >= requested_mw:
        return DispatchStatus.CONFIRMED, None
    notes = [shortfall] if shortfall else []
    if acknowledged < commanded:
        notes.append(
            f"{commanded - acknowledged} of {commanded} assets did not acknowledge in time"
        )
    return DispatchStatus.PARTIAL, "; ".join(notes) or "assets acknowledged less than commanded"


class CommandMessage(NamedTuple):
    """One `asset.command` message: a gateway's setpoints (or a part of them)."""

    command_id: str
    gateway_id: str
    asset_ids: list[str]
    setpoints_kw: list[float]  # rounded to the watt


def command_messages(
    instruction: DispatchInstruction,
    asset_ids: Sequence[str],
    gateway_ids: Sequence[str],
    setpoints_kw: ArrayLike,
    round_: int = 0,
) -> list[CommandMessage]:
    """The messages for setpoints [kW] (one per asset, in `asset_ids` order): one per gateway,
    in parts of at most `MAX_SETPOINTS_PER_COMMAND`, setpoints rounded to the watt. Ids are
    deterministic (`<instruction>:r<revision>:<gateway>:<round>-<part>`), so a message sent
    again is the same message to its gateway; `round_` tells apart the replacements sent after
    the first round's acks."""
    by_gateway: dict[str, tuple[list[str], list[float]]] = {}
    rounded = np.round(np.asarray(setpoints_kw, float), 3).tolist()
    for asset_id, gateway_id, kw in zip(asset_ids, gateway_ids, rounded, strict=True):
        assets, kws = by_gateway.setdefault(gateway_id, ([], []))
        assets.append(asset_id)
        kws.append(kw)
    prefix = f"{instruction.instruction_id}:r{instruction.revision}"
    step = MAX_SETPOINTS_PER_COMMAND
    return [
        CommandMessage(
            f"{prefix}:{gateway_id}:{round_}-{part}",
            gateway_id,
            assets[start : start + step],
            kws[start : start + step],
        )
        for gateway_id, (assets, kws) in by_gateway.items()
        for part, start in enumerate(range(0, len(assets), step))
    ]


def command_payload(
    instruction: DispatchInstruction, window: CommandWindow, message: CommandMessage
) -> dict[str, object]:
    """The `asset.command` payload of a message, as plain values for `codec.encode_data`
    (the contract's fields, built without a model per setpoint)."""
    i = instruction
    return {
        "window_start": window.start,
        "window_end": window.end,
        "command_id": message.command_id,
        "instruction_id": i.instruction_id,
        "revision": i.revision,
        "kind": i.kind.value,
        "resource_id": i.resource_id,
        "gateway_id": message.gateway_id,
        "setpoints": [
            {"asset_id": a, "setpoint_kw": kw}
            for a, kw in zip(message.asset_ids, message.setpoints_kw, strict=True)
        ],
        "issued_at": i.issued_at,
    }
