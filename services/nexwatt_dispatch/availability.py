"""Dispatch's own availability view in Redis: each asset's registration and newest telemetry,
and the members of each resource. Built only from topics, so it can be rebuilt by replaying."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from nexwatt_shared.contracts import (
    AssetCommandAck,
    AssetRegistered,
    TelemetryInterval,
)
from nexwatt_shared.redis_client import NewerOnly

ASSET = "dispatch:asset:{}"
RESOURCE_PREFIX = "dispatch:resource:"
RESOURCE = RESOURCE_PREFIX + "{}"
ACKS = "dispatch:acks:{}"
ACKS_TTL_S = 2 * 24 * 3600

# A registration is applied unless a newer version is stored; the same version again (a
# replayed batch) re-applies it, membership included, in one atomic step, so a crash between
# the record and its membership can never leave an asset out of (or stuck in) its resource.
_APPLY_REGISTRATION = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
local previous = redis.call('HGET', KEYS[1], 'resource_id')
if previous and previous ~= ARGV[2] then
  redis.call('SREM', ARGV[7] .. previous, ARGV[8])
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'resource_id', ARGV[2], 'status', ARGV[3],
           'capacity_kw', ARGV[4], 'storage_kwh', ARGV[5], 'reserve_pct', ARGV[6])
if ARGV[3] == 'enrolled' then
  redis.call('SADD', ARGV[7] .. ARGV[2], ARGV[8])
else
  redis.call('SREM', ARGV[7] .. ARGV[2], ARGV[8])
end
return 1
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
        self._apply_registration = redis.register_script(_APPLY_REGISTRATION)
        self._newer = NewerOnly(redis)

    async def apply_registrations(self, records: list[AssetRegistered]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in records:
                await self._apply_registration(
                    keys=[ASSET.format(r.asset_id)],
                    args=[r.version, r.resource_id, r.status, r.capacity_kw, r.storage_kwh,
                          r.backup_reserve_pct, RESOURCE_PREFIX, r.asset_id],
                    client=pipe,
                )  # fmt: skip
            await pipe.execute()

    async def apply_telemetry(self, readings: list[TelemetryInterval]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in readings:
                # Unknown state of charge counts as empty: no energy is credited on a guess.
                soc_pct = r.soc_pct if r.soc_pct is not None else 0.0
                await self._newer.hset(
                    pipe, ASSET.format(r.asset_id), "telemetry_end_epoch",
                    r.interval_end.timestamp(), {"pv_kw": r.pv_kw, "soc_pct": soc_pct},
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
