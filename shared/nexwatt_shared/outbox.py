"""Outputs that carry decisions or money: recorded first, then published from the record.

A service writes the exact bytes of such an event into its own `outbox` table, in the same
transaction as the decision, keyed by the event id. The first insert under an id wins; every
publication under that id comes from that row, byte for byte. So a crash between recording and
publishing, a replayed input or a second replica can re-send an event, but never send two
different contents under one id. Rows are published in the order they were recorded and marked
published; `FOR UPDATE SKIP LOCKED` keeps two replicas from sending the same row at once.

The table (each service's migration creates it):

    CREATE TABLE outbox (
        id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, topic text NOT NULL,
        key text, value bytea NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz);
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

import asyncpg
from pydantic import BaseModel

from nexwatt_shared.codec import encode, record_key
from nexwatt_shared.envelope import CloudEvent
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import Topic

_INSERT = (
    "INSERT INTO outbox (event_id, topic, key, value) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (event_id) DO NOTHING"
)


async def record(conn: asyncpg.Connection, topic: Topic, event: CloudEvent[BaseModel]) -> bool:
    """Record `event` for `topic` in the caller's transaction; False when its id is recorded
    already (the earlier content stands)."""
    status = await conn.execute(
        _INSERT, event.id, topic.name, record_key(topic, event.data), encode(event)
    )
    return status.endswith(" 1")


Encoded = tuple[str, str | None, bytes]  # event id, key, the record's bytes


async def record_encoded(conn: asyncpg.Connection, topic: Topic, events: Sequence[Encoded]) -> None:
    """Record events already encoded (`codec.encode_data`), in the caller's transaction; an id
    recorded already keeps its earlier content."""
    await conn.executemany(_INSERT, [(eid, topic.name, key, value) for eid, key, value in events])


async def publish_encoded(
    pool: asyncpg.Pool, producer: EventProducer, topic: Topic, events: Sequence[Encoded]
) -> None:
    """Publish events just recorded from the bytes in hand (not read back), then mark them
    published: the caller holds the decision's lock, so no one else sends them meanwhile; a
    crash in between leaves them unpublished, for `publish_pending`."""
    await producer.send_raw_many(topic.name, [(key, value, ()) for _, key, value in events])
    await pool.execute(
        "UPDATE outbox SET published_at = now() WHERE event_id = ANY($1::text[])",
        [eid for eid, _, _ in events],
    )


async def recorded_value(pool: asyncpg.Pool, event_id: str) -> bytes | None:
    """The recorded bytes of the event `event_id`, or None when nothing is recorded under it."""
    return await pool.fetchval("SELECT value FROM outbox WHERE event_id = $1", event_id)


async def publish_pending(
    pool: asyncpg.Pool,
    producer: EventProducer,
    event_ids: Sequence[str] | None = None,
    limit: int = 100,
) -> int:
    """Publish unpublished rows (only `event_ids`, when given), oldest first, and mark them
    published once the broker has them. Returns how many were sent."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, topic, key, value FROM outbox"
            " WHERE published_at IS NULL AND ($1::text[] IS NULL OR event_id = ANY($1::text[]))"
            " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
            list(event_ids) if event_ids is not None else None,
            limit,
        )
        # Pipelined, topic by topic in recorded order.
        for topic, same_topic in groupby(rows, key=lambda row: row["topic"]):
            await producer.send_raw_many(topic, [(r["key"], r["value"], ()) for r in same_topic])
        if rows:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
    return len(rows)


async def republish(pool: asyncpg.Pool, producer: EventProducer, event_ids: Sequence[str]) -> int:
    """Send recorded events again, published or not (a receiver that lost one asks for it by
    not answering); the same bytes under the same id. Returns how many were sent."""
    rows = await pool.fetch(
        "SELECT topic, key, value FROM outbox WHERE event_id = ANY($1::text[]) ORDER BY id",
        list(event_ids),
    )
    for topic, same_topic in groupby(rows, key=lambda row: row["topic"]):
        await producer.send_raw_many(topic, [(r["key"], r["value"], ()) for r in same_topic])
    return len(rows)
