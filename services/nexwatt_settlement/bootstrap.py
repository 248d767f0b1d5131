"""Wires settlement: PostgreSQL, one consumer of four topics, and a deadline timer."""

from __future__ import annotations

from pathlib import Path

from nexwatt_settlement import store
from nexwatt_settlement.config import Settings
from nexwatt_settlement.domain import Program
from nexwatt_settlement.handlers import Settler
from nexwatt_settlement.market_time import MarketClock
from nexwatt_settlement.money import PerformanceRates
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import (
    ASSET_REGISTERED,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
)
from nexwatt_shared.wiring import open_resources

MIGRATIONS = Path(__file__).with_name("migrations")


def program(settings: Settings) -> Program:
    return Program(
        model=settings.settlement_participation_model,
        method=settings.settlement_baseline_method,
        clock=MarketClock(settings.settlement_market_timezone),
        coverage_threshold=settings.settlement_coverage_threshold_pct / 100.0,
        rates=PerformanceRates(
            settings.settlement_charge_rate_usd_per_mw_interval,
            settings.settlement_bonus_rate_usd_per_mw_interval,
            source="settings",
        ),
        billing_sources=frozenset(
            v.strip() for v in settings.settlement_billing_quality_sources.split(",") if v.strip()
        ),
    )


def timing(settings: Settings) -> store.Timing:
    return store.Timing(
        final_after_s=settings.settlement_final_after_s,
        stall_s=settings.settlement_stall_s,
        restate_every_s=settings.settlement_restate_every_s,
    )


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS)
    assert res.pool is not None
    settler = Settler(res.pool, res.producer, program(settings), timing(settings))
    consumer = res.consumer(
        [DISPATCH_INSTRUCTION, DISPATCH_CONFIRMED, TELEMETRY_INTERVAL, ASSET_REGISTERED],
        settler.handle,
    )
    return res.process([consumer.run, settler.watch_deadlines])
