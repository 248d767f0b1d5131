"""The auction offers' HTTP routes: size an offer for a resource and delivery year, approve it
(an operator), submit it, read it. Each change is stored and published to `capacity.offer`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import numpy as np
import structlog
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexwatt_capacity_model import offer_store, offers
from nexwatt_capacity_model.store import current_snapshot, socs_at_window_start
from nexwatt_shared.contracts import (
    MAX_PRICE_USD_PER_MW_DAY,
    MAX_RESOURCE_MW,
    CapacityOffer,
    DeliveryYear,
    Name,
)
from nexwatt_shared.kafka.producer import EventProducer

log = structlog.get_logger()
PUBLISH_TIMEOUT_S = 5.0  # an answer waits no longer for Kafka; the relay sends it later


class NewOffer(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    delivery_year: DeliveryYear
    price_usd_per_mw_day: float | None = Field(
        None, gt=0, le=MAX_PRICE_USD_PER_MW_DAY, description="Default: the year's offer cap"
    )
    offered_ucap_mw: float | None = Field(
        None,
        gt=0,
        le=MAX_RESOURCE_MW,
        description="UCAP to offer [MW]; default: the sizing's recommendation",
    )


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved_by: Name = Field(description="The operator approving the offer")


class FieldViolation(BaseModel):
    field: str
    found: float | str
    expected: str


class OfferRefused(BaseModel):
    detail: str
    violations: list[FieldViolation]


def _refused(violations: list[offers.Violation]) -> JSONResponse:
    body = OfferRefused(
        detail="; ".join(f"{v.field}: {v.expected}" for v in violations),
        violations=[FieldViolation(**v._asdict()) for v in violations],
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=422)


_UNKNOWN_OFFER = {404: {"description": "Unknown offer"}}
_REFUSED = {409: {"description": "The offer's state does not allow it; `detail` says why"}}


def offers_router(
    pool: asyncpg.Pool, producer: EventProducer, policy: offers.SizingPolicy, seed: int
) -> APIRouter:
    router = APIRouter(tags=["auction offers"])

    async def published() -> None:
        try:
            await asyncio.wait_for(offer_store.publish(pool, producer), PUBLISH_TIMEOUT_S)
        except Exception:  # recorded: the relay publishes it once Kafka answers
            log.warning("offer change recorded, not published yet", exc_info=True)

    async def changed(offer_id: str, apply: offer_store.Change) -> CapacityOffer:
        try:
            result = await offer_store.change(pool, offer_id, apply, producer.source)
        except (offers.TransitionRefused, offer_store.AnotherOfferInAuction) as exc:
            raise HTTPException(409, str(exc)) from exc
        if result is None:
            raise HTTPException(404, f"offer {offer_id!r} is unknown")
        offer, _ = result
        await published()
        log.info("offer changed", offer_id=offer_id, state=offer.state, version=offer.version)
        return offer

    @router.post(
        "/v1/resources/{resource_id}/offers",
        status_code=201,
        response_model=CapacityOffer,
        responses={
            404: {"description": "No capacity snapshot of the resource"},
            422: {
                "model": OfferRefused,
                "description": "The offer fails a check (`violations`, each naming its field), "
                "or the request is malformed (FastAPI's `detail` list, naming each field)",
            },
        },
    )
    async def create_offer(resource_id: str, request: NewOffer) -> CapacityOffer | JSONResponse:
        """Size an offer of the resource's UCAP for the delivery year's auction: the
        recommendation names its quantile of deliverable UCAP and its expected penalty. It
        waits, `sized`, for an operator's approval."""
        snap = await current_snapshot(pool, resource_id)
        if snap is None:
            raise HTTPException(404, f"no capacity snapshot for resource {resource_id!r}")
        year = request.delivery_year
        resource_ucap_mw = snap.ucap_mw.get(year)
        if resource_ucap_mw is None:
            return _refused(
                [offers.Violation("delivery_year", year, "a year the resource is accredited for")]
            )
        price = request.price_usd_per_mw_day or policy.caps.cap(year)
        if price is None:
            return _refused([policy.caps.uncapped(year)])
        now = datetime.now(UTC)
        as_of = now.date()
        cohorts = [
            offers.CohortNow(c.cohort, c.assets_enrolled, c.ucap_mw.get(year, 0.0))
            for c in snap.cohorts
        ]
        lifecycle = await offer_store.lifecycle(pool, resource_id)
        measured = offers.with_measured_soc(
            policy, await socs_at_window_start(pool, resource_id, policy.soc_days)
        )

        def size() -> CapacityOffer:
            history = offers.history_by_cohort(lifecycle, as_of)
            rng = np.random.default_rng(seed)
            deliverable = offers.deliverable_samples(cohorts, history, as_of, year, measured, rng)
            return offers.sized_offer(
                f"OFR-{uuid.uuid4().hex[:16]}",
                resource_id,
                year,
                resource_ucap_mw,
                deliverable,
                price,
                measured,
                now,
                request.offered_ucap_mw,
            )

        try:
            # Off the event loop: 100,000 assets take ~0.2 s, and the consumers share the loop.
            offer = await asyncio.to_thread(size)
        except offers.OfferInvalid as exc:
            return _refused(exc.violations)
        except ValidationError as exc:  # beyond the contract's bounds (e.g. > 10,000 MW)
            return _refused(
                [
                    offers.Violation(".".join(map(str, e["loc"])), str(e["input"])[:64], e["msg"])
                    for e in exc.errors()
                ]
            )
        await offer_store.create(pool, offer, producer.source)
        await published()
        log.info(
            "offer sized",
            offer_id=offer.offer_id,
            resource_id=resource_id,
            delivery_year=year,
            offered_ucap_mw=offer.offered_ucap_mw,
            quantile=offer.sizing.quantile,
            expected_penalty_usd=offer.sizing.expected_penalty_usd,
        )
        return offer

    @router.post("/v1/offers/{offer_id}/approve", responses={**_UNKNOWN_OFFER, **_REFUSED})
    async def approve(offer_id: str, request: Approval) -> CapacityOffer:
        """An operator approves a sized offer; a resource has one approved offer per year."""
        now = datetime.now(UTC)
        return await changed(offer_id, lambda o: offers.approve(o, request.approved_by, now))

    @router.post("/v1/offers/{offer_id}/submit", responses={**_UNKNOWN_OFFER, **_REFUSED})
    async def submit(offer_id: str) -> CapacityOffer:
        """Submit an approved offer to the auction (once)."""
        now = datetime.now(UTC)
        return await changed(offer_id, lambda o: offers.submit(o, now))

    @router.get("/v1/offers/{offer_id}", responses=_UNKNOWN_OFFER)
    async def get_offer(offer_id: str) -> CapacityOffer:
        offer = await offer_store.get(pool, offer_id)
        if offer is None:
            raise HTTPException(404, f"offer {offer_id!r} is unknown")
        return offer

    @router.get(
        "/v1/resources/{resource_id}/offers",
        responses={404: {"description": "Neither a snapshot nor an offer of the resource"}},
    )
    async def resource_offers(resource_id: str) -> list[CapacityOffer]:
        """The resource's offers, newest first."""
        found = await offer_store.of_resource(pool, resource_id)
        if not found and await current_snapshot(pool, resource_id) is None:
            raise HTTPException(404, f"resource {resource_id!r} is unknown")
        return found

    return router
