"""The fleet's telemetry history: hourly readings for the days before the simulation starts.

Customer baselines (PJM's High 4 of 5, High 2 of 3) are computed on hourly load from the days
before an event, and the simulator starts a few hours before its event. So before the live loop
publishes anything, the simulator backfills `NEXWATT_SIM_HISTORY_DAYS` days of meter-style
hourly readings on `telemetry.interval`, from the same physics as the live data (the history
is the fleet's past: the live loop starts from the state it ends in), for every asset that
reports: the SolarEdge sites too (only their live data goes to `telemetry.raw`), but
not the offline ones, which never report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice

import numpy as np
import structlog

from nexwatt_fleet_sim.config import Settings
from nexwatt_fleet_sim.fleet import SimFleet
from nexwatt_fleet_sim.physics import LOAD_NOISE, STEP_S
from nexwatt_shared.contracts import AssetType, TelemetryInterval
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import TELEMETRY_INTERVAL

log = structlog.get_logger()
HOUR_S = 3600
# Records handed to the producer at once, then awaited together: large enough that waiting for
# the broker's acks is rare, small enough to hold little in memory.
BATCH = 5000
# A noise stream of its own, so the history leaves the live loop's noise (seed + 1) untouched.
NOISE_STREAM = 2


def history_hours(start: datetime, days: int) -> list[datetime]:
    """The starts (UTC) of the whole hours the history covers: `days` x 24 of them, the first
    aligned down to its hour, the last ending at `start` aligned down to its hour. A start
    within an hour leaves that hour's part before `start` without history: an hourly reading
    there would overlap the live loop's first readings."""
    first = datetime.fromtimestamp((start.timestamp() - days * 86_400) // HOUR_S * HOUR_S, UTC)
    return [first + timedelta(hours=k) for k in range(days * 24)]


def hourly_history(fleet: SimFleet, settings: Settings) -> Iterator[TelemetryInterval]:
    """Each asset's hourly readings (`interval_s` = 3600) over the `sim_history_days` before
    `sim_start` (see `history_hours`), in time order, deterministic for `sim_seed`.

    The history is the fleet's past: it runs the live loop's one-minute physics
    (`SimFleet.step`, without orders: batteries charge from PV surplus, home ones cover the
    load) from the first hour on, moving the fleet's state with it, and after the last hour on
    to `sim_start` (those minutes unreported), so the live loop goes on from where the history
    ended. Each hour averages its steps; `soc_pct` is the state of charge at the hour's end, as
    a live reading carries it at its interval's close; pv is None for a storage-only asset.
    net = pv + battery - load (+ = export), as in the live loop."""
    lat, lon = settings.sim_latitude_deg, settings.sim_longitude_deg
    rng = np.random.default_rng([settings.sim_seed, NOISE_STREAM])
    has_pv = np.array([r["type"] != AssetType.STORAGE for r in fleet.registrations])
    n = len(fleet.asset_ids)
    no_order = np.full(n, np.nan)
    dt_h = STEP_S / 3600.0

    def steps(start: datetime, count: int) -> np.ndarray:
        """Run `count` steps from `start`; returns the sums of (pv, load, battery) [kW x steps]."""
        sums = np.zeros((3, n))
        noise = rng.normal(0.0, LOAD_NOISE, (count, n))
        for k in range(count):
            mid = start + timedelta(seconds=(k + 0.5) * STEP_S)
            sums += fleet.step(mid, dt_h, lat, lon, noise[k], no_order)
        return sums

    hours = history_hours(settings.sim_start, settings.sim_history_days)
    for hour in hours:
        pv, load, battery = steps(hour, HOUR_S // STEP_S) / (HOUR_S // STEP_S)
        net = pv + battery - load
        soc_pct = fleet.soc_pct()
        for i, asset_id in enumerate(fleet.asset_ids):
            if fleet.offline[i]:
                continue
            yield TelemetryInterval(
                asset_id=asset_id,
                interval_start=hour,
                interval_s=HOUR_S,
                pv_kw=round(float(pv[i]), 4) if has_pv[i] else None,
                load_kw=round(float(load[i]), 4),
                battery_kw=round(float(battery[i]), 4),
                net_kw=round(float(net[i]), 4),
                soc_pct=round(float(soc_pct[i]), 2),
            )
    if hours:
        rest_s = (settings.sim_start - hours[-1]).total_seconds() - HOUR_S
        steps(hours[-1] + timedelta(hours=1), int(rest_s) // STEP_S)


async def publish_history(
    producer: EventProducer, readings: Iterable[TelemetryInterval], stop: asyncio.Event
) -> int:
    """Publish `readings` on `telemetry.interval`, pipelined in batches; stop early when `stop`
    is set. Event ids are the natural key (asset, interval start and length): a restart sends
    the same ids and values, which consumers drop as repeats. Returns the readings sent."""
    sent = 0
    records = iter(readings)
    while not stop.is_set() and (batch := list(islice(records, BATCH))):
        await producer.publish_many(
            TELEMETRY_INTERVAL,
            batch,
            event_id=lambda r: f"{r.asset_id}@{r.interval_start:%Y%m%dT%H%M%SZ}/{r.interval_s}",
        )
        sent += len(batch)
    return sent


async def backfill(
    producer: EventProducer, fleet: SimFleet, settings: Settings, stop: asyncio.Event
) -> None:
    """Build and publish the history (nothing when `sim_history_days` is 0), logging when it
    starts and what it took."""
    days = settings.sim_history_days
    if days == 0:
        return
    hours = history_hours(settings.sim_start, days)
    log.info("telemetry history publishing", assets=len(fleet.asset_ids), days=days,
             start=str(hours[0]), end=str(hours[-1] + timedelta(hours=1)))  # fmt: skip
    began = time.monotonic()
    sent = await publish_history(producer, hourly_history(fleet, settings), stop)
    log.info("telemetry history published", readings=sent,
             seconds=round(time.monotonic() - began, 1))  # fmt: skip
