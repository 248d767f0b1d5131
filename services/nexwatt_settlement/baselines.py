"""Customer baselines: what a site would have drawn without an event, and what it delivered.

A pure library; settlement (`nexwatt_settlement.domain`) applies it to each asset. The
delivered reduction of a site measured at its meter is baseline - metered load [kW].

Conventions:

- Load is the site's metered consumption [kW], positive when drawing from the grid. A history
  of days is shaped (..., n_days, n_intervals), oldest day first, for one asset or with
  leading axes (e.g. assets) that every function carries through. Per-day flags (day kind,
  past event day, holiday) form a calendar shared by all assets: shape (n_days,).
- Intervals are 0-based. With hourly data, index h is the hour from h:00 to h+1:00, which is
  hour ending h+1 ("HE h+1"). An event is the half-open index range [event_start, event_end):
  the event HE13-HE17 (12:00-17:00) is event_start=12, event_end=17.
- NaN is a missing reading. A day with any missing interval is never a candidate day of a
  multi-day baseline (High X of Y, Match Day). Means over a window (Same Day, Hour Before, the
  additive adjustment, Peak Load Contribution) and the relative RMSE use the readings present.
  A window with no readings, or too few candidate days, raises ValueError; with
  `missing="nan"` the functions that settle many assets at once give NaN for those assets
  instead, so one asset without history does not stop the others.
- Method parameters are data: one frozen dataclass per method, and a module constant holding
  the values used by default, whose `source` says where they come from. None was read from a
  primary PJM manual: they follow common secondary descriptions of PJM's rules, and the values
  marked as Nexwatt placeholders are our own choices, to be checked before settling real money.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

NOT_FROM_MANUAL = "not read from a primary PJM manual; verify before relying on it"
Missing = Literal["raise", "nan"]  # what a function does for an asset it cannot compute


class DayKind(StrEnum):
    """Which like-days a High X of Y baseline draws on. An event on a holiday is settled as a
    WEEKEND event; a holiday itself is never a candidate day."""

    WEEKDAY = "weekday"
    WEEKEND = "weekend"  # Saturday or Sunday


class ParticipationModel(StrEnum):
    """How a battery's discharge is credited."""

    DEMAND_RESPONSE = "demand-response"  # PJM demand response: site meter, export not credited
    DER_AGGREGATOR = "der-aggregator"  # DER aggregator (FERC Order 2222): export counted


@dataclass(frozen=True)
class HighXOfYParams:
    """High X of Y: the baseline is the mean of the X highest of the Y most recent eligible
    like-days, within the last `lookback_days` days of the history."""

    weekday_x: int
    weekday_y: int
    weekend_x: int  # weekends and holidays
    weekend_y: int
    lookback_days: int
    low_usage_fraction: float  # a day below this share of the candidates' mean is low-usage [-]
    source: str

    def x_of_y(self, kind: DayKind) -> tuple[int, int]:
        """(X, Y) for an event on a day of `kind`."""
        if kind == DayKind.WEEKDAY:
            return self.weekday_x, self.weekday_y
        return self.weekend_x, self.weekend_y


@dataclass(frozen=True)
class AdditiveAdjustmentParams:
    """The adjustment window is the `hours` hours ending `gap_hours` hours before the event
    start; the adjustment is limited to +-`cap_kw` (None: uncapped)."""

    hours: int
    gap_hours: int
    cap_kw: float | None
    source: str


@dataclass(frozen=True)
class SameDayParams:
    """Same Day: `hours_before` hours before the event after skipping `skip_before` hours next
    to its start, and `hours_after` hours after it after skipping `skip_after` hours."""

    hours_before: int
    skip_before: int
    hours_after: int
    skip_after: int
    source: str


@dataclass(frozen=True)
class MatchDayParams:
    """Match Day: the mean of the `days` closest non-event days, compared outside the event
    hours and `adjacent_hours` hours on either side of them."""

    days: int
    adjacent_hours: int
    source: str


@dataclass(frozen=True)
class HourBeforeParams:
    """Hour Before: the mean load over the `hours` hours just before the event."""

    hours: int
    source: str


