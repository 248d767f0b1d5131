"""Wires capacity-model: PostgreSQL, one consumer of two topics, the snapshot API; and the
auction offers: their routes, the consumer of `capacity.clearing`, their outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from fastapi import FastAPI, HTTPException

from nexwatt_capacity_model import offer_store, offers
from nexwatt_capacity_model.config import Settings
from nexwatt_capacity_model.domain import PortfolioCapacity, portfolio
from nexwatt_capacity_model.handlers import make_handler
from nexwatt_capacity_model.offers_api import offers_router
from nexwatt_capacity_model.store import all_snapshots, current_snapshot
from nexwatt_shared.contracts import CapacitySnapshot, OfferClearing
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery, PoisonMessage
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.service import ServiceProcess, Worker
from nexwatt_shared.topics import ASSET_REGISTERED, CAPACITY_CLEARING, TELEMETRY_INTERVAL
from nexwatt_shared.wiring import open_resources

MIGRATIONS = Path(__file__).with_name("migrations")
log = structlog.get_logger()


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


def make_clearing_handler(pool: asyncpg.Pool, producer: EventProducer) -> BatchHandler:
    """Records each auction result on its submitted offer and publishes the change. A clearing
    of an unknown offer, or one its offer's state refuses (not submitted, another result
    already), is dead-lettered with the reason. The others are written first: handled again
    after the letters, each is a replay that changes nothing."""

    async def handle(batch: list[Delivery]) -> None:
        refused: list[tuple[Delivery, str]] = []
        for delivery in batch:
            clearing = delivery.payload
            assert isinstance(clearing, OfferClearing)
            apply = partial(offers.record_clearing, clearing=clearing)
            try:
                result = await offer_store.change(pool, clearing.offer_id, apply, producer.source)
            except (offers.TransitionRefused, offer_store.AnotherOfferInAuction) as exc:
                refused.append((delivery, str(exc)))
                continue
            if result is None:
                refused.append((delivery, f"offer {clearing.offer_id} is unknown"))
            elif result[1]:
                log.info("offer cleared", offer_id=clearing.offer_id, state=result[0].state)
        await offer_store.publish(pool, producer)
        if refused:
            raise PoisonMessage(refused)

    return handle


def offer_relay(pool: asyncpg.Pool, producer: EventProducer, poll_s: float) -> Worker:
    """Publishes offer changes left unpublished (Kafka was away, or a replica stopped)."""

    async def relay(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await offer_store.publish(pool, producer)
            except Exception:
                log.warning("publishing offer changes failed; tried again", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    return relay


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
