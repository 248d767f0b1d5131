"""The simulation loop and the gateway side of dispatch (commands in, acks out)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import structlog

from nexwatt_fleet_sim import solaredge
from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import SimFleet
from nexwatt_fleet_sim.history import backfill
from nexwatt_fleet_sim.physics import LOAD_NOISE, STEP_S, FloatArray, discharge_limit_kw
from nexwatt_shared.codec import encode, raw_envelope
from nexwatt_shared.contracts import AssetCommand, AssetCommandAck, TelemetryInterval
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import ASSET_COMMAND_ACK, TELEMETRY_INTERVAL, TELEMETRY_RAW

log = structlog.get_logger()
WH_PER_KWH = 1000.0
BATTERY_MODEL = "BAT-10K1P"  # SolarEdge Energy Bank, as its storageData names it
REFUSED = "the owner opted out of this event"
NO_HEADROOM = "no discharge headroom now: the inverter is full of PV"


class RawPayload(NamedTuple):
    """A vendor's own payload for `telemetry.raw`."""

    asset_id: str
    fmt: str  # e.g. solaredge.storage-data.v1
    data: dict[str, Any]
    event_id: str  # deterministic: a re-run publishes the same ids


@dataclass
class Closed:
    """What one step closed: normalized readings, and SolarEdge sites' payloads."""

    readings: list[TelemetryInterval] = field(default_factory=list)
    raw: list[RawPayload] = field(default_factory=list)


class Orders:
    """Each asset's current order, as arrays over the fleet: the accepted setpoint as the asset
    will actually carry it out, over its window, for its instruction."""

    def __init__(self, n: int) -> None:
        self.start_s = np.zeros(n)  # window start [s since the epoch]
        self.end_s = np.zeros(n)  # window end, excluded [s since the epoch]
        self.target_kw = np.zeros(n)  # acknowledged setpoint times the response factor [kW]
        self.instruction = np.full(n, -1)  # index into `instruction_ids`; -1: no order
        self.instruction_ids: list[str] = []
        self._codes: dict[str, int] = {}

    def place(
        self,
        assets: np.ndarray,
        instruction_id: str,
        start: datetime,
        end: datetime,
        target_kw: FloatArray,
    ) -> None:
        """Give `assets` (fleet indices) an order each, replacing any they had."""
        code = self._codes.get(instruction_id)
        if code is None:
            code = self._codes[instruction_id] = len(self.instruction_ids)
            self.instruction_ids.append(instruction_id)
        self.instruction[assets] = code
        self.start_s[assets] = start.timestamp()
        self.end_s[assets] = end.timestamp()
        self.target_kw[assets] = target_kw

    def clear(self, assets: np.ndarray) -> None:
        self.instruction[assets] = -1

    def active(self, at: datetime) -> np.ndarray:
        """Whether each asset carries out an order at `at` (bool per asset)."""
        t = at.timestamp()
        return (self.instruction >= 0) & (self.start_s <= t) & (t < self.end_s)


