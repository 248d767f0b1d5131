"""Redis (redis-py asyncio). Each service keeps its keys under its own prefix."""

from __future__ import annotations

from redis.asyncio import Redis


def open_redis(url: str, binary: bool = False) -> Redis:
    """A client; `binary`: values come back as bytes (for raw arrays), else as str."""
    return Redis.from_url(url, decode_responses=not binary, health_check_interval=30)
