"""Wires dispatch: the in-memory view and its broadcast state consumer, the view's snapshot in
Redis, the ack book, the PostgreSQL log, the instruction consumer and the task that answers
instructions.

The state consumer reads every partition in every replica (each keeps the whole view in
memory): from the last snapshot's positions when there is one, else from the beginning of
`asset.registered`; telemetry and acks from `dispatch_replay_s` back at most. Instructions wait
until it has caught up, so none is decided on a half-built view.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog

from nexwatt_dispatch import snapshot
from nexwatt_dispatch.acks import KEEP_S as ACKS_KEPT_S
from nexwatt_dispatch.acks import AckBook
from nexwatt_dispatch.config import Settings
from nexwatt_dispatch.handlers import Dispatcher, StateHandler
from nexwatt_dispatch.log import DispatchLog
from nexwatt_dispatch.view import FleetView
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import (
    ASSET_COMMAND_ACK,
    ASSET_REGISTERED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
)
from nexwatt_shared.wiring import open_resources

log = structlog.get_logger()
MIGRATIONS = Path(__file__).with_name("migrations")
CAUGHT_UP_POLL_S = 0.1


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS, redis=True)
    assert res.pool is not None and res.redis is not None
    redis = res.redis
    snapshot_key = snapshot.key(f"{settings.consumer_group}.state")
    restored = await snapshot.load(redis, snapshot_key)
    view, positions = restored or (FleetView(), {})
    log.info("view restored from its snapshot" if restored else "no snapshot: view from the topics",
             assets=len(view.asset_ids))  # fmt: skip
    acks, dispatch_log = AckBook(), DispatchLog(res.pool)
    view_ready = asyncio.Event()
    replay_s = max(settings.dispatch_replay_s, settings.dispatch_telemetry_max_age_s)
    state_handler = StateHandler(view, acks, dispatch_log, settings.dispatch_telemetry_max_age_s)
    state = res.consumer(
        [ASSET_REGISTERED, TELEMETRY_INTERVAL, ASSET_COMMAND_ACK],
        state_handler.handle,
        role="state",
        replay={ASSET_REGISTERED.name: None, TELEMETRY_INTERVAL.name: replay_s,
                ASSET_COMMAND_ACK.name: min(replay_s, ACKS_KEPT_S)},
        first=ASSET_REGISTERED.name,  # the assets before what they report
        # Acks are not in the snapshot: always from (at most) the time they are kept back.
        start_at={tp: o for tp, o in positions.items() if tp.topic != ASSET_COMMAND_ACK.name},
    )  # fmt: skip
    dispatcher = Dispatcher(settings, view, acks, dispatch_log, res.producer, view_ready)
    instructions = res.consumer([DISPATCH_INSTRUCTION], dispatcher.handle)

    async def open_when_caught_up(stop: asyncio.Event) -> None:
        """Let instructions be decided once the view holds what the topics hold (a worker
        runs until the service stops)."""
        while not state.ready(settings.ready_max_lag, float("inf")):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CAUGHT_UP_POLL_S)
            if stop.is_set():
                return
        await dispatcher.restore_orders()
        view_ready.set()
        log.info("view caught up with the topics", assets=len(view.asset_ids))
        await stop.wait()

    async def take_snapshots(stop: asyncio.Event) -> None:
        """Write the view to Redis now and then, between two batches of the state consumer."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.dispatch_snapshot_every_s)
            if not view_ready.is_set():
                continue
            async with state_handler.between_batches:
                taken, at = view.copy(), dict(state.handled)
            try:
                await snapshot.save(redis, snapshot_key, taken, at)
            except Exception as exc:  # Redis away: the next one will do
                log.warning("view snapshot not written", error=str(exc))

    return res.process(
        [state.run, instructions.run, dispatcher.run, open_when_caught_up, take_snapshots]
    )
