"""SolarEdge Monitoring API (cloud, JSON): site power, site energy and battery telemetry.

What the API sends, and what we make of it:
- `/site/{id}/powerDetails` and `/site/{id}/energyDetails`: one series per meter type
  (Production, Consumption, SelfConsumption, FeedIn, Purchased) of `{date, value}` in the
  response's `unit` (W, kW, MW; Wh, kWh, MWh for energy), at the response's `timeUnit`
  (QUARTER_OF_AN_HOUR = 900 s, HOUR = 3600 s; longer units exceed the contract's 1 h). An entry
  without `value` has no data: that channel is missing, never 0.
- `/site/{id}/storageData`: per battery, point samples about every 5 minutes with `power`
  [W, + = CHARGING, so flipped], lifetime charged/discharged counters [Wh] and
  `batteryPercentageState` (the SoC [%]; the documentation's field list says `stateOfCharge`).
- Every date is "YYYY-MM-DD hh:mm:ss" in the site's LOCAL time without offset, read in the
  envelope's time zone (DST days included); a power/energy date labels the interval's START.
- Budget: 300 requests a day per site (and per account), 3 concurrent per IP; the connectors
  plan their windows around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from nexwatt_shared.contracts import Channel, Quality, ReadingSource, TelemetryInterval
from nexwatt_telemetry_ingest.formats import Format, FormatError, RawContext, rules

VENDOR = "solaredge"
_DATE = "%Y-%m-%d %H:%M:%S"
_INTERVAL_S = {"QUARTER_OF_AN_HOUR": 900, "HOUR": 3600}
_POWER_UNITS = {"W": 0, "kW": 3, "MW": 6}  # 10^n W
_ENERGY_UNITS = {"Wh": 0, "kWh": 3, "MWh": 6}  # 10^n Wh
# Meter type -> its series; SelfConsumption (= Production - FeedIn) adds nothing we need.
_PV, _LOAD, _FEED_IN, _PURCHASED = "Production", "Consumption", "FeedIn", "Purchased"
_MAX_GAP_S = 3600  # battery samples further apart than the contract's longest interval: no reading

# A value in W (or Wh) over an interval of s seconds -> average kW.
ToKw = Callable[[float | None, int], float | None]


def _power_kw(watts: float | None, _interval_s: int) -> float | None:
    return rules.kw_from_w(watts)


# --- powerDetails / energyDetails -------------------------------------------------------------


def parse_power_details(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    """Average powers per interval, one reading per interval start."""
    return _parse_meters(data, ctx, "powerDetails", _POWER_UNITS, _power_kw)


def parse_energy_details(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    """Energy per interval [Wh] -> the interval's average power [kW]."""
    return _parse_meters(data, ctx, "energyDetails", _ENERGY_UNITS, rules.kw_from_wh)


def _parse_meters(
    data: Any, ctx: RawContext, root: str, units: Mapping[str, int], to_kw: ToKw
) -> list[TelemetryInterval]:
    body = rules.obj(rules.member(rules.obj(data, ""), root, ""), root)
    # DAY, WEEK, MONTH and YEAR are refused: longer than the contract's longest interval (1 h).
    interval_s = _pick(rules.member(body, "timeUnit", root), _INTERVAL_S, f"{root}.timeUnit")
    exponent = _pick(rules.member(body, "unit", root), units, f"{root}.unit")
    meters = rules.array(rules.member(body, "meters", root), f"{root}.meters")

    series: dict[str, dict[datetime, float | None]] = {}  # meter type -> start -> kW
    for m, meter in enumerate(meters):
        field = f"{root}.meters[{m}]"
        meter = rules.obj(meter, field)
        kind = rules.text(rules.member(meter, "type", field), f"{field}.type")
        if kind not in (_PV, _LOAD, _FEED_IN, _PURCHASED):
            continue
        if kind in series:
            raise FormatError(f"{field}.type", f"meter {kind} appears twice")
        values = rules.array(rules.member(meter, "values", field), f"{field}.values")
        entries = [rules.obj(v, f"{field}.values[{i}]") for i, v in enumerate(values)]
        starts = _local_times(entries, "date", ctx, f"{field}.values")
        kw: dict[datetime, float | None] = {}
        for i, (start, entry) in enumerate(zip(starts, entries, strict=True)):
            if start in kw:
                raise FormatError(f"{field}.values[{i}].date", "repeats an earlier interval")
            raw = rules.number(entry.get("value"), f"{field}.values[{i}].value")
            if kind in (_FEED_IN, _PURCHASED):
                raw = rules.magnitude(raw)  # both are magnitudes; the sign comes from the meter
            kw[start] = to_kw(rules.scaled(raw, exponent), interval_s)
        series[kind] = kw

    source = ReadingSource(vendor=VENDOR, endpoint=root)
    readings = []
    for start in sorted(set().union(*series.values())):
        channels: dict[Channel, float | None] = {}
        if _PV in series:
            channels[Channel.PV_KW] = series[_PV].get(start)
        if _LOAD in series:
            channels[Channel.LOAD_KW] = series[_LOAD].get(start)
        if _FEED_IN in series or _PURCHASED in series:
            feed_in = series.get(_FEED_IN, {}).get(start)
            purchased = series.get(_PURCHASED, {}).get(start)
            both = feed_in is not None and purchased is not None
            channels[Channel.NET_KW] = feed_in - purchased if both else None  # + export
        readings.append(rules.reading(ctx.asset_id, start, interval_s, channels, source))
    return readings


