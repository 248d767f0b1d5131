"""The auction offers' store in PostgreSQL: offers, their changes under a row lock, each change
recorded in the outbox in the same transaction and published to `capacity.offer` from it, and
the lifecycle history that churn is fitted on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import asyncpg
import structlog

from nexwatt_shared import outbox
from nexwatt_shared.codec import envelope
from nexwatt_shared.contracts import CapacityOffer
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.postgres import advisory_lock
from nexwatt_shared.topics import CAPACITY_OFFER

log = structlog.get_logger()
Change = Callable[[CapacityOffer], CapacityOffer | None]


class AnotherOfferInAuction(Exception):
    """The resource has another offer approved, submitted or cleared for the delivery year."""


def offer_event_id(offer: CapacityOffer) -> str:
    """One event per version of an offer."""
    return f"offer:{offer.offer_id}:v{offer.version}"


async def _record(conn: asyncpg.Connection, offer: CapacityOffer, source: str) -> None:
    event = envelope(
        CAPACITY_OFFER,
        offer,
        source=source,
        event_id=offer_event_id(offer),
        time=offer.updated_at,
    )
    await outbox.record(conn, CAPACITY_OFFER, event)


async def create(pool: asyncpg.Pool, offer: CapacityOffer, source: str) -> None:
    """Store a new offer and record its first version in the outbox, together."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO offers (offer_id, resource_id, delivery_year, state, version,"
            " updated_at, offer) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            offer.offer_id,
            offer.resource_id,
            offer.delivery_year,
            offer.state.value,
            offer.version,
            offer.updated_at,
            offer.model_dump_json(),
        )
        await _record(conn, offer, source)


async def change(
    pool: asyncpg.Pool, offer_id: str, apply: Change, source: str
) -> tuple[CapacityOffer, bool] | None:
    """Apply `apply` to the offer under a row lock and store its result with its outbox
    record, in one transaction: of two changes at once, the second sees the first's result.
    Returns the offer as it now is and whether it changed (`apply` returning None: nothing
    to change); None for an unknown offer. What `apply` raises rolls everything back;
    AnotherOfferInAuction when the change would give the resource two offers in the year's
    auction."""
    async with pool.acquire() as conn, conn.transaction():
        raw = await conn.fetchval(
            "SELECT offer FROM offers WHERE offer_id = $1 FOR UPDATE", offer_id
        )
        if raw is None:
            return None
        current = CapacityOffer.model_validate_json(raw)
        changed = apply(current)
        if changed is None:
            return current, False
        try:
            await conn.execute(
                "UPDATE offers SET state = $2, version = $3, updated_at = $4, offer = $5"
                " WHERE offer_id = $1",
                offer_id,
                changed.state.value,
                changed.version,
                changed.updated_at,
                changed.model_dump_json(),
            )
        except asyncpg.UniqueViolationError as exc:
            raise AnotherOfferInAuction(
                f"resource {current.resource_id} has another offer in the "
                f"{current.delivery_year} auction (approved, submitted or cleared)"
            ) from exc
        await _record(conn, changed, source)
    return changed, True


async def get(pool: asyncpg.Pool, offer_id: str) -> CapacityOffer | None:
    raw = await pool.fetchval("SELECT offer FROM offers WHERE offer_id = $1", offer_id)
    return CapacityOffer.model_validate_json(raw) if raw else None


async def of_resource(pool: asyncpg.Pool, resource_id: str) -> list[CapacityOffer]:
    """The resource's offers, newest first."""
    rows = await pool.fetch(
        "SELECT offer FROM offers WHERE resource_id = $1 ORDER BY updated_at DESC, offer_id",
        resource_id,
    )
    return [CapacityOffer.model_validate_json(r["offer"]) for r in rows]


# Each spell in the program of an asset the resource has held: it begins at a version that is
# not unenrolled after none or after an unenrolled one, and ends at the next unenrolled version.
_SPELLS = """
WITH held AS (
    SELECT DISTINCT asset_id FROM asset_history WHERE resource_id = $1
), versions AS (
    SELECT h.asset_id, h.version, h.status, h.resource_id, h.cohort, h.at,
           lag(h.status) OVER (PARTITION BY h.asset_id ORDER BY h.version) AS status_before
    FROM asset_history h JOIN held USING (asset_id)
)
SELECT coalesce(s.cohort, a.cohort) AS cohort, s.at AS enrolled_at,
       (SELECT min(e.at) FROM versions e
        WHERE e.asset_id = s.asset_id AND e.version > s.version
          AND e.status = 'unenrolled') AS unenrolled_at
FROM versions s LEFT JOIN assets a USING (asset_id)
WHERE s.status <> 'unenrolled' AND s.resource_id = $1
  AND (s.status_before IS NULL OR s.status_before = 'unenrolled')
"""


async def lifecycle(
    pool: asyncpg.Pool, resource_id: str
) -> list[tuple[str | None, datetime | None, datetime | None]]:
    """(cohort, enrolled_at, unenrolled_at) of each spell in the program that began in the
    resource: from a version enrolled or suspended (after none, or after an unenrolment) to
    the next unenrolled version (None: still in). A re-enrolled asset has one row per spell,
    so its departures all count. The cohort is the spell's first (else the asset's now)."""
    rows = await pool.fetch(_SPELLS, resource_id)
    return [(r["cohort"], r["enrolled_at"], r["unenrolled_at"]) for r in rows]


async def publish(pool: asyncpg.Pool, producer: EventProducer) -> int:
    """Publish every offer change recorded and not yet published, oldest first; returns how
    many. One replica at a time: with two, one could skip the rows the other has locked and
    send an offer's next version before the one in flight, leaving the older last on the
    compacted topic."""
    sent = 0
    async with advisory_lock(pool, "capacity-model:offer-outbox"):
        while batch := await outbox.publish_pending(pool, producer):
            sent += batch
    return sent