@dataclass(frozen=True)
class PeakLoadContributionParams:
    """PLC: the mean load over `peak_hours` coincident system peak hours."""

    peak_hours: int
    source: str


@dataclass(frozen=True)
class AccuracyParams:
    """A baseline is accepted when its relative RMSE on non-event days is below the limit."""

    rrmse_limit: float  # [-]
    source: str


PJM_ECONOMIC_CBL = HighXOfYParams(
    weekday_x=4,
    weekday_y=5,
    weekend_x=2,
    weekend_y=3,
    lookback_days=45,
    low_usage_fraction=0.25,
    source=(
        "PJM economic CBL as commonly described (highest 4 of the 5 most recent eligible "
        "weekdays, 2 of 3 on weekends and holidays); "
        + NOT_FROM_MANUAL
        + ". lookback_days=45 and low_usage_fraction=0.25 are Nexwatt placeholders."
    ),
)
PJM_ADDITIVE_ADJUSTMENT = AdditiveAdjustmentParams(
    hours=3,
    gap_hours=1,
    cap_kw=None,
    source=(
        "Same-day symmetric additive adjustment of the PJM economic CBL as commonly described; "
        + NOT_FROM_MANUAL
        + ". The window (3 hours ending 1 hour before the event) and no cap are Nexwatt "
        "placeholders."
    ),
)
PJM_SAME_DAY = SameDayParams(
    hours_before=3,
    skip_before=1,
    hours_after=2,
    skip_after=1,
    source=(
        "PJM Same Day (3+2), described as added to PJM Manual 11 in 2025, with the example "
        "event HE13-17 -> mean of HE9-11 and HE19-20; " + NOT_FROM_MANUAL + "."
    ),
)
PJM_MATCH_DAY = MatchDayParams(
    days=3,
    adjacent_hours=1,
    source=(
        "PJM Match Day (3-day) as commonly described; "
        + NOT_FROM_MANUAL
        + ". The distance (sum of squared hourly differences) and excluding 1 hour either side "
        "of the event are Nexwatt choices."
    ),
)
EMERGENCY_HOUR_BEFORE = HourBeforeParams(
    hours=1,
    source="Hour Before baseline for emergency energy, as commonly described; " + NOT_FROM_MANUAL,
)
PJM_PEAK_LOAD_CONTRIBUTION = PeakLoadContributionParams(
    peak_hours=5,
    source=(
        "PLC = a customer's mean load in the 5 coincident system peak hours of the prior year, "
        "as commonly described; not read from a PJM manual or utility tariff"
    ),
)
PJM_CBL_ACCURACY = AccuracyParams(
    rrmse_limit=0.20,
    source=(
        "PJM accepts a CBL whose relative RMSE on non-event days is below 20%, as commonly "
        "described; " + NOT_FROM_MANUAL
    ),
)


class Compliance(NamedTuple):
    """A commitment checked against metered load; all [kW] except `compliant`."""

    reduction_kw: np.ndarray  # the reduction credited
    committed_kw: np.ndarray  # the reduction owed
    shortfall_kw: np.ndarray  # max(0, committed - credited)
    compliant: np.ndarray  # bool


def _require(ok: np.ndarray, message: str, missing: Missing = "raise") -> np.ndarray:
    """`ok`; unless all are, raise ValueError(message) naming the first failing leading index
    (missing="raise"), or leave the caller to blank those (missing="nan")."""
    if missing == "raise" and not np.all(ok):
        where = f" (at index {tuple(int(i) for i in np.argwhere(~ok)[0])})" if ok.ndim else ""
        raise ValueError(message + where)
    return ok


def _check_event(event_start: int, event_end: int, n_intervals: int) -> None:
    if not 0 <= event_start < event_end <= n_intervals:
        raise ValueError(
            f"event [{event_start}, {event_end}) is not inside the day's {n_intervals} intervals"
        )


