"""State-of-charge forecast: the SoC path each battery, and the fleet, is expected to follow
through the program's event window, from telemetry history, and its error on held-back days.

A pure library. The capacity model uses its program calendar (when windows open); the
per-asset forecast paths are not called by the service yet (sizing needs only the fleet's
SoC as the window opens).

Conventions:

- SoC is a percent of the battery's usable energy [%], 0-100. A history is shaped
  (n_assets, n_days, n_slots), oldest day first: each day is a local calendar day in the
  sites' market time (America/New_York for PJM), cut into `n_slots` equal slots from local
  midnight; slot k covers hours [24 k / n_slots, 24 (k + 1) / n_slots). What a slot holds (the
  reading at its start, or its mean) is the caller's choice, the same for every day. The
  caller maps readings to slots by local clock time: on the 23-hour spring-forward day the
  skipped hour's slots are NaN; on the 25-hour fall-back day the repeated hour's slots hold
  one of its two readings.
- NaN is a missing reading. Each day has a DayType, (n_days,), shared by all assets; a holiday
  is a WEEKEND_HOLIDAY day (`day_types` builds the array from dates).
- The forecast is the path the asset would follow on the target day without an event: what the
  program can plan on. It is a profile (per asset, per day type, per slot) clipped to
  [reserve, 100] %: the program never plans below the asset's backup reserve, so a reading
  below it (backup use in an outage) never lowers the forecast under the reserve.
- Profile: per slot, the median of the readings present on the `days(type)` most recent days
  of the target's type that had no event. The median rather than a (weighted) mean: an odd
  day (an outage drained into the reserve, an unflagged event, a day the owner charged from
  the grid) moves a mean by its full distance / N and the median barely; the median is also
  the point forecast with the least expected absolute error, the measure the backtest
  reports; and the short lookback already follows the season. Days with an event are left
  out, not counted in the lookback: an event drains the battery, which is not the path
  without one.
- An asset has a forecast only when every slot of the window has at least `min_days` readings
  among those days; otherwise its whole path is NaN, so fleet figures over a window always
  count the same assets at every slot.
- Fleet figures count the assets with a forecast: the mean SoC, and the energy-weighted mean
  sum(SoC x usable kWh) / sum(usable kWh) [%], the fleet's stored energy as a share of its
  usable energy.
- Errors are in percentage points [pp]: |forecast - actual| of the SoC percents.
- Program and profile parameters are data, frozen dataclasses whose `source` says where their
  values come from; none was read from a program's terms.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

HOURS_PER_DAY = 24


class DayType(StrEnum):
    """Which like-days a profile is drawn from."""

    WEEKDAY = "weekday"
    WEEKEND_HOLIDAY = "weekend-holiday"  # Saturday, Sunday or a holiday


@dataclass(frozen=True)
class ProgramParams:
    """When a residential battery program may call events: weekdays (not holidays) of `months`,
    over the local window [window_start_h, window_end_h)."""

    window_start_h: int  # local hour the window opens [h]
    window_end_h: int  # local hour it closes [h]
    months: tuple[int, ...]  # calendar months events may fall in, 1 = January
    source: str


@dataclass(frozen=True)
class ProfileParams:
    """How much history a profile draws on."""

    weekday_days: int  # most recent event-free weekdays in a weekday profile
    weekend_holiday_days: int  # most recent event-free weekend days and holidays
    min_days: int  # readings a slot needs among those days for a forecast
    source: str

    def days(self, day_type: DayType) -> int:
        """The lookback of a profile of `day_type` [days]."""
        return self.weekday_days if day_type == DayType.WEEKDAY else self.weekend_holiday_days


RESIDENTIAL_BATTERY_PROGRAM = ProgramParams(
    window_start_h=16,
    window_end_h=21,
    months=(5, 6, 7, 8, 9, 10),
    source=(
        "program facts: residential battery programs, weekday evenings 4-9 pm, May-October; "
        "a secondary transcription from Nexwatt's reference notes, not read from a program's "
        "terms"
    ),
)
PROFILE_DEFAULTS = ProfileParams(
    weekday_days=10,
    weekend_holiday_days=6,
    min_days=3,
    source=(
        "Nexwatt choices, not from a program or PJM document: two weeks of weekdays and three "
        "weekends, short enough to follow the season; at least 3 readings a slot so that a "
        "median is not a single day"
    ),
)


class FleetSoc(NamedTuple):
    """Fleet figures per slot over the assets with a forecast; NaN at a slot with none."""

    mean_pct: np.ndarray  # mean SoC [%]
    energy_weighted_pct: np.ndarray  # sum(SoC x usable kWh) / sum(usable kWh) [%]
    assets: np.ndarray  # assets counted [-]


class Backtest(NamedTuple):
    """Forecast errors on held-back days over the event window [pp]."""

    asset_mae_pp: np.ndarray  # per asset, (n_assets,); NaN for an asset never scored
    mae_pp: float  # over every scored (asset, day, slot)
    fleet_mae_pp: float  # of the energy-weighted fleet path, per (day, slot)
    days: int  # held-back days scored


def day_types(dates: Sequence[date], holidays: Collection[date] = ()) -> np.ndarray:
    """Each date's DayType, (n_days,): Saturdays, Sundays and `holidays` are WEEKEND_HOLIDAY."""
    return np.array(
        [
            DayType.WEEKEND_HOLIDAY if d.weekday() >= 5 or d in holidays else DayType.WEEKDAY
            for d in dates
        ],
        dtype=str,
    )