def lost_first_time(command_id: str, seed: int, fraction: float) -> bool:
    """Whether a gateway loses this command the first time it sees it: a share `fraction` of
    command ids, picked by a hash of the seed and the id (the same in every run and process).

    Parameters
    ----------
    fraction : share of command messages lost [-], in [0, 1]
    """
    digest = hashlib.blake2b(f"{seed}:{command_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) < fraction * 2**64


class Simulator:
    def __init__(self, settings: Settings, fleet: SimFleet, producer: EventProducer) -> None:
        self.settings = settings
        self.fleet = fleet
        self.producer = producer
        self.clock = settings.sim_start
        self.index = {asset_id: i for i, asset_id in enumerate(fleet.asset_ids)}
        n = len(fleet.asset_ids)
        self.orders = Orders(n)
        self._lost: set[str] = set()  # command ids lost once: answered when seen again
        self.pv_now = np.zeros(n)  # PV through the inverter at the last step [kW]
        self._sums = np.zeros((4, n))  # pv, load, battery, net [kW * steps]
        self._steps = np.zeros(n)
        self._noise = np.random.default_rng(settings.sim_seed + 1)
        # By instruction: the battery energy its orders delivered over their windows [kWh AC].
        self.delivered_kwh: dict[str, float] = {}
        # SolarEdge sites: lifetime battery counters [Wh], the quarter hour's sums for
        # powerDetails (pv, load, export, import [kW * steps]) and each battery's last sample,
        # the first sample of its next storageData.
        self.zone = ZoneInfo(settings.sim_site_timezone)
        self._charged_wh = np.zeros(n)
        self._discharged_wh = np.zeros(n)
        self._quarter = np.zeros((4, n))
        self._quarter_steps = 0
        self._last_sample = self._first_samples()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish the fleet's telemetry history, then advance the event clock one step at a
        time, paced at `sim_speed` x real time."""
        await backfill(self.producer, self.fleet, self.settings, stop)
        self._last_sample = self._first_samples()  # the history moved the batteries on
        wall0, sim0 = time.monotonic(), self.clock
        log.info("fleet simulation started", assets=len(self.index), start=str(sim0))
        while not stop.is_set():
            closed = self.step()
            if closed.readings:
                await self.producer.publish_many(
                    TELEMETRY_INTERVAL,
                    closed.readings,
                    event_id=lambda r: f"{r.asset_id}@{r.interval_start:%Y%m%dT%H%M%SZ}",
                )
            if closed.raw:
                await self.producer.send_raw_many(
                    TELEMETRY_RAW.name, [(p.asset_id, self._encoded(p), ()) for p in closed.raw]
                )
            due = wall0 + (self.clock - sim0).total_seconds() / self.settings.sim_speed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(due - time.monotonic(), 0))

    def step(self) -> Closed:
        """One physics step [clock, clock + STEP_S); returns what closed: each asset's interval
        as a reading, or for a SolarEdge site its battery's storageData over the interval, and
        when a quarter hour closes its powerDetails."""
        f, dt_h = self.fleet, STEP_S / 3600.0
        mid = self.clock + timedelta(seconds=STEP_S / 2)
        active = self.orders.active(mid)
        target = np.where(active, self.orders.target_kw, np.nan)  # NaN: no order
        pv, load, battery = f.step(
            mid, dt_h, self.settings.sim_latitude_deg, self.settings.sim_longitude_deg,
            self._noise.normal(0, LOAD_NOISE, target.size), target,
        )  # fmt: skip
        codes = self.orders.instruction[active]
        delivered_kwh = np.bincount(codes, weights=battery[active] * dt_h)
        for code in np.unique(codes).tolist():
            instruction_id = self.orders.instruction_ids[code]
            before_kwh = self.delivered_kwh.get(instruction_id, 0.0)
            self.delivered_kwh[instruction_id] = before_kwh + float(delivered_kwh[code])
        # DC-coupled, the PV beyond the inverter's rating only charged the battery.
        self.pv_now = np.minimum(pv, f.ratings.pv_inverter_kw)
        net = pv + battery - load
        self._sums += np.vstack([pv, load, battery, net])
        self._steps += 1
        self._charged_wh += np.clip(-battery, 0.0, None) * dt_h * WH_PER_KWH
        self._discharged_wh += np.clip(battery, 0.0, None) * dt_h * WH_PER_KWH
        self._quarter += np.vstack([pv, load, np.clip(net, 0.0, None), np.clip(-net, 0.0, None)])
        self._quarter_steps += 1
        self.clock += timedelta(seconds=STEP_S)
        out = Closed()
        intervals = np.flatnonzero(self.clock.timestamp() % f.interval_s == 0)
        for i in intervals:
            if f.offline[i] or self._steps[i] == 0:
                continue
            if f.solaredge[i]:
                out.raw.append(self._storage_data(i))
            else:
                out.readings.append(self._reading(i))
        self._sums[:, intervals] = 0.0
        self._steps[intervals] = 0
        if self.clock.timestamp() % solaredge.QUARTER_S == 0:
            # Only whole quarter hours: a run starting mid-quarter skips the first.
            if self._quarter_steps * STEP_S == solaredge.QUARTER_S:
                sites = np.flatnonzero(f.solaredge & ~f.offline)
                out.raw.extend(self._power_details(i) for i in sites)
            self._quarter[:] = 0.0
            self._quarter_steps = 0
        return out

    def _reading(self, i: int) -> TelemetryInterval:
        f = self.fleet
        pv, load, battery, net = self._sums[:, i] / self._steps[i]
        seconds = int(self._steps[i]) * STEP_S
        return TelemetryInterval(
            asset_id=f.asset_ids[i],
            interval_start=self.clock - timedelta(seconds=seconds),
            interval_s=seconds,
            pv_kw=round(float(pv), 4),
            load_kw=round(float(load), 4),
            battery_kw=round(float(battery), 4),
            net_kw=round(float(net), 4),
            soc_pct=round(float(100.0 * f.soc_kwh[i] / f.storage_kwh[i]), 2),
        )

    def _first_samples(self) -> dict[int, solaredge.BatterySample]:
        """Each SolarEdge battery's sample now, the start of its first storageData."""
        return {
            int(i): self._battery_sample(int(i), 0.0) for i in np.flatnonzero(self.fleet.solaredge)
        }

    def _battery_sample(self, i: int, battery_kw: float) -> solaredge.BatterySample:
        f = self.fleet
        return solaredge.BatterySample(
            at=self.clock,
            battery_kw=battery_kw,
            charged_wh=float(self._charged_wh[i]),
            discharged_wh=float(self._discharged_wh[i]),
            soc_pct=float(100.0 * f.soc_kwh[i] / f.storage_kwh[i]),
        )

    def _storage_data(self, i: int) -> RawPayload:
        """The battery's two samples around the interval that just closed: the last one sent
        (its start) and one now, carrying the interval's average power."""
        f = self.fleet
        start = self._last_sample[i]
        end = self._battery_sample(i, float(self._sums[2, i] / self._steps[i]))
        self._last_sample[i] = end
        asset_id = f.asset_ids[i]
        data = solaredge.storage_data(
            f"{asset_id}-BAT", BATTERY_MODEL, float(f.storage_kwh[i]) * WH_PER_KWH, [start, end],
            self.zone,
        )  # fmt: skip
        return RawPayload(asset_id, solaredge.STORAGE_DATA, data, self._event_id(i, start.at))

    def _power_details(self, i: int) -> RawPayload:
        """The quarter hour that just closed, averaged."""
        start = self.clock - timedelta(seconds=solaredge.QUARTER_S)
        pv, load, export, imported = self._quarter[:, i] / self._quarter_steps
        data = solaredge.power_details(
            start, self.zone, float(pv), float(load), float(export), float(imported)
        )
        return RawPayload(
            self.fleet.asset_ids[i], solaredge.POWER_DETAILS, data, self._event_id(i, start)
        )

    def _event_id(self, i: int, start: datetime) -> str:
        return f"{self.fleet.asset_ids[i]}@{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"

    def _encoded(self, payload: RawPayload) -> bytes:
        return encode(
            raw_envelope(
                payload.fmt, payload.asset_id, payload.data,
                site_timezone=self.settings.sim_site_timezone, source=self.producer.source,
                event_id=f"{payload.event_id}:{payload.fmt}",
            )
        )  # fmt: skip

    async def handle_commands(self, batch: list[Delivery]) -> None:
        """Play the gateways: answer each command message with one ack, or none when it reaches
        none of this fleet's online assets or the gateway lost it."""
        # What each battery can discharge, from the last step's PV: the same for the batch.
        limit_kw = discharge_limit_kw(self.fleet.ratings, self.pv_now)
        acks = []
        for delivery in batch:
            command = delivery.payload
            assert isinstance(command, AssetCommand)
            ack = self.answer(command, limit_kw)
            if ack is not None:
                acks.append(ack)
        if acks:
            await self.producer.publish_many(
                ASSET_COMMAND_ACK, acks, event_id=lambda a: f"ack:{a.command_id}"
            )

    def answer(self, command: AssetCommand, limit_kw: FloatArray) -> AssetCommandAck | None:
        """Carry out one command and say what each asset it reached will hold: at most what it
        can discharge now (`limit_kw` [kW] per asset of the fleet), nothing if its owner opted
        out; a setpoint of 0 ends the asset's order. Other fleets' assets are ignored, offline
        and unreachable ones never answer; None: no asset answers, or the gateway lost the
        command."""
        f = self.fleet
        asset_ids = [s.asset_id for s in command.setpoints]
        where = np.fromiter(map(self.index.get, asset_ids, repeat(-1)), int, len(asset_ids))
        reached = where >= 0
        reached[reached] = ~(f.offline | f.unreachable)[where[reached]]
        if not reached.any() or self._loses(command.command_id):
            return None
        rows = np.flatnonzero(reached)
        assets = where[rows]
        asked_kw = np.array([s.setpoint_kw for s in command.setpoints])[rows]
        stop = asked_kw == 0.0
        refused = f.refuses[assets] & ~stop
        feasible_kw = np.where(refused, 0.0, np.minimum(asked_kw, limit_kw[assets]))
        accepted = stop | (feasible_kw > 0.0)
        # The newest command replaces an asset's order; one it cannot carry leaves none (a
        # zero-power order would only stop its self-consumption).
        self.orders.clear(assets)
        placed = feasible_kw > 0.0
        self.orders.place(
            assets[placed], command.instruction_id, command.window_start, command.window_end,
            feasible_kw[placed] * f.response_factor[assets[placed]],
        )  # fmt: skip
        # One validation of the whole message (pydantic's core): faster than building each
        # entry with model_construct.
        entries = [
            {
                "asset_id": asset_ids[row],
                "accepted": ok,
                "setpoint_kw": kw,
                "reason": REFUSED if no else None if ok else NO_HEADROOM,
            }
            for row, ok, kw, no in zip(
                rows.tolist(), accepted.tolist(), np.round(feasible_kw, 3).tolist(),
                refused.tolist(), strict=True,
            )
        ]  # fmt: skip
        return AssetCommandAck.model_validate(
            {
                "command_id": command.command_id,
                "instruction_id": command.instruction_id,
                "gateway_id": command.gateway_id,
                "acks": entries,
                "acked_at": self.clock,
            }
        )

    def _loses(self, command_id: str) -> bool:
        """Whether the gateway loses the command now: only ever the first time it sees it."""
        if command_id in self._lost or not lost_first_time(
            command_id, self.settings.sim_seed, self.settings.sim_lost_command_fraction
        ):
            return False
        self._lost.add(command_id)
        log.info("gateway lost a command (it answers a re-send)", command_id=command_id)
        return True
