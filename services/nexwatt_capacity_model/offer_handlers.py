"""The offers' two background jobs: recording the ISO's answers from `capacity.clearing`, and
publishing offer changes the outbox still holds."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

import asyncpg
import structlog

from nexwatt_capacity_model import offer_store, offers
from nexwatt_shared.contracts import OfferClearing
from nexwatt_shared.kafka.consumer import BatchHandler, Delivery, PoisonMessage
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.service import Worker

log = structlog.get_logger()


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
