"""Redis (redis-py asyncio). Each service keeps its keys under its own prefix."""

from __future__ import annotations

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
