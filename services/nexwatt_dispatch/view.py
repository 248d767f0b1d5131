"""Dispatch's availability view, in memory: one row per asset in numpy columns, ready for the
vectorized allocation, so answering an instruction touches no store (issue 11: at 100,000 assets
the per-asset Redis reads alone took seconds).

Built only from topics (`asset.registered`, `telemetry.interval`) and rebuilt by replaying them
at start (`nexwatt_shared.kafka.consumer.ConsumerRunner` in broadcast mode: every replica reads
every partition, registrations from the beginning, telemetry from a recent moment on). The
measured performance of each asset (delivered against commanded) is the one thing kept in
PostgreSQL, because it spans events that are long gone from the topics.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from nexwatt_dispatch.domain import telemetry_age_s
from nexwatt_shared.contracts import (
    AssetRegistered,
    AssetStatus,
    Channel,
    Quality,
    TelemetryInterval,
)
from nexwatt_shared.event_time import resource_clock
from nexwatt_shared.power_model import AssetRatings, Coupling

KNOWN = frozenset({Quality.ACTUAL, Quality.ESTIMATED})  # qualities whose value is used
# A reading can come before its asset's registration (another topic, another fetch; the
# state consumer reads the registrations of the start before any telemetry, so not by the
# replay's hundreds of thousands). It waits for it: this many assets, this many readings each
# (those that end last); past that the oldest go, so ids that never register cannot grow the
# view.
HELD_ASSETS_MAX = 10_000
HELD_READINGS_PER_ASSET = 3
_FLOAT_COLUMNS = (
    "capacity_kw", "storage_kwh", "reserve_pct", "battery_kw", "round_trip_efficiency",
    "pv_kw", "soc_pct", "pv_end_s", "soc_end_s", "battery_end_s",
    "delivered_kwh", "commanded_kwh",
)  # fmt: skip
_STARTS = {"pv_kw": np.nan, "soc_pct": np.nan, "pv_end_s": -np.inf, "soc_end_s": -np.inf,
           "battery_end_s": -np.inf}  # fmt: skip


# The view's other per-asset arrays: name -> (dtype, value of a row not filled yet).
ROW_ARRAYS: dict[str, tuple[type, object]] = {
    "version": (np.int64, 0),
    "resource": (np.int32, -1),  # code in `resource_codes`; -1: none yet
    "enrolled": (bool, False),
    "dc": (bool, True),  # DC-coupled
    "has_pv": (bool, True),
}


# What each asset was told to hold in a commanded window, and what it delivered of it: columns
# of their own, left out of copies and snapshots (every replica rebuilds them from the log).
ORDER_ARRAYS: dict[str, tuple[type, object]] = {
    "order_code": (np.int32, -1),  # code in `order_ids`; -1: no order
    "order_start_s": (np.float64, 0.0),
    "order_end_s": (np.float64, 0.0),
    "order_kw": (np.float64, 0.0),
    "order_delivered_kwh": (np.float64, 0.0),
}


@dataclass(frozen=True)
class Fleet:
    """The enrolled members of one resource as arrays, one element per asset, in asset id
    order."""

    slots: np.ndarray  # each asset's row in the view
    asset_ids: list[str]
    gateway_ids: list[str]
    subscribers: list[str]  # the subscriber, or the asset id when none is registered
    ratings: AssetRatings
    has_pv: np.ndarray  # bool: PV behind the inverter (a battery-only asset reports none)
    pv_kw: np.ndarray  # NaN: unknown (never reported, or reported missing or questionable)
    soc_pct: np.ndarray  # NaN: unknown
    pv_end_s: np.ndarray  # -inf: never reported (an infinite age)
    soc_end_s: np.ndarray  # -inf: never reported
    delivered_kwh: np.ndarray  # over the asset's past commanded windows
    commanded_kwh: np.ndarray

    @cached_property
    def position(self) -> dict[str, int]:
        """Each asset's index in these arrays."""
        return {asset_id: k for k, asset_id in enumerate(self.asset_ids)}

    @property
    def telemetry_end_s(self) -> np.ndarray:
        """Each asset's newest interval end over its channels: the time it has reached."""
        return np.fmax(self.pv_end_s, self.soc_end_s)

    def channel_ages_s(self, issued_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Each asset's PV and SoC age [s] for an instruction issued at `issued_s` [s since
        the epoch] (`nexwatt_dispatch.domain.telemetry_age_s`)."""
        return (
            telemetry_age_s(issued_s, self.telemetry_end_s, self.pv_end_s),
            telemetry_age_s(issued_s, self.telemetry_end_s, self.soc_end_s),
        )

    def __len__(self) -> int:
        return len(self.asset_ids)


@dataclass(frozen=True)
class Order:
    """What an asset was told to hold over a window, and what its telemetry showed it deliver
    (`FleetView.orders`)."""

    instruction_id: str
    start_s: float
    end_s: float
    setpoint_kw: float
    delivered_kwh: float = 0.0


@dataclass(frozen=True)
class Performance:
    """One asset's account of one commanded window, when its telemetry has passed the end."""

    instruction_id: str
    asset_id: str
    commanded_kwh: float
    delivered_kwh: float


