"""The dispatch log in PostgreSQL: instructions, commands, acks and the answers we published."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from nexwatt_shared.contracts import AssetCommand, AssetCommandAck, DispatchInstruction


class DispatchLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def published_answer(self, instruction_id: str) -> dict | None:
        """The dispatch.confirmed event already published for this instruction, if any."""
        raw = await self.pool.fetchval(
            "SELECT confirmed_event FROM instructions WHERE instruction_id = $1", instruction_id
        )
        return json.loads(raw) if raw else None

    async def record_instruction(self, instruction: DispatchInstruction) -> None:
        i = instruction
        await self.pool.execute(
            """INSERT INTO instructions (instruction_id, resource_id, mw_requested,
                   window_start, window_end, issued_at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instruction_id) DO NOTHING""",
            i.instruction_id, i.resource_id, i.mw, i.window_start, i.window_end, i.issued_at,
        )  # fmt: skip

    async def record_commands(
        self, commands: Sequence[AssetCommand], limits_kw: Sequence[float]
    ) -> None:
        await self.pool.executemany(
            """INSERT INTO commands (command_id, instruction_id, asset_id, limit_kw, setpoint_kw)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (command_id) DO NOTHING""",
            [(c.command_id, c.instruction_id, c.asset_id, limit, c.setpoint_kw)
             for c, limit in zip(commands, limits_kw, strict=True)],
        )  # fmt: skip

    async def record_answer(self, event: dict) -> None:
        d = event["data"]
        await self.pool.execute(
            """UPDATE instructions SET status = $2, reason = $3, mw_confirmed = $4,
                   assets_commanded = $5, assets_dispatched = $6, processing_ms = $7,
                   confirmed_event = $8
               WHERE instruction_id = $1""",
            d["instruction_id"], d["status"], d.get("reason"), d["mw_confirmed"],
            d["assets_commanded"], d["assets_dispatched"], d["processing_ms"], json.dumps(event),
        )  # fmt: skip

    async def record_acks(self, acks: Sequence[AssetCommandAck]) -> None:
        await self.pool.executemany(
            """INSERT INTO command_acks (command_id, instruction_id, asset_id, accepted,
                   setpoint_kw, reason, acked_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (command_id) DO NOTHING""",
            [(a.command_id, a.instruction_id, a.asset_id, a.accepted, a.setpoint_kw, a.reason,
              a.acked_at) for a in acks],
        )  # fmt: skip
