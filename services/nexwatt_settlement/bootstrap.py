"""Wires settlement: PostgreSQL and one consumer of four topics (no API beyond health)."""

from __future__ import annotations

from pathlib import Path

from nexwatt_settlement.config import Settings
from nexwatt_settlement.handlers import make_handler
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import (
    ASSET_REGISTERED,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
)
from nexwatt_shared.wiring import open_resources

MIGRATIONS = Path(__file__).with_name("migrations")


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS)
    assert res.pool is not None
    handler = make_handler(
        res.pool,
        res.producer,
        settings.settlement_grace_s,
        settings.settlement_baseline_lookback_s,
    )
    consumer = res.consumer(
        [DISPATCH_INSTRUCTION, DISPATCH_CONFIRMED, TELEMETRY_INTERVAL, ASSET_REGISTERED], handler
    )
    return res.process([consumer.run])