@dataclass
class FleetView:
    """Every asset dispatch has heard of, as rows of numpy columns (grown by doubling)."""

    capacity: int = 1024
    slot: dict[str, int] = field(default_factory=dict)
    asset_ids: list[str] = field(default_factory=list)
    gateways: list[str] = field(default_factory=list)
    subscribers: list[str] = field(default_factory=list)
    resource_codes: dict[str, int] = field(default_factory=dict)  # resource id -> code
    order_codes: dict[str, int] = field(default_factory=dict)  # instruction id -> code
    order_ids: list[str] = field(default_factory=list)  # code -> instruction id
    held: OrderedDict[str, list[TelemetryInterval]] = field(default_factory=OrderedDict)
    held_dropped: int = 0  # readings of unregistered assets let go to keep `held` bounded

    def __post_init__(self) -> None:
        n = self.capacity
        self.columns = {name: np.full(n, _STARTS.get(name, 0.0)) for name in _FLOAT_COLUMNS}
        for name, (dtype, fill) in (ROW_ARRAYS | ORDER_ARRAYS).items():
            setattr(self, name, np.full(n, fill, dtype))

    def copy(self) -> FleetView:
        """The rows as they are now (orders left out: they belong to this replica's events)."""
        n = len(self.asset_ids)
        other = FleetView(capacity=max(n, 1))
        other.asset_ids, other.gateways = list(self.asset_ids), list(self.gateways)
        other.subscribers, other.slot = list(self.subscribers), dict(self.slot)
        other.resource_codes = dict(self.resource_codes)
        other.columns = {name: column[:n].copy() for name, column in self.columns.items()}
        for name in ROW_ARRAYS:
            setattr(other, name, getattr(self, name)[:n].copy())
        return other

    # --- building ---------------------------------------------------------------------------

    def _row(self, asset_id: str) -> int:
        i = self.slot.get(asset_id)
        if i is not None:
            return i
        i = len(self.asset_ids)
        if i == self.capacity:
            self._grow()
        self.slot[asset_id] = i
        self.asset_ids.append(asset_id)
        self.gateways.append(asset_id)
        self.subscribers.append(asset_id)
        return i

    def _grow(self) -> None:
        n = self.capacity
        for name, column in self.columns.items():
            self.columns[name] = np.concatenate([column, np.full(n, _STARTS.get(name, 0.0))])
        for name, (dtype, fill) in (ROW_ARRAYS | ORDER_ARRAYS).items():
            setattr(self, name, np.concatenate([getattr(self, name), np.full(n, fill, dtype)]))
        self.capacity = 2 * n

    def apply_registrations(self, records: Iterable[AssetRegistered]) -> None:
        """Each record replaces the asset's row unless a newer version is in; the same version
        again (a replay) changes nothing."""
        c = self.columns
        waiting: list[TelemetryInterval] = []
        for r in records:
            waiting += self.held.pop(r.asset_id, ())
            i = self._row(r.asset_id)
            if r.version < self.version[i]:
                continue
            self.version[i] = r.version
            self.resource[i] = self.resource_codes.setdefault(
                r.resource_id, len(self.resource_codes)
            )
            self.enrolled[i] = r.status is AssetStatus.ENROLLED
            self.gateways[i] = r.commanded_by
            self.subscribers[i] = r.subscriber_id or r.asset_id
            c["capacity_kw"][i] = r.capacity_kw
            c["storage_kwh"][i] = r.storage_kwh
            c["reserve_pct"][i] = r.backup_reserve_pct
            c["battery_kw"][i] = r.rated_kw()[0]
            c["round_trip_efficiency"][i] = r.round_trip_efficiency
            self.dc[i] = r.coupling is Coupling.DC
            self.has_pv[i] = r.has_pv
        self.apply_telemetry(waiting)  # new rows: no window of theirs can close

    def apply_telemetry(self, readings: Iterable[TelemetryInterval]) -> list[Performance]:
        """Each channel dispatch tracks (PV, SoC) takes a reading's value where its interval
        ends later than the one held; a channel reported missing or questionable becomes
        unknown (NaN) as of that end, never 0. A battery reading within an asset's commanded
        window counts toward what it delivered. Returns the windows that closed."""
        c = self.columns
        closed: list[Performance] = []
        for r in readings:
            i = self.slot.get(r.asset_id)
            if i is None:
                self._hold(r)
                continue
            end_s = r.interval_end.timestamp()
            for channel, value_name, end_name in (
                (Channel.PV_KW, "pv_kw", "pv_end_s"),
                (Channel.SOC_PCT, "soc_pct", "soc_end_s"),
            ):
                quality = r.quality.get(channel)
                if quality is None or end_s <= c[end_name][i]:
                    continue
                value = r.value(channel)
                known = quality in KNOWN and value is not None
                c[value_name][i] = value if known else np.nan
                c[end_name][i] = end_s
            if self.order_code[i] < 0 or r.battery_kw is None or end_s <= c["battery_end_s"][i]:
                continue
            # From where the last counted reading ended: readings of two resolutions never
            # count the same minutes twice.
            start_s = max(end_s - r.interval_s, c["battery_end_s"][i], self.order_start_s[i])
            c["battery_end_s"][i] = end_s
            order_end_s = self.order_end_s[i]
            overlap_h = max(0.0, min(end_s, order_end_s) - start_s) / 3600
            # More than the setpoint earns nothing: it cannot hide a shortfall elsewhere.
            held_kw = min(max(r.battery_kw, 0.0), self.order_kw[i])
            self.order_delivered_kwh[i] += held_kw * overlap_h
            if end_s >= order_end_s:
                closed.append(self._close(i))
        return closed

    def _hold(self, reading: TelemetryInterval) -> None:
        """Keep a reading of an asset not registered yet, within the bounds."""
        kept = self.held.setdefault(reading.asset_id, [])
        self.held.move_to_end(reading.asset_id)
        kept.append(reading)
        if len(kept) > HELD_READINGS_PER_ASSET:  # the one that ends first goes
            kept.remove(min(kept, key=lambda held: held.interval_end))
            self.held_dropped += 1
        while len(self.held) > HELD_ASSETS_MAX:
            self.held_dropped += len(self.held.popitem(last=False)[1])

    def _close(self, i: int) -> Performance:
        """The window's account: commanded over the whole window, whatever was reported (an
        asset that stopped reporting delivered nothing it could show)."""
        code, self.order_code[i] = self.order_code[i], -1
        hours = (self.order_end_s[i] - self.order_start_s[i]) / 3600
        return Performance(
            self.order_ids[code],
            self.asset_ids[i],
            float(self.order_kw[i] * hours),
            float(self.order_delivered_kwh[i]),
        )

    def close_stale(self, max_age_s: float) -> list[Performance]:
        """Close the windows that ended more than `max_age_s` [s] before their resource's own
        clock (`nexwatt_shared.event_time.resource_clock`: other fleets' clocks, or an asset
        running ahead, never close them), whatever their telemetry: an asset that stopped
        reporting during its window delivered nothing it could show."""
        n = len(self.asset_ids)
        rows = np.flatnonzero(self.order_code[:n] >= 0)
        if not rows.size:
            return []
        codes = self.resource[rows]
        stale: list[int] = []
        for code in np.unique(codes):
            mine = rows[codes == code]
            stale += mine[self.order_end_s[mine] < self._clock_s(int(code)) - max_age_s].tolist()
        return [self._close(i) for i in stale]

    def _clock_s(self, code: int) -> float:
        """The resource's own clock [s since the epoch]: where its enrolled assets' telemetry
        has got to (NaN: none yet)."""
        n = len(self.asset_ids)
        members = np.flatnonzero((self.resource[:n] == code) & self.enrolled[:n])
        ends = np.fmax(self.columns["pv_end_s"][members], self.columns["soc_end_s"][members])
        return float(resource_clock(np.where(np.isfinite(ends), ends, np.nan)))

    def oldest_clock_s(self) -> float:
        """The earliest of the resources' clocks (NaN: no resource has telemetry)."""
        clocks = [self._clock_s(code) for code in self.resource_codes.values()]
        return float(np.nanmin(clocks)) if not np.all(np.isnan(clocks)) else np.nan

    def clock_s(self, resource_id: str) -> float:
        """`_clock_s` of a resource by id (NaN: unknown resource, or no telemetry)."""
        code = self.resource_codes.get(resource_id)
        return np.nan if code is None else self._clock_s(code)

    def order(self, asset_ids: Iterable[str], setpoints_kw: Iterable[float], instruction_id: str,
              start_s: float, end_s: float) -> None:  # fmt: skip
        """Track what the assets are told to hold, from the moment they are told (so that no
        reading of the window passes while acks are awaited), and then what they acknowledged:
        an asset's order for the same instruction keeps what it has measured and takes the new
        setpoint; another instruction's replaces it, as at the gateway; 0 ends it. Assets the
        view does not know are left out."""
        rows = np.fromiter(map(self.slot.get, asset_ids, itertools.repeat(-1)), np.int64)
        kw = np.fromiter(setpoints_kw, np.float64, rows.size)
        kw, rows = kw[rows >= 0], rows[rows >= 0]
        self.order_code[rows[kw <= 0]] = -1
        rows, kw = rows[kw > 0], kw[kw > 0]
        code = self.order_codes.setdefault(instruction_id, len(self.order_ids))
        if code == len(self.order_ids):
            self.order_ids.append(instruction_id)
        new = rows[self.order_code[rows] != code]
        self.order_delivered_kwh[new] = 0.0
        # Readings from before the window cannot count toward it.
        battery_end_s = self.columns["battery_end_s"]
        battery_end_s[new] = np.maximum(battery_end_s[new], start_s)
        self.order_code[rows], self.order_kw[rows] = code, kw
        self.order_start_s[rows], self.order_end_s[rows] = start_s, end_s

    def orders(self) -> dict[str, Order]:
        """Every asset's order now, by asset id (for reading, not for the hot path)."""
        return {
            self.asset_ids[i]: Order(
                self.order_ids[self.order_code[i]], float(self.order_start_s[i]),
                float(self.order_end_s[i]), float(self.order_kw[i]),
                float(self.order_delivered_kwh[i]),
            )
            for i in np.flatnonzero(self.order_code[: len(self.asset_ids)] >= 0).tolist()
        }  # fmt: skip

    def add_performance(self, closed: Iterable[Performance]) -> None:
        """Count windows just measured here at once (the periodic re-read of the log, which
        every replica does, replaces these sums with the same ones)."""
        c = self.columns
        for p in closed:
            i = self._row(p.asset_id)
            c["commanded_kwh"][i] += p.commanded_kwh
            c["delivered_kwh"][i] += p.delivered_kwh

    def set_performance(self, rows: Iterable[tuple[str, float, float]]) -> None:
        """The assets' measured history: (asset id, commanded kWh, delivered kWh) each."""
        c = self.columns
        for asset_id, commanded_kwh, delivered_kwh in rows:
            i = self._row(asset_id)
            c["commanded_kwh"][i] = commanded_kwh
            c["delivered_kwh"][i] = delivered_kwh

    # --- reading ----------------------------------------------------------------------------

    def members(self, resource_id: str) -> np.ndarray:
        """The rows of the resource's enrolled assets, in the order dispatch first heard of
        them."""
        code = self.resource_codes.get(resource_id)
        if code is None:
            return np.zeros(0, np.int64)
        return np.flatnonzero((self.resource == code) & self.enrolled)

    def fleet(self, resource_id: str, excluding: Iterable[str] = ()) -> Fleet:
        """The resource's enrolled assets (but `excluding`), as arrays."""
        slots = self.members(resource_id)
        left_out = [self.slot[a] for a in excluding if a in self.slot]
        if left_out:
            slots = slots[~np.isin(slots, left_out)]
        c = {name: column[slots] for name, column in self.columns.items()}
        capacity_kw = c["capacity_kw"]
        return Fleet(
            slots=slots,
            asset_ids=[self.asset_ids[i] for i in slots],
            gateway_ids=[self.gateways[i] for i in slots],
            subscribers=[self.subscribers[i] for i in slots],
            ratings=AssetRatings(
                battery_continuous_kw=c["battery_kw"],
                battery_peak_kw=c["battery_kw"],
                usable_kwh=c["storage_kwh"],
                round_trip_efficiency=c["round_trip_efficiency"],
                coupling=np.where(self.dc[slots], Coupling.DC.value, Coupling.AC.value),
                pv_dc_kw=capacity_kw,  # not used by dispatch
                inverter_ac_kw=capacity_kw,
                backup_reserve_pct=c["reserve_pct"],
            ),
            has_pv=self.has_pv[slots],
            pv_kw=c["pv_kw"],
            soc_pct=c["soc_pct"],
            pv_end_s=c["pv_end_s"],
            soc_end_s=c["soc_end_s"],
            delivered_kwh=c["delivered_kwh"],
            commanded_kwh=c["commanded_kwh"],
        )
