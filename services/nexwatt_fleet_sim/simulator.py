"""The simulation loop and the gateway side of dispatch (commands in, acks out)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import structlog

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import SimFleet
from nexwatt_fleet_sim.physics import (
    battery_step,
    household_load_kw,
    pv_output_kw,
    solar_elevation_sin,
)
from nexwatt_shared.contracts import AssetCommand, AssetCommandAck, TelemetryInterval
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import ASSET_COMMAND_ACK, TELEMETRY_INTERVAL

log = structlog.get_logger()
STEP_S = 60  # physics resolution; every interval length is a multiple of it


@dataclass(frozen=True)
class Order:
    """An accepted command as the asset will actually carry it out."""

    instruction_id: str
    start: datetime
    end: datetime
    target_kw: float  # acknowledged setpoint times the asset's response factor


class Simulator:
    def __init__(self, settings: Settings, fleet: SimFleet, producer: EventProducer) -> None:
        self.settings = settings
        self.fleet = fleet
        self.producer = producer
        self.clock = settings.sim_start
        self.index = {asset_id: i for i, asset_id in enumerate(fleet.asset_ids)}
        n = len(fleet.asset_ids)
        self.orders: dict[int, Order] = {}
        self.pv_now = np.zeros(n)
        self._sums = np.zeros((4, n))  # pv, load, battery, net [kW * steps]
        self._steps = np.zeros(n)
        self._noise = np.random.default_rng(settings.sim_seed + 1)
        self.delivered_kwh: dict[str, float] = {}  # by instruction: the truth settlement measures

    async def run(self, stop: asyncio.Event) -> None:
        """Advance the event clock one step at a time, paced at `sim_speed` x real time."""
        wall0, sim0 = time.monotonic(), self.clock
        log.info("fleet simulation started", assets=len(self.index), start=str(sim0))
        while not stop.is_set():
            readings = self.step()
            if readings:
                await self.producer.publish_many(
                    TELEMETRY_INTERVAL,
                    readings,
                    event_id=lambda r: f"{r.asset_id}@{r.interval_start:%Y%m%dT%H%M%SZ}",
                )
            due = wall0 + (self.clock - sim0).total_seconds() / self.settings.sim_speed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(due - time.monotonic(), 0))

    def step(self) -> list[TelemetryInterval]:
        """One physics step [clock, clock + STEP_S); returns the intervals that closed."""
        f, dt_h = self.fleet, STEP_S / 3600.0
        mid = self.clock + timedelta(seconds=STEP_S / 2)
        sin_el = solar_elevation_sin(mid, self.settings.sim_latitude_deg,
                                     self.settings.sim_longitude_deg)  # fmt: skip
        pv = pv_output_kw(f.pv_peak_kw, sin_el)
        local_hour = (mid.timestamp() / 3600.0 + self.settings.sim_longitude_deg / 15.0) % 24
        load = household_load_kw(f.base_load_kw, local_hour, self._noise.normal(0, 0.05, pv.size))
        target = np.zeros(pv.size)
        for i, order in self.orders.items():
            if order.start <= mid < order.end:
                target[i] = order.target_kw
        battery, f.soc_kwh = battery_step(target, f.capacity_kw, pv, f.soc_kwh, f.reserve_kwh, dt_h)
        for i, order in self.orders.items():
            if battery[i] > 0:
                self.delivered_kwh[order.instruction_id] = (
                    self.delivered_kwh.get(order.instruction_id, 0.0) + battery[i] * dt_h
                )
        self.pv_now = pv
        self._sums += np.vstack([pv, load, battery, pv + battery - load])
        self._steps += 1
        self.clock += timedelta(seconds=STEP_S)
        closed = np.flatnonzero(self.clock.timestamp() % f.interval_s == 0)
        readings = [self._reading(i) for i in closed if not f.offline[i] and self._steps[i] > 0]
        self._sums[:, closed] = 0.0
        self._steps[closed] = 0
        return readings

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

    async def handle_commands(self, batch: list[Delivery]) -> None:
        """Accept what each asset can physically do now and say so; ignore other fleets'."""
        acks = []
        for delivery in batch:
            command = delivery.payload
            assert isinstance(command, AssetCommand)
            i = self.index.get(command.asset_id)
            if i is None or self.fleet.offline[i]:
                continue  # not ours, or offline: no ack ever comes
            if self.fleet.refuses[i]:
                feasible, reason = 0.0, "the owner opted out of this event"
            else:
                headroom = max(float(self.fleet.capacity_kw[i] - self.pv_now[i]), 0.0)
                feasible, reason = min(command.setpoint_kw, headroom), None
                self.orders[i] = Order(
                    command.instruction_id,
                    command.window_start,
                    command.window_end,
                    feasible * float(self.fleet.response_factor[i]),
                )
            acks.append(
                AssetCommandAck(
                    command_id=command.command_id,
                    instruction_id=command.instruction_id,
                    asset_id=command.asset_id,
                    accepted=feasible > 0,
                    setpoint_kw=round(feasible, 3),
                    reason=reason,
                    acked_at=self.clock,
                )
            )
        if acks:
            await self.producer.publish_many(
                ASSET_COMMAND_ACK, acks, event_id=lambda a: f"ack:{a.command_id}"
            )