def _mean_present(values_kw: np.ndarray, what: str, missing: Missing = "raise") -> np.ndarray:
    """Mean over the last axis of the readings present (not NaN) [kW]; NaN where none are
    (with missing="nan")."""
    present = ~np.isnan(values_kw)
    count = present.sum(axis=-1)
    _require(count > 0, f"no readings in {what}", missing)
    total = np.where(present, values_kw, 0.0).sum(axis=-1)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _mean_of_first_days(days_kw: np.ndarray, key: np.ndarray, k: int) -> np.ndarray:
    """Mean profile (..., n_intervals) of the `k` days with the smallest `key` (..., n_days),
    ties going to the more recent day."""
    n_days = key.shape[-1]
    newest_first = np.argsort(key[..., ::-1], axis=-1, kind="stable")[..., :k]
    chosen = n_days - 1 - newest_first
    return np.take_along_axis(days_kw, chosen[..., None], axis=-2).mean(axis=-2)


def high_x_of_y(
    history_kw: ArrayLike,
    day_kind: ArrayLike,
    event_day: ArrayLike,
    holiday: ArrayLike,
    event_day_kind: DayKind,
    event_start: int,
    event_end: int,
    params: HighXOfYParams = PJM_ECONOMIC_CBL,
    missing: Missing = "raise",
) -> np.ndarray:
    """High X of Y baseline (PJM-style economic CBL) for an event day [kW per interval].

    Args:
        history_kw: load on the days before the event day, (..., n_days, n_intervals) [kW]
        day_kind: each day's DayKind, (n_days,)
        event_day: True for days that had an event, (n_days,)
        holiday: True for holidays, (n_days,)
        event_day_kind: the event day's kind: picks (X, Y) and the like-days
        event_start, event_end: the event's intervals [event_start, event_end), 0-based
    Returns:
        the baseline for every interval of the event day, (..., n_intervals) [kW].

    Rule, per asset:
      1. Candidates: days of the last `lookback_days` of the history of the event's kind that
         are neither event days nor holidays and have no missing reading.
      2. A day's event-period load is its mean load over the event intervals. A candidate is a
         low-usage day when its event-period load is below `low_usage_fraction` times the mean
         event-period load of all candidates; the other candidates are eligible.
      3. Of the Y most recent eligible days, the X with the highest event-period load are
         averaged interval by interval (ties go to the more recent day).
    Fewer than Y eligible days raises ValueError (missing="nan": that asset's baseline is NaN).
    Meant for sites that draw from the grid: the low-usage test assumes a positive mean load.
    """
    days_kw = np.asarray(history_kw, dtype=float)
    n_days, n_intervals = days_kw.shape[-2:]
    kind, past_event, off = np.asarray(day_kind), np.asarray(event_day), np.asarray(holiday)
    if not kind.shape == past_event.shape == off.shape == (n_days,):
        raise ValueError(f"day_kind, event_day and holiday must each hold {n_days} days")
    _check_event(event_start, event_end, n_intervals)
    x, y = params.x_of_y(event_day_kind)

    in_lookback = np.arange(n_days) >= n_days - params.lookback_days
    like = (kind == event_day_kind) & ~past_event.astype(bool) & ~off.astype(bool) & in_lookback
    candidate = like & ~np.isnan(days_kw).any(axis=-1)  # (..., n_days)
    event_period_kw = days_kw[..., event_start:event_end].mean(axis=-1)
    candidate_mean_kw = np.where(candidate, event_period_kw, 0.0).sum(axis=-1) / np.maximum(
        candidate.sum(axis=-1), 1
    )
    eligible = candidate & (
        event_period_kw >= params.low_usage_fraction * candidate_mean_kw[..., None]
    )
    eligible_from_here = np.cumsum(eligible[..., ::-1], axis=-1)[..., ::-1]  # this day and newer
    in_y = eligible & (eligible_from_here <= y)
    ok = _require(
        in_y.sum(axis=-1) >= y,
        f"High {x} of {y}: fewer than {y} eligible {event_day_kind} days in the last "
        f"{params.lookback_days} days",
        missing,
    )
    baseline = _mean_of_first_days(days_kw, np.where(in_y, -event_period_kw, np.inf), x)
    return np.where(ok[..., None], baseline, np.nan)


