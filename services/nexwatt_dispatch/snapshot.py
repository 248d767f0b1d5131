"""The view's snapshot in Redis, so a (re)starting replica reads its columns at once and
replays only what came after, instead of every registration since the topic began (at
100,000 assets: seconds instead of a minute; `make bench`).

One hash holds the whole snapshot, written in one transaction: the columns as raw numpy bytes,
the ids, and the state consumer's position in each partition when it was taken. Every record
before those positions is in the columns; some after may be too (a replay re-applies them,
which changes nothing: registrations go by version, telemetry by interval end). Any replica
may write it; each snapshot is whole and consistent in itself.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import structlog
from aiokafka import TopicPartition
from redis.asyncio import Redis

from nexwatt_dispatch.view import ROW_ARRAYS, FleetView

log = structlog.get_logger()
LAYOUT = "v1"  # a new layout gets a new key
_LISTS = ("asset_ids", "gateways", "subscribers")


def key(group: str) -> str:
    """The snapshot's key: per consumer group (another deployment on the same Redis reads
    other topics)."""
    return f"{group}:view:{LAYOUT}"


async def save(
    redis: Redis, key: str, view: FleetView, positions: dict[TopicPartition, int]
) -> None:
    """Write the view as it is now, with the positions it reflects (take both between two
    batches of the state consumer)."""
    n = len(view.asset_ids)
    fields: dict[str, bytes | str] = {
        "rows": str(n),
        "positions": json.dumps({f"{tp.topic}:{tp.partition}": o for tp, o in positions.items()}),
        "resource_codes": json.dumps(view.resource_codes),
    }
    for name in _LISTS:
        fields[f"list:{name}"] = orjson.dumps(getattr(view, name)[:n])
    for name in ROW_ARRAYS:
        array = getattr(view, name)[:n]
        fields[f"array:{name}"] = array.tobytes()
        fields[f"dtype:{name}"] = array.dtype.str
    for name, column in view.columns.items():
        fields[f"column:{name}"] = column[:n].tobytes()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=fields)
        await pipe.execute()


async def load(redis: Redis, key: str) -> tuple[FleetView, dict[TopicPartition, int]] | None:
    """The last snapshot as a view and the positions to read on from; None when there is none.
    `redis` returns bytes (`open_redis(url, binary=True)`)."""
    try:
        raw = await redis.hgetall(key)
    except Exception as exc:  # a cache: without it the view is rebuilt from the topics
        log.warning("view snapshot not read: rebuilding from the topics", error=repr(exc))
        return None
    if not raw:
        return None
    fields = {k.decode(): v for k, v in raw.items()}
    try:
        return _view(fields)
    except (KeyError, ValueError) as exc:  # another layout (a bumped key would avoid it)
        log.warning("view snapshot unreadable: rebuilding from the topics", error=repr(exc))
        return None


def _view(fields: dict[str, bytes]) -> tuple[FleetView, dict[TopicPartition, int]]:
    n = int(fields["rows"])
    view = FleetView(capacity=max(n, 1024))
    for name in _LISTS:
        getattr(view, name).extend(orjson.loads(fields[f"list:{name}"]))
    view.slot = {asset_id: i for i, asset_id in enumerate(view.asset_ids)}
    view.resource_codes = json.loads(fields["resource_codes"])
    for name in ROW_ARRAYS:
        array = np.frombuffer(fields[f"array:{name}"], dtype=fields[f"dtype:{name}"].decode())
        getattr(view, name)[:n] = array
    for name, column in view.columns.items():
        column[:n] = np.frombuffer(fields[f"column:{name}"], dtype=column.dtype)
    positions = {
        TopicPartition(topic, int(partition)): offset
        for key, offset in json.loads(fields["positions"]).items()
        for topic, partition in [key.rsplit(":", 1)]
    }
    return view, positions
