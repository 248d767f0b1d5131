"""The dispatch log in PostgreSQL: instructions, command messages, acks, answers, and each
asset's measured performance and event participation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson
import structlog

from nexwatt_dispatch.domain import Answer, CommandMessage
from nexwatt_dispatch.view import Performance
from nexwatt_shared import outbox
from nexwatt_shared.codec import envelope
from nexwatt_shared.contracts import (
    AssetCommandAck,
    DispatchConfirmed,
    DispatchInstruction,
    SetpointAck,
)
from nexwatt_shared.postgres import advisory_lock
from nexwatt_shared.topics import ASSET_COMMAND, DISPATCH_CONFIRMED

log = structlog.get_logger()


@dataclass(frozen=True)
class CommandRound:
    """The setpoints one round sent (one entry per asset), with each asset's limit [kW]; and
    the messages' bytes when just decided (empty: read back from the log)."""

    command_ids: list[str]
    asset_ids: list[str]
    setpoints_kw: list[float]
    limits_kw: list[float]
    encoded: list[outbox.Encoded] = field(default_factory=list)


@dataclass
class StandingRound:
    """One round of commands of an instruction revision: what each asset was commanded [kW]
    and what it answered."""

    commanded_kw: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)


@dataclass(frozen=True)
class Participation:
    """The subscribers whose assets acknowledged a setpoint, and the event's length [h]."""

    subscribers: list[str]
    hours: float


class DispatchLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def deciding(self, instruction_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the instruction's lock (all its revisions): one decision at a time, across
        replicas."""
        return advisory_lock(self.pool, f"dispatch:{instruction_id}")

    async def record_instruction(self, instruction: DispatchInstruction) -> DispatchInstruction:
        """Keep the instruction (before its offset is committed: an instruction in the log is
        answered, after a restart too); returns what was first received under its id and
        revision."""
        i = instruction
        content = await self.pool.fetchval(
            """WITH new AS (
                   INSERT INTO instructions (instruction_id, revision, resource_id, mw_requested,
                       window_start, window_end, issued_at, kind, cancelled, content)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (instruction_id, revision) DO NOTHING RETURNING content)
               SELECT content FROM new UNION ALL
               SELECT content FROM instructions WHERE instruction_id = $1 AND revision = $2""",
            i.instruction_id, i.revision, i.resource_id, i.mw, i.window_start, i.window_end,
            i.issued_at, i.kind.value, i.cancelled, i.model_dump_json(),
        )  # fmt: skip
        # A row from before revisions were kept has no content: it was this instruction.
        return i if content is None else DispatchInstruction.model_validate_json(content)

    async def other_revisions(self, instruction: DispatchInstruction) -> list[DispatchInstruction]:
        """The other revisions of the instruction's id received so far (rows from before
        revisions were kept have no content: revision 1's figures stand in for it)."""
        rows = await self.pool.fetch(
            "SELECT revision, mw_requested, window_start, window_end, issued_at, cancelled,"
            " content FROM instructions"
            " WHERE instruction_id = $1 AND revision <> $2",
            instruction.instruction_id,
            instruction.revision,
        )
        revisions = []
        for r in rows:
            if r["content"] is not None:
                revisions.append(DispatchInstruction.model_validate_json(r["content"]))
                continue
            figures = {"revision": r["revision"], "mw": r["mw_requested"],
                       "window_start": r["window_start"], "window_end": r["window_end"],
                       "issued_at": r["issued_at"], "cancelled": r["cancelled"]}  # fmt: skip
            revisions.append(instruction.model_copy(update=figures))
        return revisions

    async def unanswered(self, received_before_s: float = 0.0) -> list[DispatchInstruction]:
        """Instructions received (at least `received_before_s` ago) but not answered: a
        restart came in between, or the replica answering them died."""
        rows = await self.pool.fetch(
            "SELECT content FROM instructions WHERE status IS NULL AND content IS NOT NULL"
            " AND received_at <= now() - make_interval(secs => $1) ORDER BY received_at",
            received_before_s,
        )
        return [DispatchInstruction.model_validate_json(r["content"]) for r in rows]

    async def record_round(
        self,
        instruction: DispatchInstruction,
        round_: int,
        messages: Sequence[CommandMessage],
        limits_kw: Sequence[float],
        encoded: Sequence[outbox.Encoded],
    ) -> None:
        """The round's command messages, typed (for recovery and analysis), with each asset's
        limit [kW] in message order, and as the bytes to send (the outbox), in one
        transaction: a crash re-sends these, never new ones."""
        i, rows, at = instruction, [], 0
        for m in messages:
            n = len(m.asset_ids)
            rows.append((m.command_id, i.instruction_id, i.revision, round_, m.gateway_id,
                         m.asset_ids, m.setpoints_kw, limits_kw[at : at + n]))  # fmt: skip
            at += n
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO command_messages (command_id, instruction_id, revision, round,
                       gateway_id, asset_ids, setpoints_kw, limits_kw)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING""",
                rows,
            )
            await outbox.record_encoded(conn, ASSET_COMMAND, encoded)

    async def recorded_rounds(self, instruction_id: str, revision: int) -> dict[int, CommandRound]:
        """Rounds decided before a crash, by round, to send again as they were."""
        rows = await self.pool.fetch(
            "SELECT round, command_id, asset_ids, setpoints_kw, limits_kw FROM command_messages"
            " WHERE instruction_id = $1 AND revision = $2 ORDER BY round, command_id",
            instruction_id,
            revision,
        )
        rounds: dict[int, CommandRound] = {}
        for r in rows:
            got = rounds.setdefault(r["round"], CommandRound([], [], [], []))
            got.command_ids.append(r["command_id"])
            got.asset_ids.extend(r["asset_ids"])
            got.setpoints_kw.extend(r["setpoints_kw"])
            got.limits_kw.extend(r["limits_kw"])
        return rounds

    async def commanded_before(self, instruction_id: str, revision: int) -> set[str]:
        """Assets given a non-zero setpoint by an earlier revision of the instruction."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT a FROM command_messages m, unnest(m.asset_ids, m.setpoints_kw)"
            " AS u(a, kw) WHERE m.instruction_id = $1 AND m.revision < $2 AND u.kw > 0",
            instruction_id,
            revision,
        )
        return {r["a"] for r in rows}

    async def record_answer(
        self,
        answer: DispatchConfirmed,
        answer_id: str,
        source: str,
        on_row: bool = True,
        participation: Participation | None = None,
        called_off: bool = False,
    ) -> None:
        """The answer's event in the outbox, (`on_row`) its figures on the instruction's row
        and who took part, in one transaction; `called_off`: the event was cancelled before
        its window opened, so no one took part in it after all."""
        a = answer
        event = envelope(
            DISPATCH_CONFIRMED, a, source=source, event_id=answer_id, time=a.confirmed_at
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await outbox.record(conn, DISPATCH_CONFIRMED, event)
            if participation is not None:
                await conn.execute(
                    """INSERT INTO participation (instruction_id, revision, kind, window_start,
                           hours, subscribers)
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                    a.instruction_id, a.revision, a.kind.value, a.window_start,
                    participation.hours, participation.subscribers,
                )  # fmt: skip
            if called_off:
                await conn.execute(
                    "DELETE FROM participation WHERE instruction_id = $1", a.instruction_id
                )
            if not on_row:
                return
            await conn.execute(
                """UPDATE instructions SET status = $3, reason = $4, mw_confirmed = $5,
                       assets_commanded = $6, assets_dispatched = $7, processing_ms = $8,
                       mw_acknowledged = $9, assets_replaced = $10
                   WHERE instruction_id = $1 AND revision = $2""",
                a.instruction_id, a.revision, a.status.value, a.reason, a.mw_confirmed,
                a.assets_commanded, a.assets_dispatched, a.processing_ms, a.mw_acknowledged,
                a.assets_replaced,
            )  # fmt: skip

    async def standing(
        self, ending_after: datetime | None
    ) -> list[tuple[DispatchInstruction, StandingRound]]:
        """Every round of commands for the instructions whose window ends after `ending_after`
        (None: all), in the order they were decided (a later command to an asset replaces an
        earlier one, as at its gateway), with the answers they got: to measure what may still
        stand after a restart."""
        rows = await self.pool.fetch(
            """SELECT i.content, m.instruction_id, m.revision, m.round, m.asset_ids,
                      m.setpoints_kw, a.data::text AS ack
               FROM command_messages m
               JOIN instructions i USING (instruction_id, revision)
               LEFT JOIN ack_messages a USING (command_id)
               WHERE ($1::timestamptz IS NULL OR i.window_end > $1) AND i.content IS NOT NULL
               ORDER BY m.recorded_at, m.command_id""",
            ending_after,
        )
        rounds: dict[tuple[str, int, int], tuple[DispatchInstruction, StandingRound]] = {}
        for r in rows:
            key = (r["instruction_id"], r["revision"], r["round"])
            if key not in rounds:
                instruction = DispatchInstruction.model_validate_json(r["content"])
                rounds[key] = (instruction, StandingRound())
            got = rounds[key][1]
            got.commanded_kw.update(zip(r["asset_ids"], r["setpoints_kw"], strict=True))
            try:
                answers = list(_answers(r["ack"])) if r["ack"] is not None else []
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # Stored as it came and valid then; read as none if not now (never a stop).
                log.warning("stored ack not readable", instruction_id=key[0], error=str(exc))
                answers = []
            for asset_id, answer in answers:  # the first of each asset stands
                got.answers.setdefault(asset_id, answer)
        return list(rounds.values())

    async def record_acks(self, messages: Sequence[tuple[AssetCommandAck, bytes]]) -> None:
        """Each ack message with the record it came in (its data is stored as sent, not
        encoded again: 100,000 entries an instruction)."""
        await self.pool.executemany(
            """INSERT INTO ack_messages (command_id, instruction_id, gateway_id, data, acked_at)
               VALUES ($1, $2, $3, convert_from($4, 'UTF8')::jsonb -> 'data', $5)
               ON CONFLICT (command_id) DO NOTHING""",
            [(m.command_id, m.instruction_id, m.gateway_id, value, m.acked_at)
             for m, value in messages],
        )  # fmt: skip

    async def record_performance(self, rows: Sequence[Performance]) -> None:
        await self.pool.executemany(
            """INSERT INTO performance (instruction_id, asset_id, commanded_kwh, delivered_kwh)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [(p.instruction_id, p.asset_id, p.commanded_kwh, p.delivered_kwh) for p in rows],
        )

    async def performance_totals(self) -> list[tuple[str, float, float]]:
        """Each asset's measured history: (asset, commanded kWh, delivered kWh) summed over its
        windows."""
        rows = await self.pool.fetch(
            "SELECT asset_id, sum(commanded_kwh) AS c, sum(delivered_kwh) AS d"
            " FROM performance GROUP BY asset_id"
        )
        return [(r["asset_id"], r["c"], r["d"]) for r in rows]

    async def events_since(self, since: datetime) -> dict[str, int]:
        """Events (not tests) each subscriber took part in since `since`."""
        rows = await self.pool.fetch(
            "SELECT s, count(DISTINCT instruction_id) AS n"
            " FROM participation, unnest(subscribers) AS s"
            " WHERE window_start >= $1 AND kind = 'event' GROUP BY s",
            since,
        )
        return {r["s"]: r["n"] for r in rows}


def _answers(data: str) -> Iterator[tuple[str, Answer]]:
    """Each asset's answer in an ack message's data as stored (as the gateway sent it, version
    2's list or version 1's one asset), read as decoding read it when it came: "false" is
    false; fields a newer gateway adds are ignored."""
    fields = orjson.loads(data)
    for entry in fields.get("acks", [fields]):
        ack = SetpointAck.model_validate({k: entry[k] for k in _SETPOINT_ACK if k in entry})
        yield ack.asset_id, Answer(ack.accepted, ack.setpoint_kw)


_SETPOINT_ACK = frozenset(SetpointAck.model_fields)
