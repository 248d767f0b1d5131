"""Dispatch's own availability view in Redis: each asset's registration and, per channel it
needs (PV, SoC), its newest value with that interval's end, and the members of each resource.
Built only from topics, so it can be rebuilt by replaying."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from redis.asyncio import Redis

from nexwatt_shared.contracts import (
    AssetCommandAck,
    AssetRegistered,
    Channel,
    Quality,
    TelemetryInterval,
)
from nexwatt_shared.power_model import AssetRatings, Coupling, default_battery_kw
from nexwatt_shared.redis_client import NewerOnly

ASSET = "dispatch:asset:{}"
RESOURCE_PREFIX = "dispatch:resource:"
RESOURCE = RESOURCE_PREFIX + "{}"
ACKS = "dispatch:acks:{}"
ACKS_TTL_S = 2 * 24 * 3600
TRACKED = (Channel.PV_KW, Channel.SOC_PCT)  # what dispatch needs of an asset's telemetry
KNOWN = frozenset({Quality.ACTUAL, Quality.ESTIMATED})  # qualities whose value is used
UNKNOWN = ""  # stored for a channel reported missing or questionable: read back as NaN


def end_field(channel: Channel) -> str:
    """The hash field of a channel's newest interval end [s since the epoch]."""
    return f"{channel}_end_epoch"


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
           'capacity_kw', ARGV[4], 'storage_kwh', ARGV[5], 'reserve_pct', ARGV[6],
           'has_pv', ARGV[9], 'battery_kw', ARGV[10], 'round_trip_efficiency', ARGV[11],
           'coupling', ARGV[12])
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
    ratings: AssetRatings
    has_pv: np.ndarray  # bool: PV behind the inverter (a battery-only asset reports none)
    pv_kw: np.ndarray  # NaN: unknown (never reported, or reported missing or questionable)
    soc_pct: np.ndarray  # NaN: unknown
    pv_end_epoch: np.ndarray  # -inf: never reported (an infinite age)
    soc_end_epoch: np.ndarray  # -inf: never reported

    @property
    def telemetry_end_epoch(self) -> np.ndarray:
        """Each asset's newest interval end over its channels: the time it has reached."""
        return np.fmax(self.pv_end_epoch, self.soc_end_epoch)


class Availability:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._apply_registration = redis.register_script(_APPLY_REGISTRATION)
        self._newer = NewerOnly(redis)

    async def apply_registrations(self, records: list[AssetRegistered]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in records:
                battery_kw = r.rated_kw()[0]
                await self._apply_registration(
                    keys=[ASSET.format(r.asset_id)],
                    args=[r.version, r.resource_id, r.status, r.capacity_kw, r.storage_kwh,
                          r.backup_reserve_pct, RESOURCE_PREFIX, r.asset_id, int(r.has_pv),
                          battery_kw, r.round_trip_efficiency, r.coupling.value],
                    client=pipe,
                )  # fmt: skip
            await pipe.execute()

    async def apply_telemetry(self, readings: list[TelemetryInterval]) -> None:
        """Each channel a reading carries replaces that channel's value where its interval ends
        later than the stored one's; a channel the reading does not carry is left as it was. A
        channel reported missing or questionable becomes unknown as of that end, never 0."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in readings:
                for channel, quality in r.quality.items():
                    if channel not in TRACKED:
                        continue
                    value = r.value(channel)
                    stored = value if quality in KNOWN and value is not None else UNKNOWN
                    await self._newer.hset(
                        pipe, ASSET.format(r.asset_id), end_field(channel),
                        r.interval_end.timestamp(), {channel.value: stored},
                    )  # fmt: skip
            await pipe.execute()

    async def fleet(self, resource_id: str) -> Fleet:
        asset_ids = sorted(await self.redis.smembers(RESOURCE.format(resource_id)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for asset_id in asset_ids:
                pipe.hgetall(ASSET.format(asset_id))
            rows = await pipe.execute()

        def column(name: str, missing: float) -> np.ndarray:
            return np.array([float(row.get(name) or missing) for row in rows], dtype=float)

        capacity_kw = column("capacity_kw", 0.0)
        usable_kwh = column("storage_kwh", 0.0)
        # A record stored before batteries had ratings keeps what was assumed then until its
        # next version: the inverter's rating (within the plausible), no losses, PV sharing
        # the inverter.
        battery_kw = column("battery_kw", np.nan)
        battery_kw = np.where(
            np.isnan(battery_kw), default_battery_kw(capacity_kw, usable_kwh), battery_kw
        )
        return Fleet(
            asset_ids=asset_ids,
            ratings=AssetRatings(
                battery_continuous_kw=battery_kw,
                battery_peak_kw=battery_kw,
                usable_kwh=usable_kwh,
                round_trip_efficiency=column("round_trip_efficiency", 1.0),
                coupling=[row.get("coupling") or Coupling.DC.value for row in rows],
                pv_dc_kw=capacity_kw,  # not used by dispatch
                inverter_ac_kw=capacity_kw,
                backup_reserve_pct=column("reserve_pct", 100.0),  # unknown: nothing to give
            ),
            # A record stored before `has_pv` existed: assume PV until its next version.
            has_pv=column("has_pv", 1.0).astype(bool),
            pv_kw=column(Channel.PV_KW, np.nan),
            soc_pct=column(Channel.SOC_PCT, np.nan),
            pv_end_epoch=column(end_field(Channel.PV_KW), -np.inf),
            soc_end_epoch=column(end_field(Channel.SOC_PCT), -np.inf),
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