def _pick(value: object, choices: Mapping[str, int], field: str) -> int:
    """What `choices` holds for the name `value`."""
    if isinstance(value, str) and value in choices:
        return choices[value]
    raise FormatError(field, f"expected one of {', '.join(choices)}, got {value!r}"[:160])


def _local_times(
    entries: list[dict[str, Any]], name: str, ctx: RawContext, field: str
) -> list[datetime]:
    """The UTC instants of the local date strings `field[i].name`, as one series."""
    texts = [rules.member(e, name, f"{field}[{i}]") for i, e in enumerate(entries)]
    local = [rules.parse_local(t, _DATE, f"{field}[{i}].{name}") for i, t in enumerate(texts)]
    return rules.localize(local, ctx.site_tz, field, f".{name}")


# --- storageData ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    """One battery telemetry: counters [Wh], power [W, + = charging], SoC [%]."""

    charged_wh: float | None
    discharged_wh: float | None
    power_w: float | None
    soc_pct: float | None


def parse_storage_data(data: Any, ctx: RawContext) -> list[TelemetryInterval]:
    """A reading per pair of consecutive battery samples [t_i-1, t_i) (across batteries: per
    pair of consecutive timestamps of any battery; a battery counts for an interval only if it
    has a sample at both ends, nothing is interpolated): battery_kw from the lifetime counters
    (exact energy over the interval), soc_pct at t_i weighted by nameplate."""
    body = rules.obj(rules.member(rules.obj(data, ""), "storageData", ""), "storageData")
    batteries = rules.array(rules.member(body, "batteries", "storageData"), "storageData.batteries")
    total = rules.count(
        rules.member(body, "batteryCount", "storageData"), "storageData.batteryCount"
    )
    if total is None or total < len(batteries):
        raise FormatError(
            "storageData.batteryCount", f"expected at least the {len(batteries)} batteries listed"
        )
    weights: list[float] = []
    samples: list[dict[datetime, _Sample]] = []
    for b, battery in enumerate(batteries):
        field = f"storageData.batteries[{b}]"
        battery = rules.obj(battery, field)
        # One battery's SoC is its own; several are weighted by their nameplate [Wh].
        weights.append(_nameplate(battery, field) if len(batteries) > 1 else 1.0)
        samples.append(_battery_samples(battery, ctx, field))

    source = ReadingSource(vendor=VENDOR, endpoint="storageData")
    times = sorted(set().union(*samples))
    readings = []
    for start, end in pairwise(times):
        interval_s = int((end - start).total_seconds())
        reporting = [b for b, s in enumerate(samples) if start in s and end in s]
        if interval_s > _MAX_GAP_S or not reporting:
            continue
        flows = [_battery_kw(samples[b][start], samples[b][end], interval_s) for b in reporting]
        # The site's power is the sum over all its batteries: a part of them would understate
        # it, so it is missing then; their SoC, weighted by what reported, is an estimate.
        partial = len(reporting) < total
        battery_kw = None if partial else rules.total([kw for kw, _ in flows])
        estimated = any(q is Quality.ESTIMATED for _, q in flows)
        socs = [(weights[b], _soc(samples[b][end].soc_pct)) for b in reporting]
        channels = {Channel.BATTERY_KW: battery_kw, Channel.SOC_PCT: _weighted(socs)}
        quality = {
            Channel.BATTERY_KW: Quality.ESTIMATED if estimated else Quality.ACTUAL,
            Channel.SOC_PCT: Quality.ESTIMATED if partial else Quality.ACTUAL,
        }
        readings.append(
            rules.reading(
                ctx.asset_id,
                start,
                interval_s,
                channels,
                source,
                quality=quality,
                devices_reporting=len(reporting),
                devices_total=total,
            )
        )
    return readings