def symmetric_additive_adjustment(
    baseline_kw: ArrayLike,
    actual_kw: ArrayLike,
    event_start: int,
    intervals_per_hour: int = 1,
    params: AdditiveAdjustmentParams = PJM_ADDITIVE_ADJUSTMENT,
    missing: Missing = "raise",
) -> np.ndarray:
    """The baseline shifted by the event day's mean difference between actual and baseline in
    the adjustment window [kW per interval].

    The window is the `hours` hours ending `gap_hours` hours before the event start: with the
    defaults and hourly data, an event starting at HE13 (event_start=12) is adjusted on
    HE9-HE11 (indexes 8, 9, 10). The adjustment is mean(actual - baseline) over the window's
    readings present, limited to +-`cap_kw`, and added to every interval: up or down alike.

    Args:
        baseline_kw, actual_kw: the event day's baseline and metered load, (..., n_intervals)
        event_start: the event's first interval, 0-based
    Returns:
        the adjusted baseline, (..., n_intervals) [kW]; with missing="nan", NaN for an asset
        without a reading in the window.
    """
    baseline = np.asarray(baseline_kw, dtype=float)
    actual = np.asarray(actual_kw, dtype=float)
    end = event_start - params.gap_hours * intervals_per_hour
    start = end - params.hours * intervals_per_hour
    if start < 0:
        raise ValueError(f"the adjustment window starts before the day (interval {start})")
    adjustment_kw = _mean_present(
        actual[..., start:end] - baseline[..., start:end], "the adjustment window", missing
    )
    if params.cap_kw is not None:
        adjustment_kw = np.clip(adjustment_kw, -params.cap_kw, params.cap_kw)
    return baseline + adjustment_kw[..., None]


def same_day(
    hourly_kw: ArrayLike,
    event_start_hour: int,
    event_end_hour: int,
    params: SameDayParams = PJM_SAME_DAY,
    missing: Missing = "raise",
) -> np.ndarray:
    """Same Day (3+2) baseline: one value for every event hour [kW].

    The mean of the 3 hours before the event after skipping the hour just before it and the 2
    hours after the event after skipping the hour just after it: each of the 5 hours weighs
    the same (not the mean of the two sides' means). Hours are 0-based indexes of the event
    day, the event [event_start_hour, event_end_hour): the event HE13-HE17 is (12, 17), and
    the baseline is the mean of indexes 8-10 (HE9-HE11) and 18-19 (HE19-HE20).

    Args:
        hourly_kw: the event day's hourly load, (..., 24) [kW]
    Returns:
        the baseline, (...) [kW]; missing hours are left out of the mean.
    """
    hourly = np.asarray(hourly_kw, dtype=float)
    _check_event(event_start_hour, event_end_hour, hourly.shape[-1])
    before_end = event_start_hour - params.skip_before
    before_start = before_end - params.hours_before
    after_start = event_end_hour + params.skip_after
    after_end = after_start + params.hours_after
    if before_start < 0 or after_end > hourly.shape[-1]:
        raise ValueError(
            f"Same Day needs hours {before_start}..{after_end - 1} of the event day, "
            f"which has {hourly.shape[-1]}"
        )
    hours = np.concatenate(
        [hourly[..., before_start:before_end], hourly[..., after_start:after_end]], axis=-1
    )
    return _mean_present(hours, "the Same Day hours", missing)