def program_days(
    dates: Sequence[date],
    holidays: Collection[date] = (),
    program: ProgramParams = RESIDENTIAL_BATTERY_PROGRAM,
) -> np.ndarray:
    """True for the dates the program may call an event on: weekdays, not holidays, in one of
    the program's months; (n_days,)."""
    in_season = np.array([d.month in program.months for d in dates], dtype=bool)
    return (day_types(dates, holidays) == DayType.WEEKDAY) & in_season


def event_window(n_slots: int, program: ProgramParams = RESIDENTIAL_BATTERY_PROGRAM) -> slice:
    """The slots of the program's window in a day of `n_slots` slots: 16:00-21:00 is slots
    16..20 of 24 hourly slots, 192..251 of 288 five-minute slots. ValueError when the window
    does not start and end on slot boundaries."""
    start, end = program.window_start_h * n_slots, program.window_end_h * n_slots
    if not 0 <= start < end <= HOURS_PER_DAY * n_slots:
        raise ValueError(
            f"the window {program.window_start_h}-{program.window_end_h} h is not in a day"
        )
    if start % HOURS_PER_DAY or end % HOURS_PER_DAY:
        raise ValueError(
            f"the window {program.window_start_h}-{program.window_end_h} h does not fall on "
            f"the boundaries of {n_slots} slots a day"
        )
    return slice(start // HOURS_PER_DAY, end // HOURS_PER_DAY)


def _history(history_pct: ArrayLike) -> np.ndarray:
    soc = np.asarray(history_pct, dtype=float)
    if soc.ndim != 3:
        raise ValueError(f"the history must be (n_assets, n_days, n_slots), got {soc.shape}")
    present = soc[~np.isnan(soc)]
    if np.any((present < 0.0) | (present > 100.0)):
        raise ValueError("SoC readings must be within 0-100 % (NaN for missing)")
    return soc


def _day_types(day_type: ArrayLike, n_days: int) -> np.ndarray:
    kinds = np.asarray(day_type, dtype=str)
    if kinds.shape != (n_days,):
        raise ValueError(f"day_type must hold {n_days} days, got shape {kinds.shape}")
    if not np.isin(kinds, list(DayType)).all():
        raise ValueError(f"day_type holds values other than {[str(t) for t in DayType]}")
    return kinds


def _event_days(event_day: ArrayLike | None, n_days: int) -> np.ndarray:
    if event_day is None:
        return np.zeros(n_days, dtype=bool)
    events = np.asarray(event_day, dtype=bool)
    if events.shape != (n_days,):
        raise ValueError(f"event_day must hold {n_days} days, got shape {events.shape}")
    return events


def _per_asset(values: ArrayLike, n_assets: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (n_assets,):
        raise ValueError(f"{what} must hold {n_assets} assets, got shape {array.shape}")
    return array


def profile(
    history_pct: ArrayLike,
    day_type: ArrayLike,
    target_day_type: DayType,
    event_day: ArrayLike | None = None,
    params: ProfileParams = PROFILE_DEFAULTS,
) -> np.ndarray:
    """Each asset's SoC profile for a day of `target_day_type` [% per slot], not clipped.

    Args:
        history_pct: SoC on the days before the target day, (n_assets, n_days, n_slots) [%]
        day_type: each day's DayType, (n_days,)
        target_day_type: the type of the day forecast: picks the like-days and their number
        event_day: True for days with an event, (n_days,); None: no event in the history
    Returns:
        (n_assets, n_slots) [%]: per slot, the median of the readings present on the
        `params.days(target_day_type)` most recent event-free days of that type; NaN where
        fewer than `params.min_days` of them have a reading.
    """
    soc = _history(history_pct)
    n_assets, n_days, n_slots = soc.shape
    like = (_day_types(day_type, n_days) == target_day_type) & ~_event_days(event_day, n_days)
    recent = like & (np.cumsum(like[::-1])[::-1] <= params.days(target_day_type))
    if recent.sum() < params.min_days:
        return np.full((n_assets, n_slots), np.nan)
    days_pct = soc[:, recent, :]
    count = (~np.isnan(days_pct)).sum(axis=1)
    # A slot with no reading at all gets 0 before the median: nanmedian would warn, and the
    # slot is blanked below anyway.
    median = np.nanmedian(np.where(count[:, None, :] > 0, days_pct, 0.0), axis=1)
    return np.where(count >= params.min_days, median, np.nan)


def forecast(
    history_pct: ArrayLike,
    day_type: ArrayLike,
    reserve_pct: ArrayLike,
    target_day_type: DayType = DayType.WEEKDAY,
    event_day: ArrayLike | None = None,
    program: ProgramParams = RESIDENTIAL_BATTERY_PROGRAM,
    params: ProfileParams = PROFILE_DEFAULTS,
) -> np.ndarray:
    """Each asset's expected SoC path through the event window of a target day [%].

    Args:
        history_pct: SoC on the days before the target day, (n_assets, n_days, n_slots) [%]
        day_type: each day's DayType, (n_days,)
        reserve_pct: each asset's backup reserve, (n_assets,) [%]
        target_day_type: the target day's type (events fall on weekdays)
        event_day: True for days with an event, (n_days,); None: no event in the history
    Returns:
        (n_assets, n_window_slots) [%]: the profile (see `profile`) over the window's slots,
        clipped to [reserve, 100]; all NaN for an asset without enough readings in any slot
        of the window.
    """
    soc = _history(history_pct)
    reserve = _per_asset(reserve_pct, soc.shape[0], "reserve_pct")
    if not np.all((reserve >= 0.0) & (reserve <= 100.0)):
        raise ValueError("reserve_pct must be within 0-100 %")
    window = event_window(soc.shape[2], program)
    path = profile(soc, day_type, target_day_type, event_day, params)[:, window]
    complete = ~np.isnan(path).any(axis=1)
    return np.where(complete[:, None], np.clip(path, reserve[:, None], 100.0), np.nan)


def fleet_soc(paths_pct: ArrayLike, usable_kwh: ArrayLike) -> FleetSoc:
    """Fleet figures per slot over the assets whose path is not NaN there.

    Args:
        paths_pct: SoC paths, (n_assets, n_slots) [%]
        usable_kwh: each asset's usable energy, (n_assets,) [kWh], > 0
    """
    paths = np.asarray(paths_pct, dtype=float)
    if paths.ndim != 2:
        raise ValueError(f"paths must be (n_assets, n_slots), got {paths.shape}")
    energy = _per_asset(usable_kwh, paths.shape[0], "usable_kwh")
    if not np.all(np.isfinite(energy) & (energy > 0.0)):
        raise ValueError("usable_kwh must be positive")
    present = ~np.isnan(paths)
    assets = present.sum(axis=0)
    soc = np.where(present, paths, 0.0)
    weight_kwh = np.where(present, energy[:, None], 0.0).sum(axis=0)
    nan = np.full(assets.shape, np.nan)
    return FleetSoc(
        mean_pct=np.divide(soc.sum(axis=0), assets, out=nan.copy(), where=assets > 0),
        energy_weighted_pct=np.divide(
            (soc * energy[:, None]).sum(axis=0), weight_kwh, out=nan.copy(), where=assets > 0
        ),
        assets=assets,
    )


def backtest(
    history_pct: ArrayLike,
    day_type: ArrayLike,
    reserve_pct: ArrayLike,
    usable_kwh: ArrayLike,
    held_back_days: int,
    event_day: ArrayLike | None = None,
    program: ProgramParams = RESIDENTIAL_BATTERY_PROGRAM,
    params: ProfileParams = PROFILE_DEFAULTS,
) -> Backtest:
    """The forecast's error on the last `held_back_days` days of the history [pp].

    Each held-back weekday without an event is forecast from all the days before it (earlier
    held-back days included, as they would be known by then) and compared with its readings
    over the event window. Weekends, holidays and event days are not scored: the program calls
    no event on the first two, and an event day's readings are not the path without one. Only
    (asset, slot) pairs with both a forecast and a reading count. The fleet error compares, per
    (day, slot), the energy-weighted mean of the forecasts with that of the readings over the
    same assets.

    Args:
        history_pct: SoC, (n_assets, n_days, n_slots) [%]
        day_type: each day's DayType, (n_days,)
        reserve_pct: each asset's backup reserve, (n_assets,) [%]
        usable_kwh: each asset's usable energy, (n_assets,) [kWh]
        held_back_days: how many of the last days are forecast, 1 <= K < n_days
        event_day: True for days with an event, (n_days,); None: none
    Raises:
        ValueError: when no held-back day has a scored sample.
    """
    soc = _history(history_pct)
    n_assets, n_days, n_slots = soc.shape
    if not 1 <= held_back_days < n_days:
        raise ValueError(f"held_back_days must be within 1..{n_days - 1}, got {held_back_days}")
    kinds = _day_types(day_type, n_days)
    events = _event_days(event_day, n_days)
    window = event_window(n_slots, program)
    errors_pp, fleet_errors_pp = [], []  # per scored day: (n_assets, n_window), (n_window,)
    for d in range(n_days - held_back_days, n_days):
        if kinds[d] != DayType.WEEKDAY or events[d]:
            continue
        predicted = forecast(
            soc[:, :d], kinds[:d], reserve_pct, DayType.WEEKDAY, events[:d], program, params
        )
        actual = soc[:, d, window]
        scored = ~np.isnan(predicted) & ~np.isnan(actual)
        if not scored.any():
            continue
        errors_pp.append(np.where(scored, np.abs(predicted - actual), np.nan))
        fleet_predicted = fleet_soc(np.where(scored, predicted, np.nan), usable_kwh)
        fleet_actual = fleet_soc(np.where(scored, actual, np.nan), usable_kwh)
        both = fleet_predicted.assets > 0
        fleet_errors_pp.append(
            np.abs(fleet_predicted.energy_weighted_pct - fleet_actual.energy_weighted_pct)[both]
        )
    if not errors_pp:
        raise ValueError(
            f"none of the last {held_back_days} days is an event-free weekday with a forecast "
            "and a reading to score"
        )
    errors = np.hstack(errors_pp)  # (n_assets, scored days x n_window)
    count = (~np.isnan(errors)).sum(axis=1)
    return Backtest(
        asset_mae_pp=np.divide(
            np.nansum(errors, axis=1), count, out=np.full(n_assets, np.nan), where=count > 0
        ),
        mae_pp=float(np.nanmean(errors)),
        fleet_mae_pp=float(np.concatenate(fleet_errors_pp).mean()),
        days=len(errors_pp),
    )
