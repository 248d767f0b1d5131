"""Redis (redis-py asyncio). Each service keeps its keys under its own prefix."""

from __future__ import annotations

from redis.asyncio import Redis


def open_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)
