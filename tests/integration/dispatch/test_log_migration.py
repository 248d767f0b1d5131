"""Migration 004 against the real PostgreSQL: the seed's per-asset command and ack rows become
one-asset messages of the per-gateway log, which a restarted replica reads like any other."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from nexwatt_dispatch.bootstrap import MIGRATIONS
from nexwatt_dispatch.domain import Answer
from nexwatt_dispatch.log import DispatchLog
from nexwatt_shared.postgres import migrate, open_pool
from tests.helpers import unique

pytestmark = pytest.mark.integration
AT = datetime(2026, 3, 12, 9, 17, tzinfo=UTC)


async def test_seed_commands_and_acks_move_into_the_message_log(
    servers: dict[str, str], tmp_path: Path
) -> None:
    for sql in sorted(MIGRATIONS.glob("00[1-3]_*.sql")):
        shutil.copy(sql, tmp_path)
    database = unique("test_dispatch_migration").replace("-", "_")
    pool: asyncpg.Pool = await open_pool(servers["NEXWATT_POSTGRES_URL"], database, tmp_path)
    try:
        content = (
            '{"instruction_id":"I-1","resource_id":"R","mw":0.01,"issued_at":"2026-03-12T09:17:00Z",'
            '"window_start":"2026-03-12T09:15:00Z","window_end":"2026-03-12T10:15:00Z"}'
        )
        await pool.execute(
            "INSERT INTO instructions (instruction_id, resource_id, mw_requested, window_start,"
            " window_end, issued_at, status, content) VALUES ('I-1', 'R', 0.01, $1, $2, $1,"
            " 'confirmed', $3)",
            AT, AT.replace(hour=10), content,
        )  # fmt: skip
        await pool.executemany(
            "INSERT INTO commands VALUES ($1, 'I-1', $2, $3, $4)",
            [("I-1:A", "A", 5.0, 4.0), ("I-1:B", "B", 6.0, 6.0)],
        )
        await pool.execute(
            "INSERT INTO command_acks (command_id, instruction_id, asset_id, accepted,"
            " setpoint_kw, acked_at) VALUES ('I-1:A', 'I-1', 'A', true, 3.5, $1)",
            AT,
        )
        for sql in sorted(MIGRATIONS.glob("*.sql")):
            shutil.copy(sql, tmp_path)
        assert await migrate(pool, tmp_path) == [4]
        messages = await pool.fetch(
            "SELECT command_id, gateway_id, asset_ids, setpoints_kw, limits_kw"
            " FROM command_messages ORDER BY command_id"
        )
        assert [tuple(m) for m in messages] == [
            ("I-1:A", "A", ["A"], [4.0], [5.0]),
            ("I-1:B", "B", ["B"], [6.0], [6.0]),
        ]
        [(instruction, standing)] = await DispatchLog(pool).standing(None)
        assert instruction.instruction_id == "I-1"
        assert standing.commanded_kw == {"A": 4.0, "B": 6.0}
        assert standing.answers == {"A": Answer(True, 3.5)}  # B never answered
        # An ack is stored as the gateway sent it, and read as decoding read it: a string
        # "false" is false, a field a newer gateway added is ignored.
        await pool.execute(
            "INSERT INTO ack_messages (command_id, instruction_id, gateway_id, data, acked_at)"
            """ VALUES ('I-1:B', 'I-1', 'B', '{"acks": [{"asset_id": "B", "accepted": "false","""
            """ "setpoint_kw": "6.0", "firmware": "2.1"}]}', $1)""",
            AT,
        )
        [(_, standing)] = await DispatchLog(pool).standing(AT)  # the window ends after AT
        assert standing.answers == {"A": Answer(True, 3.5), "B": Answer(False, 6.0)}
        assert await DispatchLog(pool).standing(AT.replace(hour=11)) == []  # over by then
        tables = await pool.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename IN ('commands', 'command_acks')"
        )
        assert tables == []
    finally:
        await pool.close()