def _nameplate(battery: dict[str, Any], field: str) -> float:
    nameplate = rules.number(rules.member(battery, "nameplate", field), f"{field}.nameplate")
    if nameplate is None or not math.isfinite(nameplate) or nameplate <= 0:
        raise FormatError(f"{field}.nameplate", f"expected a capacity > 0 Wh, got {nameplate}")
    return nameplate


def _battery_samples(
    battery: dict[str, Any], ctx: RawContext, field: str
) -> dict[datetime, _Sample]:
    """A battery's samples by UTC instant; a repeated instant keeps its first sample (the 0 s
    pair it would make is skipped)."""
    telemetries = rules.array(rules.member(battery, "telemetries", field), f"{field}.telemetries")
    entries = [rules.obj(t, f"{field}.telemetries[{i}]") for i, t in enumerate(telemetries)]
    times = _local_times(entries, "timeStamp", ctx, f"{field}.telemetries")
    out: dict[datetime, _Sample] = {}
    for i, (t, e) in enumerate(zip(times, entries, strict=True)):
        at = f"{field}.telemetries[{i}]"
        sample = _Sample(
            charged_wh=rules.number(e.get("lifeTimeEnergyCharged"), f"{at}.lifeTimeEnergyCharged"),
            discharged_wh=rules.number(
                e.get("lifeTimeEnergyDischarged"), f"{at}.lifeTimeEnergyDischarged"
            ),
            power_w=rules.number(e.get("power"), f"{at}.power"),
            soc_pct=rules.number(e.get("batteryPercentageState"), f"{at}.batteryPercentageState"),
        )
        out.setdefault(t, sample)
    return out


def _battery_kw(first: _Sample, last: _Sample, interval_s: int) -> tuple[float | None, Quality]:
    """Average battery power [kW, + = discharge] between two samples `interval_s` apart."""
    c0, c1, d0, d1 = first.charged_wh, last.charged_wh, first.discharged_wh, last.discharged_wh
    if c0 is not None and c1 is not None and d0 is not None and d1 is not None:
        charged, discharged = c1 - c0, d1 - d0  # [Wh]
        if charged < 0 or discharged < 0:  # a counter reset or a replaced battery
            return math.nan, Quality.ACTUAL  # `reading` flags NaN questionable
        return rules.kw_from_wh(discharged - charged, interval_s), Quality.ACTUAL
    if first.power_w is None or last.power_w is None:
        return None, Quality.ACTUAL
    # Without counters: the mean of the two point samples, an estimate; SolarEdge's + is charging.
    return rules.kw_from_w(-(first.power_w + last.power_w) / 2), Quality.ESTIMATED


def _soc(pct: float | None) -> float | None:
    """One battery's SoC; an implausible one becomes NaN so that no weighted mean hides it."""
    return pct if pct is None or rules.plausible(Channel.SOC_PCT, pct) else math.nan


def _weighted(socs: list[tuple[float, float | None]]) -> float | None:
    """The SoC of several batteries [%]: their mean weighted by nameplate [Wh]."""
    weighted = 0.0
    for weight, soc in socs:
        if soc is None:
            return None
        weighted += weight * soc
    return weighted / sum(weight for weight, _ in socs)


FORMATS: tuple[Format, ...] = (
    Format(
        name="solaredge.power-details.v1",
        vendor=VENDOR,
        endpoint="powerDetails",
        parse=parse_power_details,
        description="Site power per meter (Production, Consumption, FeedIn, Purchased)",
    ),
    Format(
        name="solaredge.energy-details.v1",
        vendor=VENDOR,
        endpoint="energyDetails",
        parse=parse_energy_details,
        description="Site energy per meter, 15 min or 1 h, as average power",
    ),
    Format(
        name="solaredge.storage-data.v1",
        vendor=VENDOR,
        endpoint="storageData",
        parse=parse_storage_data,
        description="Battery samples about every 5 min: power from lifetime counters, SoC",
    ),
)
