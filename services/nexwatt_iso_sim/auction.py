"""The capacity auction, from the ISO's side: each offer submitted on `capacity.offer` is
answered on `capacity.clearing`, cleared at the delivery year's clearing price when it asks no
more than that price."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime

from nexwatt_iso_sim.config import Settings
from nexwatt_shared.contracts import CapacityOffer, OfferClearing, OfferState
from nexwatt_shared.envelope import utcnow
from nexwatt_shared.kafka.consumer import ConsumerRunner, Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import CAPACITY_CLEARING, CAPACITY_OFFER


def clear(
    offer: CapacityOffer,
    clearing_prices: Mapping[str, float],
    fill_share: float,
    at: datetime,
) -> OfferClearing | None:
    """The auction's result for a submitted offer; None for an offer in any other state, or
    for a delivery year without a clearing price (no auction held).

    The offer clears `fill_share` [-] of its UCAP at the year's clearing price [$/MW-day] when
    its price is at most that price; otherwise, or with a fill share of 0, it does not clear.
    """
    price = clearing_prices.get(offer.delivery_year)
    if offer.state is not OfferState.SUBMITTED or price is None:
        return None
    cleared_mw = offer.offered_ucap_mw * fill_share if offer.price_usd_per_mw_day <= price else 0.0
    return OfferClearing(
        offer_id=offer.offer_id,
        resource_id=offer.resource_id,
        delivery_year=offer.delivery_year,
        cleared=cleared_mw > 0,
        cleared_mw=cleared_mw,
        clearing_price_usd_per_mw_day=price,
        cleared_at=at,
    )


def newest(offers: Iterable[CapacityOffer]) -> list[CapacityOffer]:
    """Each offer's highest version: an older one replayed after it is no news."""
    found: dict[str, CapacityOffer] = {}
    for offer in offers:
        if offer.offer_id not in found or offer.version > found[offer.offer_id].version:
            found[offer.offer_id] = offer
    return list(found.values())


def clearing_event_id(clearing: OfferClearing) -> str:
    """One result per offer: a re-send carries the same id."""
    return f"clearing:{clearing.offer_id}"


def summary(clearing: OfferClearing) -> str:
    """`OFFER_CLEARED  offer_id: "OFR-..."  cleared_mw: 12.345  clearing_price: 329.17`."""
    name = "OFFER_CLEARED" if clearing.cleared else "OFFER_NOT_CLEARED"
    return (
        f'{name}  offer_id: "{clearing.offer_id}"  resource_id: "{clearing.resource_id}"  '
        f'delivery_year: "{clearing.delivery_year}"  cleared_mw: {clearing.cleared_mw:.3f}  '
        f"clearing_price: {clearing.clearing_price_usd_per_mw_day:.2f}"
    )


async def run_auction(settings: Settings, offers_to_clear: int) -> None:
    """Answer submitted offers until `offers_to_clear` are answered (0: until SIGTERM or
    SIGINT); exit 1 when `iso_timeout_s` passes first."""
    security = settings.kafka_security()
    producer = EventProducer(settings.kafka_bootstrap_servers, settings.service_name, security)
    stop = asyncio.Event()
    answered = 0
    timed_out = False

    async def handle(batch: list[Delivery]) -> None:
        nonlocal answered
        submitted = newest(d.payload for d in batch if isinstance(d.payload, CapacityOffer))
        now = utcnow()
        results = [
            c
            for o in submitted
            if (c := clear(o, settings.iso_clearing_prices, settings.iso_clearing_fill_share, now))
        ]
        await producer.publish_many(CAPACITY_CLEARING, results, event_id=clearing_event_id)
        for result in results:
            print(summary(result), flush=True)
        answered += len(results)
        if offers_to_clear and answered >= offers_to_clear:
            stop.set()

    async def time_out() -> None:
        nonlocal timed_out
        await asyncio.sleep(settings.iso_timeout_s)
        timed_out = True
        stop.set()

    runner = ConsumerRunner(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.consumer_group}.auction",
        topics=[CAPACITY_OFFER],
        handler=handle,
        dead_letters=producer,
        security=security,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await producer.start()
    timer = asyncio.create_task(time_out())
    try:
        await runner.run(stop)
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
        await producer.stop()
    if timed_out and offers_to_clear:
        print(f"gave up after {settings.iso_timeout_s:.0f}s: {answered} offers answered",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(1)
