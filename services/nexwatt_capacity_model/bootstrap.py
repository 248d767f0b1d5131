"""Wires capacity-model: PostgreSQL, one consumer of two topics, the snapshot API; and the
auction offers: their routes, the consumer of `capacity.clearing`, their outbox relay
(`offer_handlers.py`)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import FastAPI, HTTPException

from nexwatt_capacity_model import offers
from nexwatt_capacity_model.config import Settings
from nexwatt_capacity_model.domain import PortfolioCapacity, portfolio
from nexwatt_capacity_model.handlers import make_handler
from nexwatt_capacity_model.offer_handlers import make_clearing_handler, offer_relay
from nexwatt_capacity_model.offers_api import offers_router
from nexwatt_capacity_model.store import all_snapshots, current_snapshot
from nexwatt_shared.contracts import CapacitySnapshot
from nexwatt_shared.service import ServiceProcess
from nexwatt_shared.topics import ASSET_REGISTERED, CAPACITY_CLEARING, TELEMETRY_INTERVAL
from nexwatt_shared.wiring import open_resources

MIGRATIONS = Path(__file__).with_name("migrations")


def api(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI(title="Nexwatt capacity-model")

    @app.get("/v1/resources/{resource_id}/capacity")
    async def resource_capacity(resource_id: str) -> CapacitySnapshot:
        snap = await current_snapshot(pool, resource_id)
        if snap is None:
            raise HTTPException(404, f"no capacity snapshot for resource {resource_id!r}")
        return snap

    @app.get("/v1/portfolio/capacity")
    async def portfolio_capacity() -> PortfolioCapacity:
        """Every resource's latest capacity, and the portfolio's: sums of the parts."""
        return portfolio(await all_snapshots(pool))

    return app


def sizing_policy(settings: Settings) -> offers.SizingPolicy:
    return offers.SizingPolicy(
        deficiency_share=settings.offer_deficiency_share,
        non_performance_usd_per_mw_interval=settings.offer_non_performance_usd_per_mw_interval,
        pai_intervals_per_year=settings.offer_pai_intervals_per_year,
        default_monthly_churn=settings.offer_default_monthly_churn_pct / 100.0,
        soc_availability=(settings.offer_soc_availability,),
        soc_min_days=settings.offer_soc_min_days,
        soc_days=settings.offer_soc_days,
        samples=settings.offer_samples,
        source="capacity-model settings NEXWATT_OFFER_* (placeholders, see the README)",
    )


async def bootstrap(settings: Settings) -> ServiceProcess:
    res = await open_resources(settings, migrations=MIGRATIONS)
    assert res.pool is not None
    consumer = res.consumer(
        [ASSET_REGISTERED, TELEMETRY_INTERVAL],
        make_handler(
            res.pool,
            res.producer,
            settings.capacity_freshness_s,
            ZoneInfo(settings.capacity_market_timezone),
            settings.capacity_window_opening_min,
        ),
    )
    clearings = res.consumer(
        [CAPACITY_CLEARING], make_clearing_handler(res.pool, res.producer), role="clearing"
    )
    app = api(res.pool)
    app.include_router(
        offers_router(res.pool, res.producer, sizing_policy(settings), settings.offer_sampling_seed)
    )
    relay = offer_relay(res.pool, res.producer, settings.offer_outbox_poll_s)
    return res.process([consumer.run, clearings.run, relay], app)
