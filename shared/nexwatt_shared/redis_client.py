"""Redis (redis-py asyncio). Each service keeps its keys under its own prefix."""

from __future__ import annotations

import json

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline


def open_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)


# Set a hash's fields only when the new value of its ordering field (a version, an event time)
# is newer than the stored one: replays and out-of-order partitions never move state backwards.
_HSET_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(current) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 1))
return 1
"""


class NewerOnly:
    """`await newer.hset(pipe, key, "interval_end_epoch", 1773321300.0, {"pv_kw": 3.2})`."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_HSET_IF_NEWER)

    async def hset(
        self,
        client: Redis | Pipeline,
        key: str,
        order_field: str,
        order: float,
        fields: dict[str, str | float],
    ) -> None:
        flat = [item for pair in fields.items() for item in pair]
        await self._script(keys=[key], args=[order_field, order, *flat], client=client)


# Per-field ordering for many hashes in one call: each entry (key, field, order, value) sets
# `field` (and `field@`, its order) only when `order` is newer than the stored `field@`.
# The entries travel as one JSON argument: one round trip and almost no packing per entry.
_FIELDS_IF_NEWER = """
local set = 0
for _, e in ipairs(cjson.decode(ARGV[1])) do
  local current = redis.call('HGET', e[1], e[2] .. '@')
  if not current or tonumber(current) < e[3] then
    redis.call('HSET', e[1], e[2] .. '@', e[3], e[2], e[4])
    set = set + 1
  end
end
return set
"""


class NewerFields:
    """`await NewerFields(redis).set(redis, [("k", "pv_kw", 1773321300.0, "3.2")])`: each field
    of a hash keeps its own newest value, e.g. one channel of an asset's latest telemetry."""

    CHUNK = 2000  # entries per call: one round trip for many, none blocking Redis for long

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_FIELDS_IF_NEWER)

    async def set(
        self, client: Redis | Pipeline, entries: list[tuple[str, str, float, str]]
    ) -> None:
        for start in range(0, len(entries), self.CHUNK):
            chunk = json.dumps(entries[start : start + self.CHUNK])
            await self._script(keys=[], args=[chunk], client=client)
