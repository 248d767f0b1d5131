"""Dispatch's own availability view in Redis: each asset's registration and newest telemetry,
and the members of each resource. Built only from topics, so it can be rebuilt by replaying."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from nexwatt_shared.contracts import (
    AssetCommandAck,
    AssetRegistered,
    AssetStatus,
    TelemetryInterval,
)

ASSET = "dispatch:asset:{}"
RESOURCE = "dispatch:resource:{}"
ACKS = "dispatch:acks:{}"
ACKS_TTL_S = 2 * 24 * 3600

# Apply a field update only when its version/time is newer than what is stored: replays and
# out-of-order partitions must never move an asset backwards. Returns the previous resource id
# (or false when the update was stale).
_SET_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(current) >= tonumber(ARGV[2]) then return false end
local previous = redis.call('HGET', KEYS[1], 'resource_id') or ''
redis.call('HSET', KEYS[1], unpack(ARGV, 1))
return previous
"""


@dataclass(frozen=True)
class Fleet:
    """The members of one resource as arrays, one element per asset."""

    asset_ids: list[str]
    capacity_kw: np.ndarray
    storage_kwh: np.ndarray
    reserve_pct: np.ndarray
    pv_kw: np.ndarray
    soc_pct: np.ndarray
    telemetry_end_epoch: np.ndarray  # inf age when never seen: -inf here


class Availability:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._set_if_newer = redis.register_script(_SET_IF_NEWER)

    async def apply_registrations(self, records: list[AssetRegistered]) -> None:
        for r in records:
            previous = await self._set_if_newer(
                keys=[ASSET.format(r.asset_id)],
                args=["version", r.version, "resource_id", r.resource_id, "status", r.status,
                      "capacity_kw", r.capacity_kw, "storage_kwh", r.storage_kwh,
                      "reserve_pct", r.backup_reserve_pct],
            )  # fmt: skip
            if previous is None:
                continue  # stale record
            async with self.redis.pipeline(transaction=True) as pipe:
                if previous and previous != r.resource_id:
                    pipe.srem(RESOURCE.format(previous), r.asset_id)
                if r.status == AssetStatus.ENROLLED:
                    pipe.sadd(RESOURCE.format(r.resource_id), r.asset_id)
                else:
                    pipe.srem(RESOURCE.format(r.resource_id), r.asset_id)
                await pipe.execute()

    async def apply_telemetry(self, readings: list[TelemetryInterval]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in readings:
                await self._set_if_newer(
                    keys=[ASSET.format(r.asset_id)],
                    args=["telemetry_end_epoch", r.interval_end.timestamp(), "pv_kw", r.pv_kw,
                          "soc_pct", r.soc_pct if r.soc_pct is not None else 0.0],
                    client=pipe,
                )  # fmt: skip
            await pipe.execute()

    async def fleet(self, resource_id: str) -> Fleet:
        asset_ids = sorted(await self.redis.smembers(RESOURCE.format(resource_id)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for asset_id in asset_ids:
                pipe.hgetall(ASSET.format(asset_id))
            rows = await pipe.execute()

        def column(name: str, missing: float = 0.0) -> np.ndarray:
            return np.array([float(row.get(name, missing)) for row in rows], dtype=float)

        return Fleet(
            asset_ids=asset_ids,
            capacity_kw=column("capacity_kw"),
            storage_kwh=column("storage_kwh"),
            reserve_pct=column("reserve_pct", 100.0),
            pv_kw=column("pv_kw"),
            soc_pct=column("soc_pct"),
            telemetry_end_epoch=column("telemetry_end_epoch", -np.inf),
        )

    async def record_acks(self, acks: list[AssetCommandAck]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for a in acks:
                key = ACKS.format(a.instruction_id)
                pipe.hset(key, a.command_id, a.setpoint_kw if a.accepted else 0.0)
                pipe.expire(key, ACKS_TTL_S)
            await pipe.execute()

    async def acked_setpoints_kw(self, instruction_id: str) -> dict[str, float]:
        """command id -> acknowledged setpoint [kW] (0 for a refusal)."""
        raw = await self.redis.hgetall(ACKS.format(instruction_id))
        return {k: float(v) for k, v in raw.items()}
