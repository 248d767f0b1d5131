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


# Per-field ordering for many hashes in one call: for each hash, each (field, order, value) sets
# `field` (and `field@`, its order) only when `order` is newer than the stored `field@`.
# The hashes travel as one JSON argument [[key, [[field, order, value], ...]], ...]: one round
# trip, one read and at most one write per hash, and almost no packing per entry.
_FIELDS_IF_NEWER = """
local set = 0
for _, h in ipairs(cjson.decode(ARGV[1])) do
  local key, fields, names = h[1], h[2], {}
  for i, f in ipairs(fields) do names[i] = f[1] .. '@' end
  local current = redis.call('HMGET', key, unpack(names))
  local newer = {}
  for i, f in ipairs(fields) do
    if not current[i] or tonumber(current[i]) < f[2] then
      table.insert(newer, names[i]); table.insert(newer, f[2])
      table.insert(newer, f[1]); table.insert(newer, f[3])
      set = set + 1
    end
  end
  if #newer > 0 then redis.call('HSET', key, unpack(newer)) end
end
return set
"""
NewerField = tuple[str, float, str]  # field, order, value


class NewerFields:
    """`await NewerFields(redis).set(redis, {"k": [("pv_kw", 1773321300.0, "3.2")]})`: each
    field of a hash keeps its own newest value, e.g. one channel of an asset's telemetry."""

    CHUNK = 1000  # hashes per call: one round trip for many, none blocking Redis for long

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_FIELDS_IF_NEWER)

    async def set(self, client: Redis | Pipeline, hashes: dict[str, list[NewerField]]) -> None:
        items = list(hashes.items())
        for start in range(0, len(items), self.CHUNK):
            chunk = json.dumps(items[start : start + self.CHUNK])
            await self._script(keys=[], args=[chunk], client=client)