def match_day(
    history_kw: ArrayLike,
    event_day: ArrayLike,
    event_day_kw: ArrayLike,
    event_start_hour: int,
    event_end_hour: int,
    params: MatchDayParams = PJM_MATCH_DAY,
    missing: Missing = "raise",
) -> np.ndarray:
    """Match Day baseline: the mean profile of the 3 non-event days most like the event day
    [kW per hour].

    Compared hours: all hours of the day except the event [event_start_hour, event_end_hour)
    (0-based) and `adjacent_hours` on either side of it; for the event HE13-HE17 (12, 17),
    indexes 0-10 and 18-23. Distance of a day to the event day: the sum of squared differences
    of their hourly loads over the compared hours where the event day has a reading [kW^2].
    Candidates: the days of the history that are not event days and have no missing reading;
    the caller picks the lookback and the day kinds by the history it passes. Ties go to the
    more recent day; fewer candidates than `days` raises ValueError.

    Args:
        history_kw: hourly load on days before the event day, (..., n_days, 24) [kW]
        event_day: True for days of the history that had an event, (n_days,)
        event_day_kw: the event day's hourly load, (..., 24) [kW]
    Returns:
        the baseline for every hour of the event day, (..., 24) [kW].
    """
    days_kw = np.asarray(history_kw, dtype=float)
    today_kw = np.asarray(event_day_kw, dtype=float)
    n_days, n_hours = days_kw.shape[-2:]
    past_event = np.asarray(event_day, dtype=bool)
    if past_event.shape != (n_days,):
        raise ValueError(f"event_day must hold {n_days} days")
    _check_event(event_start_hour, event_end_hour, n_hours)
    excluded_start = max(0, event_start_hour - params.adjacent_hours)
    excluded_end = event_end_hour + params.adjacent_hours
    compared = np.ones(n_hours, dtype=bool)
    compared[excluded_start:excluded_end] = False
    used = compared & ~np.isnan(today_kw)  # (..., n_hours)
    ok = _require(
        used.any(axis=-1), "no event-day readings in the Match Day comparison hours", missing
    )
    distance = np.where(used[..., None, :], (days_kw - today_kw[..., None, :]) ** 2, 0.0).sum(
        axis=-1
    )
    candidate = ~past_event & ~np.isnan(days_kw).any(axis=-1)  # (..., n_days)
    ok = ok & _require(
        candidate.sum(axis=-1) >= params.days,
        f"Match Day needs {params.days} non-event days with complete readings",
        missing,
    )
    baseline = _mean_of_first_days(days_kw, np.where(candidate, distance, np.inf), params.days)
    return np.where(ok[..., None], baseline, np.nan)


def hour_before(
    interval_kw: ArrayLike,
    event_start_index: int,
    intervals_per_hour: int,
    params: HourBeforeParams = EMERGENCY_HOUR_BEFORE,
    missing: Missing = "raise",
) -> np.ndarray:
    """Hour Before baseline (emergency energy): the mean load over the hour just before the
    event [kW].

    Args:
        interval_kw: metered load, (..., n_intervals) [kW]
        event_start_index: the event's first interval, 0-based
        intervals_per_hour: e.g. 12 for 5-minute data
    Returns:
        the baseline, (...) [kW]; missing intervals are left out of the mean.
    """
    load = np.asarray(interval_kw, dtype=float)
    start = event_start_index - params.hours * intervals_per_hour
    if start < 0 or event_start_index > load.shape[-1]:
        raise ValueError(f"the hour before interval {event_start_index} is not in the data")
    return _mean_present(load[..., start:event_start_index], "the hour before the event", missing)


def firm_service_level(plc_kw: ArrayLike, fsl_kw: ArrayLike, metered_kw: ArrayLike) -> Compliance:
    """Firm Service Level: the site commits to hold its load at or below the FSL.

    committed = PLC - FSL, credited reduction = PLC - metered (negative when the load is above
    the PLC), shortfall = max(0, metered - FSL), compliant when metered <= FSL. `metered_kw` is
    the site's mean load over the hours assessed. All arguments broadcast [kW].
    """
    plc, fsl, metered = (np.asarray(a, dtype=float) for a in (plc_kw, fsl_kw, metered_kw))
    committed = plc - fsl
    reduction = plc - metered
    return Compliance(
        reduction_kw=reduction,
        committed_kw=committed,
        shortfall_kw=np.maximum(committed - reduction, 0.0),
        compliant=metered <= fsl,
    )


def guaranteed_load_drop(
    baseline_kw: ArrayLike, gld_kw: ArrayLike, metered_kw: ArrayLike
) -> Compliance:
    """Guaranteed Load Drop: the site commits to draw `gld_kw` less than its baseline.

    credited reduction = baseline - metered, shortfall = max(0, GLD - reduction), compliant
    when reduction >= GLD. All arguments broadcast [kW].
    """
    baseline, gld, metered = (np.asarray(a, dtype=float) for a in (baseline_kw, gld_kw, metered_kw))
    reduction = baseline - metered
    return Compliance(
        reduction_kw=reduction,
        committed_kw=gld,
        shortfall_kw=np.maximum(gld - reduction, 0.0),
        compliant=reduction >= gld,
    )


