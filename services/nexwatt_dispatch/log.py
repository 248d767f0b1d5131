"""The dispatch log in PostgreSQL: instructions, commands, acks and the answers decided."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import asyncpg

from nexwatt_shared.contracts import (
    AssetCommand,
    AssetCommandAck,
    DispatchConfirmed,
    DispatchInstruction,
)
from nexwatt_shared.postgres import advisory_lock


class DispatchLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def deciding(self, instruction_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the instruction's lock: one decision at a time, across replicas."""
        return advisory_lock(self.pool, f"dispatch:{instruction_id}")

    async def recorded_commands(
        self, instruction: DispatchInstruction
    ) -> tuple[list[AssetCommand], list[float]]:
        """Commands decided before a crash, with each one's limit [kW], to send again as they
        were; empty when nothing was decided yet."""
        rows = await self.pool.fetch(
            "SELECT command_id, asset_id, setpoint_kw, limit_kw FROM commands"
            " WHERE instruction_id = $1 ORDER BY asset_id",
            instruction.instruction_id,
        )
        i = instruction
        commands = [
            AssetCommand(
                command_id=r["command_id"],
                instruction_id=i.instruction_id,
                asset_id=r["asset_id"],
                resource_id=i.resource_id,
                setpoint_kw=r["setpoint_kw"],
                window_start=max(i.issued_at, i.window_start),
                window_end=i.window_end,
                issued_at=i.issued_at,
            )
            for r in rows
        ]
        return commands, [r["limit_kw"] for r in rows]

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

    async def record_answer(self, conn: asyncpg.Connection, answer: DispatchConfirmed) -> None:
        """The answer's figures on the instruction's row, in the caller's transaction (the one
        that records the answer's event in the outbox)."""
        a = answer
        await conn.execute(
            """UPDATE instructions SET status = $2, reason = $3, mw_confirmed = $4,
                   assets_commanded = $5, assets_dispatched = $6, processing_ms = $7
               WHERE instruction_id = $1""",
            a.instruction_id, a.status.value, a.reason, a.mw_confirmed, a.assets_commanded,
            a.assets_dispatched, a.processing_ms,
        )  # fmt: skip

    async def record_acks(self, acks: Sequence[AssetCommandAck]) -> None:
        await self.pool.executemany(
            """INSERT INTO command_acks (command_id, instruction_id, asset_id, accepted,
                   setpoint_kw, reason, acked_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (command_id) DO NOTHING""",
            [(a.command_id, a.instruction_id, a.asset_id, a.accepted, a.setpoint_kw, a.reason,
              a.acked_at) for a in acks],
        )  # fmt: skip
