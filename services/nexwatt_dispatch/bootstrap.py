"""Wires dispatch: Redis availability view, PostgreSQL log, two consumer loops.

The instruction loop waits for acks while the state loop keeps consuming telemetry and acks, so
the two run in separate consumer groups.
"""

from __future__ import annotations

from pathlib import Path

from nexwatt_dispatch.availability import Availability
from nexwatt_dispatch.config import Settings
from nexwatt_dispatch.handlers import Dispatcher, make_state_handler
from nexwatt_dispatch.log import DispatchLog
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import (
    ASSET_COMMAND_ACK,
    ASSET_REGISTERED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
)
from nexwatt_shared.wiring import open_resources

MIGRATIONS = Path(__file__).with_name("migrations")


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS, redis=True)
    assert res.pool is not None and res.redis is not None
    availability = Availability(res.redis)
    dispatch_log = DispatchLog(res.pool)
    dispatcher = Dispatcher(settings, availability, dispatch_log, res.producer)
    state = res.consumer(
        [ASSET_REGISTERED, TELEMETRY_INTERVAL, ASSET_COMMAND_ACK],
        make_state_handler(availability, dispatch_log),
        role="state",
    )
    instructions = res.consumer([DISPATCH_INSTRUCTION], dispatcher.handle)
    return res.process([state.run, instructions.run])