def peak_load_contribution_kw(
    hourly_load_kw: ArrayLike,
    peak_hour_indexes: ArrayLike,
    params: PeakLoadContributionParams = PJM_PEAK_LOAD_CONTRIBUTION,
) -> np.ndarray:
    """Peak Load Contribution: the mean load over the coincident system peak hours [kW].

    Args:
        hourly_load_kw: hourly load over the prior year (or any span holding the peaks),
            (..., n_hours) [kW]
        peak_hour_indexes: the `peak_hours` distinct 0-based hour indexes of the system peaks
    Returns:
        the PLC, (...) [kW]; missing peak hours are left out of the mean.
    """
    load = np.asarray(hourly_load_kw, dtype=float)
    peaks = np.asarray(peak_hour_indexes, dtype=np.intp)
    if peaks.shape != (params.peak_hours,) or np.unique(peaks).size != peaks.size:
        raise ValueError(f"the PLC needs {params.peak_hours} distinct peak hours, got {peaks}")
    return _mean_present(load[..., peaks], "the peak hours")


def relative_rmse(baseline_kw: ArrayLike, actual_kw: ArrayLike) -> np.ndarray:
    """Relative RMSE of a baseline: sqrt(mean((baseline - actual)^2)) / mean(actual) [-].

    Pass non-event days only: each day's baseline computed as if it had been an event day, and
    its metered load, with all (day, interval) samples on the last axis, (..., n_samples) [kW].
    Samples missing in either are left out. A mean actual load <= 0 raises ValueError.
    """
    baseline = np.asarray(baseline_kw, dtype=float)
    actual = np.asarray(actual_kw, dtype=float)
    present = ~np.isnan(baseline) & ~np.isnan(actual)
    count = present.sum(axis=-1)
    _require(count > 0, "no samples with both a baseline and a reading")
    error_kw = np.where(present, baseline - actual, 0.0)
    rmse_kw = np.sqrt((error_kw**2).sum(axis=-1) / count)
    mean_kw = np.where(present, actual, 0.0).sum(axis=-1) / count
    _require(mean_kw > 0, "relative RMSE needs a positive mean actual load")
    return rmse_kw / mean_kw


def accepted(rrmse: ArrayLike, params: AccuracyParams = PJM_CBL_ACCURACY) -> np.ndarray:
    """True where the relative RMSE is strictly below the limit (20% by default)."""
    return np.asarray(rrmse, dtype=float) < params.rrmse_limit


def reduction_kw(
    baseline_kw: ArrayLike, metered_kw: ArrayLike, model: ParticipationModel
) -> np.ndarray:
    """What is credited against a baseline under a participation model [kW].

    Demand response measures the site meter (load, positive when drawing from the grid) and
    does not credit export: credited = baseline - max(metered, 0). The DER aggregator model
    measures the device (battery output, positive when discharging) and counts export:
    credited = metered - baseline. Arguments broadcast.
    """
    baseline = np.asarray(baseline_kw, dtype=float)
    metered = np.asarray(metered_kw, dtype=float)
    if model == ParticipationModel.DEMAND_RESPONSE:
        return baseline - np.maximum(metered, 0.0)
    return metered - baseline


def credited_kw(
    battery_discharge_kw: ArrayLike, household_load_kw: ArrayLike, model: ParticipationModel
) -> np.ndarray:
    """The battery's reduction credited under a participation model [kW] (`reduction_kw` with
    the baselines each model measures against).

    Without the battery the site meter would read the household load; with it, the load minus
    the discharge (negative: export). Demand response is measured at the site meter against
    the household load as baseline, and export is not credited: credited = load -
    max(load - discharge, 0); a 5 kW discharge into a 1 kW load earns 1 kW. The DER
    aggregator model measures the device against its own baseline output, taken as 0 here,
    and counts export: credited = discharge, 5 kW. Charging (negative discharge) counts
    against the site in both. Arguments broadcast; household load >= 0 [kW].
    """
    discharge, load = np.broadcast_arrays(
        np.asarray(battery_discharge_kw, dtype=float), np.asarray(household_load_kw, dtype=float)
    )
    if model == ParticipationModel.DEMAND_RESPONSE:
        return reduction_kw(load, load - discharge, model)
    return reduction_kw(np.zeros_like(discharge), discharge, model)
