"""Settlement's store in PostgreSQL: asset versions, telemetry and its hourly roll-up, the
windows to settle with their completeness, and every version of every report."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

import asyncpg
import numpy as np

from nexwatt_settlement.domain import (
    MEASURED,
    Due,
    Fleet,
    History,
    Payout,
    Program,
    Readings,
    Revision,
    settled_end,
    terms,
    withdrawal,
)
from nexwatt_settlement.market_time import HOURS, MarketClock, from_day_number, hourly_parts
from nexwatt_shared.contracts import (
    AssetRegistered,
    AssetStatus,
    Channel,
    DispatchConfirmed,
    DispatchInstruction,
    DispatchStatus,
    InstructionKind,
    SettlementFiled,
    SettlementFiledV1,
)
from nexwatt_shared.series import MAX_INTERVAL, Interval

TABLE = "telemetry"  # one row per asset, channel and interval (`nexwatt_shared.series`)
CHANNELS = (Channel.BATTERY_KW, Channel.NET_KW)  # what settlement keeps of a reading
FLOATS = np.dtype("<f8")

_INSERT_VERSIONS = """
INSERT INTO asset_versions (asset_id, version, resource_id, cohort, subscriber_id, capacity_kw,
                            status, updated_at)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::float8[],
                     $7::text[], $8::timestamptz[])
ON CONFLICT (asset_id, version) DO NOTHING
RETURNING asset_id, version, updated_at
"""
# RETURNING gives the rows stored now: only they are rolled up and counted, so a redelivery
# adds nothing twice.
_INSERT_TELEMETRY = """
INSERT INTO telemetry (asset_id, channel, interval_start, interval_s, value, quality, billing)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::float8[],
                     $6::text[], $7::bool[])
ON CONFLICT (asset_id, channel, interval_start) DO NOTHING
RETURNING asset_id, channel, interval_start, interval_s, value, quality
"""
_INSERT_REVISIONS = """
INSERT INTO instruction_revisions (instruction_id, revision, resource_id, mw, window_start,
                                   window_end, issued_at, kind, cancelled)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::float8[], $5::timestamptz[],
                     $6::timestamptz[], $7::timestamptz[], $8::text[], $9::bool[])
ON CONFLICT (instruction_id, revision) DO NOTHING
RETURNING instruction_id, revision, resource_id, window_start, window_end
"""
# A window's row, made by the first revision stored (`_apply_terms` keeps it on the lowest's).
_INSERT_WINDOWS = """
INSERT INTO instructions (instruction_id, resource_id, window_start, window_end)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
ON CONFLICT (instruction_id) DO NOTHING
"""
_INSERT_CONFIRMATIONS = """
INSERT INTO confirmations (instruction_id, revision, resource_id, status, reason, mw_requested,
                           mw_confirmed, confirmed_at, assets_commanded, commands_start)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::float8[],
                     $7::float8[], $8::timestamptz[], $9::int[], $10::timestamptz[])
ON CONFLICT (instruction_id, revision) DO NOTHING
RETURNING instruction_id, revision, resource_id, status, reason, assets_commanded
"""
# Every stored revision of some instructions with its answer (if any), lowest first.
_REVISIONS = """
SELECT r.instruction_id, r.revision, r.resource_id, r.window_start, r.window_end, r.issued_at,
       r.mw, r.cancelled, r.kind, c.status, c.mw_confirmed, c.assets_commanded, c.commands_start
FROM instruction_revisions r LEFT JOIN confirmations c USING (instruction_id, revision)
WHERE r.instruction_id = ANY($1::text[])
ORDER BY r.instruction_id, r.revision
"""
# New measured intervals of the settled channel: added to the coverage of the windows still
# waiting, and marking filed windows (whose data, or hour before, they touch) for a restatement.
_TOUCH_WINDOWS = """
WITH new (asset_id, s, e) AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
), member AS (  -- every resource the asset was ever in (settling reads it as of the window)
    SELECT DISTINCT asset_id, resource_id FROM asset_versions
    WHERE asset_id IN (SELECT asset_id FROM new)
), hits AS (
    SELECT i.instruction_id, i.state,
           sum(greatest(extract(epoch FROM least(n.e, coalesce(i.settled_end, i.window_end))
                                           - greatest(n.s, i.window_start)), 0)) AS covered_s
    FROM new n JOIN member m USING (asset_id)
    JOIN instructions i ON i.resource_id = m.resource_id
    WHERE n.s < coalesce(i.settled_end, i.window_end)
      AND n.e > i.window_start - make_interval(secs => $4)
    GROUP BY i.instruction_id, i.state
), touched AS (
    UPDATE instructions i SET covered_s = i.covered_s + h.covered_s,
                              covered_changed_at = CASE WHEN h.covered_s > 0 THEN now()
                                                        ELSE i.covered_changed_at END,
                              data_seq = i.data_seq + 1,
                              dirty = i.dirty OR i.state = 'filed'
    FROM hits h WHERE i.instruction_id = h.instruction_id AND h.state IN ('waiting', 'filed')
)
SELECT instruction_id FROM hits WHERE state = 'final'
"""
# Assets enrolled as of a window ($1 resource, $2 its start, $3 its end, $4 the settled
# channel): each asset's newest version at or before the start. An asset whose first record
# came later counts as that first record only if it has data in the window (registered after
# the fact, e.g. a simulated or backfilled fleet); one enrolled after the event never does.
_AS_OF = """
SELECT DISTINCT ON (v.asset_id) v.asset_id, v.resource_id, v.cohort, v.subscriber_id,
       v.capacity_kw, v.status
FROM asset_versions v
WHERE v.asset_id IN (SELECT asset_id FROM asset_versions WHERE resource_id = $1)
  AND (v.updated_at <= $2 OR EXISTS (
      SELECT 1 FROM telemetry t
      WHERE t.asset_id = v.asset_id AND t.channel = $4 AND t.value IS NOT NULL
        AND t.interval_start < $3 AND t.interval_start >= $2))
ORDER BY v.asset_id, (v.updated_at <= $2) DESC,
         CASE WHEN v.updated_at <= $2 THEN v.version ELSE -v.version END DESC
"""
# New asset versions that change who counts in an open window: one effective before the
# window's start, or an asset's first record with data in the window. Filed windows are marked
# for a restatement; waiting ones are counted again.
_VERSIONS_TOUCH = """
WITH v (asset_id, version, updated_at) AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[])
), hits AS (
    SELECT DISTINCT i.instruction_id, i.state
    FROM v JOIN asset_versions a ON a.asset_id = v.asset_id
    JOIN instructions i ON i.resource_id = a.resource_id AND i.state IN ('waiting', 'filed')
        -- a window not yet begun has no data to count (a fleet re-registering before a
        -- day-ahead event would otherwise recount it on every batch)
        AND i.window_start <= now()
    WHERE v.updated_at <= i.window_start
       OR (v.version = (SELECT min(f.version) FROM asset_versions f WHERE f.asset_id = v.asset_id)
           AND EXISTS (SELECT 1 FROM telemetry t
                       WHERE t.asset_id = v.asset_id AND t.channel = $4
                         AND t.interval_start < i.window_end
                         AND t.interval_start >= i.window_start))
), marked AS (
    UPDATE instructions i SET dirty = i.dirty OR i.state = 'filed', data_seq = i.data_seq + 1
    FROM hits h WHERE i.instruction_id = h.instruction_id
)
SELECT instruction_id FROM hits WHERE state = 'waiting'
"""
_COUNT_COVERAGE = f"""
WITH fleet AS (
    SELECT asset_id FROM ({_AS_OF}) a WHERE a.resource_id = $1 AND a.status = 'enrolled'
)
SELECT (SELECT count(*) FROM fleet) AS assets,
       coalesce(sum(greatest(extract(epoch FROM least(
           t.interval_start + make_interval(secs => t.interval_s), $3)
           - greatest(t.interval_start, $2)), 0)), 0) AS covered_s
FROM telemetry t
WHERE t.asset_id IN (SELECT asset_id FROM fleet) AND t.channel = $4
  AND t.quality = ANY($5::text[])
  AND t.interval_start < $3 AND t.interval_start > $2 - make_interval(secs => $6)
  AND t.interval_start + make_interval(secs => t.interval_s) > $2
"""


@dataclass(frozen=True)
class Saved:
    """What a batch changed that the handler reports on."""

    confirmations: list[asyncpg.Record]  # answers stored for the first time
    after_final: list[str]  # final windows that data arrived for: refused, logged
    unknown_assets: list[str]  # telemetry of assets without a record: kept, not settled
    unconfirmed: list[str]  # new revisions without an answer yet: kept, not settled
    unmatched: list[str]  # new answers of no known instruction revision yet: kept, not settled
    cancelled: list[str]  # windows called off at or before their start: nothing to settle
    revised: list[str]  # filed windows a revision or an answer marked for a restatement
    withdrawn: list[str]  # filed windows a cancellation left nothing of: to be withdrawn
    revised_after_final: list[str]  # final windows a revision or an answer came for: kept


class Stored(NamedTuple):
    """An instruction's revisions as stored: the first one's window, and each with its answer."""

    resource_id: str
    window_start: datetime
    window_end: datetime
    revisions: list[Revision]


async def _revisions(
    conn: asyncpg.Connection | asyncpg.Pool, instruction_ids: Sequence[str]
) -> dict[str, Stored]:
    """The stored revisions of each instruction that has any."""
    found: dict[str, Stored] = {}
    for r in await conn.fetch(_REVISIONS, list(instruction_ids)):
        stored = found.setdefault(
            r["instruction_id"],
            Stored(r["resource_id"], r["window_start"], r["window_end"], []),
        )
        stored.revisions.append(
            Revision(
                revision=r["revision"],
                issued_at=r["issued_at"],
                mw=r["mw"],
                cancelled=r["cancelled"],
                kind=InstructionKind(r["kind"]),
                answer=DispatchStatus(r["status"]) if r["status"] is not None else None,
                mw_confirmed=r["mw_confirmed"] or 0.0,
                assets_commanded=r["assets_commanded"] or 0,
                commands_start=r["commands_start"],
            )
        )
    return found


def _versions_args(assets: Sequence[AssetRegistered]) -> list[list]:
    return [
        [a.asset_id for a in assets],
        [a.version for a in assets],
        [a.resource_id for a in assets],
        [a.cohort for a in assets],
        [a.subscriber_id for a in assets],
        [a.capacity_kw for a in assets],
        [a.status.value for a in assets],
        [a.updated_at for a in assets],
    ]


async def _roll_up(
    conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], clock: MarketClock
) -> None:
    """Add newly stored measured intervals to the hourly roll-up: read under a row lock, add,
    write back."""
    rows = [r for r in rows if r["value"] is not None and r["quality"] in MEASURED]
    if not rows:
        return
    start_s = np.fromiter((r["interval_start"].timestamp() for r in rows), float, len(rows))
    which, day, hour, kwh, covered = hourly_parts(
        start_s,
        np.fromiter((r["interval_s"] for r in rows), float, len(rows)),
        np.fromiter((r["value"] for r in rows), float, len(rows)),
        clock,
    )
    keys = [(rows[i]["asset_id"], rows[i]["channel"]) for i in which]
    series, series_of = np.unique(
        np.array([f"{a}\x1f{c}" for a, c in keys], dtype=str), return_inverse=True
    )
    groups, group_of = np.unique(
        np.stack([series_of, day]), axis=1, return_inverse=True
    )  # (2, n_groups): series, day
    group_of = group_of.reshape(-1)
    add_kwh = np.zeros((groups.shape[1], HOURS))
    add_s = np.zeros((groups.shape[1], HOURS))
    np.add.at(add_kwh, (group_of, hour), kwh)
    np.add.at(add_s, (group_of, hour), covered)
    asset_ids = [str(series[s]).split("\x1f")[0] for s in groups[0]]
    channels = [str(series[s]).split("\x1f")[1] for s in groups[0]]
    days = [from_day_number(d) for d in groups[1]]
    # Rows created empty first, so that the lock below holds even for a day new to both of two
    # transactions (a rebalance can briefly give one partition to two replicas).
    zeros = np.zeros(HOURS, FLOATS).tobytes()
    await conn.execute(
        """
        INSERT INTO hourly (asset_id, channel, day, kwh, covered_s)
        SELECT k.asset_id, k.channel, k.day, $4, $4
        FROM unnest($1::text[], $2::text[], $3::date[]) AS k(asset_id, channel, day)
        ON CONFLICT (asset_id, channel, day) DO NOTHING
        """,
        asset_ids,
        channels,
        days,
        zeros,
    )
    stored = await conn.fetch(
        """
        SELECT h.asset_id, h.channel, h.day, h.kwh, h.covered_s FROM hourly h
        JOIN unnest($1::text[], $2::text[], $3::date[]) AS k(asset_id, channel, day)
          USING (asset_id, channel, day)
        FOR UPDATE OF h
        """,
        asset_ids,
        channels,
        days,
    )
    position = {
        (a, c, d): i for i, (a, c, d) in enumerate(zip(asset_ids, channels, days, strict=True))
    }
    for r in stored:
        i = position[(r["asset_id"], r["channel"], r["day"])]
        add_kwh[i] += np.frombuffer(r["kwh"], FLOATS)
        add_s[i] += np.frombuffer(r["covered_s"], FLOATS)
    await conn.execute(
        """
        UPDATE hourly h SET kwh = k.kwh, covered_s = k.covered_s
        FROM unnest($1::text[], $2::text[], $3::date[], $4::bytea[], $5::bytea[])
             AS k(asset_id, channel, day, kwh, covered_s)
        WHERE h.asset_id = k.asset_id AND h.channel = k.channel AND h.day = k.day
        """,
        asset_ids,
        channels,
        days,
        [row.astype(FLOATS).tobytes() for row in add_kwh],
        [row.astype(FLOATS).tobytes() for row in add_s],
    )


async def save_inputs(
    pool: asyncpg.Pool,
    program: Program,
    assets: list[AssetRegistered],
    intervals: list[Interval],
    instructions: list[DispatchInstruction],
    confirmations: list[DispatchConfirmed],
    billing: Sequence[bool] = (),
) -> Saved:
    """Store a batch's inputs in one transaction: asset versions, channel intervals (admitted by
    `nexwatt_shared.series.admit`) with their hourly roll-up and the windows they complete or
    change, instructions and confirmations (a window's completeness is counted once both are
    in). `billing` flags each interval that is billing-quality meter data."""
    async with pool.acquire() as conn, conn.transaction():
        recount: list[str] = []
        if assets:
            stored_versions = await conn.fetch(_INSERT_VERSIONS, *_versions_args(assets))
            if stored_versions:
                recount = [
                    r["instruction_id"]
                    for r in await conn.fetch(
                        _VERSIONS_TOUCH,
                        [r["asset_id"] for r in stored_versions],
                        [r["version"] for r in stored_versions],
                        [r["updated_at"] for r in stored_versions],
                        program.channel.value,
                    )
                ]
        after_final: list[str] = []
        unknown: list[str] = []
        if intervals:
            unknown = [
                r[0]
                for r in await conn.fetch(
                    "SELECT unnest($1::text[]) EXCEPT"
                    " SELECT asset_id FROM asset_versions WHERE asset_id = ANY($1::text[])",
                    list({i.asset_id for i in intervals}),
                )
            ]
            stored = await conn.fetch(
                _INSERT_TELEMETRY,
                [i.asset_id for i in intervals],
                [i.channel for i in intervals],
                [i.start for i in intervals],
                [i.interval_s for i in intervals],
                [i.value for i in intervals],
                [i.quality for i in intervals],
                list(billing) or [False] * len(intervals),
            )
            await _roll_up(conn, stored, program.clock)
            settled = [
                r
                for r in stored
                if r["channel"] == program.channel
                and r["value"] is not None
                and r["quality"] in MEASURED
            ]
            if settled:
                hit_final = await conn.fetch(
                    _TOUCH_WINDOWS,
                    [r["asset_id"] for r in settled],
                    [r["interval_start"] for r in settled],
                    [r["interval_start"] + timedelta(seconds=r["interval_s"]) for r in settled],
                    LOOK_BEFORE_S,
                )
                after_final = [r["instruction_id"] for r in hit_final]
        new_revisions: list[asyncpg.Record] = []
        if instructions:
            new_revisions = await conn.fetch(
                _INSERT_REVISIONS,
                [i.instruction_id for i in instructions],
                [i.revision for i in instructions],
                [i.resource_id for i in instructions],
                [i.mw for i in instructions],
                [i.window_start for i in instructions],
                [i.window_end for i in instructions],
                [i.issued_at for i in instructions],
                [i.kind.value for i in instructions],
                [i.cancelled for i in instructions],
            )
            # Lowest revision first: the window's row is made from it.
            firsts = sorted(new_revisions, key=lambda r: (r["instruction_id"], r["revision"]))
            await conn.execute(
                _INSERT_WINDOWS,
                [r["instruction_id"] for r in firsts],
                [r["resource_id"] for r in firsts],
                [r["window_start"] for r in firsts],
                [r["window_end"] for r in firsts],
            )
        new_confirmations: list[asyncpg.Record] = []
        if confirmations:
            new_confirmations = await conn.fetch(
                _INSERT_CONFIRMATIONS,
                [c.instruction_id for c in confirmations],
                [c.revision for c in confirmations],
                [c.resource_id for c in confirmations],
                [c.status.value for c in confirmations],
                [c.reason for c in confirmations],
                [c.mw_requested for c in confirmations],
                [c.mw_confirmed for c in confirmations],
                [c.confirmed_at for c in confirmations],
                [c.assets_commanded for c in confirmations],
                [c.commands_start for c in confirmations],
            )
        touched = [*dict.fromkeys(r["instruction_id"] for r in new_revisions + new_confirmations)]
        stored = await _revisions(conn, touched) if touched else {}
        became = await _apply_terms(conn, stored, program.channel) if stored else {}
        for instruction_id in recount:  # its enrolment changed: counted again
            await _count_coverage(conn, instruction_id, program.channel)
    known = {(i, r.revision): r for i, st in stored.items() for r in st.revisions}
    unanswered = [r for r in new_revisions if known[_key(r)].answer is None]
    unmatched = [r for r in new_confirmations if _key(r) not in known]
    return Saved(
        new_confirmations,
        after_final,
        sorted(unknown),
        unconfirmed=list(dict.fromkeys(r["instruction_id"] for r in unanswered)),
        unmatched=list(dict.fromkeys(r["instruction_id"] for r in unmatched)),
        cancelled=[i for i, state in became.items() if state == "cancelled"],
        revised=[i for i, state in became.items() if state == "filed"],
        withdrawn=[i for i, state in became.items() if state == "withdrawn"],
        revised_after_final=[i for i, state in became.items() if state == "final"],
    )


def _key(row: asyncpg.Record) -> tuple[str, int]:
    return row["instruction_id"], row["revision"]


async def _apply_terms(
    conn: asyncpg.Connection, stored: dict[str, Stored], channel: Channel
) -> dict[str, str]:
    """Bring each window's row up to its instruction's revisions after new ones (or new
    answers): the first revision's window and where settling ends. Returns what became of each
    window: 'waiting' (counted again over what is now settled), 'filed' (marked for a
    restatement), 'withdrawn' (filed, and now nothing is left of it, see `domain.withdrawal`:
    still 'filed', its settled end NULL, a version withdrawing it is due), 'cancelled' (called
    off at or before its start, see `domain.settled_end`: nothing to settle, out of the queue),
    or 'final' (left as it is, like a cancelled one)."""
    rows = await conn.fetch(
        "SELECT instruction_id, state FROM instructions WHERE instruction_id = ANY($1::text[])"
        " ORDER BY instruction_id FOR UPDATE",
        list(stored),
    )
    became: dict[str, str] = {}
    for row in rows:
        instruction_id, state = row["instruction_id"], row["state"]
        if state not in ("waiting", "filed"):
            became[instruction_id] = state
            continue
        s = stored[instruction_id]
        due = terms(instruction_id, s.resource_id, s.window_start, s.window_end, s.revisions)
        off = settled_end(s.window_start, s.window_end, s.revisions) <= s.window_start
        if due is None and state == "filed":
            # Answers and revisions only add up, so only a cancellation takes a filed window's
            # terms away: what was filed is withdrawn, never left standing.
            became[instruction_id] = "withdrawn"
        else:
            became[instruction_id] = "cancelled" if off else state
        # data_seq counts it as an arrival: a version computed before it stays marked.
        await conn.execute(
            """
            UPDATE instructions SET window_start = $2, window_end = $3, settled_end = $4,
                                    state = $5, dirty = dirty OR state = 'filed',
                                    data_seq = data_seq + 1
            WHERE instruction_id = $1
            """,
            instruction_id,
            s.window_start,
            s.window_end,
            due.window_end if due is not None else None,
            "filed" if became[instruction_id] == "withdrawn" else became[instruction_id],
        )
        if became[instruction_id] == "waiting":
            await _count_coverage(conn, instruction_id, channel)
    return became


# How far before a window new data can change its report: the Hour Before fallback reads the
# hour before, the additive adjustment the hours before that [s].
LOOK_BEFORE_S = 5 * 3600.0


async def _count_coverage(conn: asyncpg.Connection, instruction_id: str, channel: Channel) -> None:
    """Count a window's coverage over what is settled of it from the stored telemetry, once a
    revision asking for delivery is in force (new data adds to the count from then on)."""
    row = await conn.fetchrow(
        "SELECT resource_id, window_start, settled_end FROM instructions"
        " WHERE instruction_id = $1 AND settled_end IS NOT NULL",
        instruction_id,
    )
    if row is None:
        return
    count = await conn.fetchrow(
        _COUNT_COVERAGE,
        row["resource_id"],
        row["window_start"],
        row["settled_end"],
        channel.value,
        sorted(MEASURED),
        MAX_INTERVAL.total_seconds(),
    )
    await conn.execute(
        "UPDATE instructions SET covered_s = $2, assets_expected = $3,"
        " covered_changed_at = now() WHERE instruction_id = $1",
        instruction_id,
        float(count["covered_s"]),
        int(count["assets"]),
    )


class Work(NamedTuple):
    """A window to settle now, and why."""

    due: Due
    state: str  # waiting / filed
    past_deadline: bool
    stalled: bool  # waiting, its coverage unchanged for the stall time: filed as it is
    data_seq: int  # the count of data arrivals the settling starts from


@dataclass(frozen=True)
class Timing:
    """When windows move on [s]."""

    final_after_s: float  # after the window's end: filed final
    stall_s: float  # coverage not grown for this long: filed as it is
    restate_every_s: float  # at most one restated version per window this often


async def due(pool: asyncpg.Pool, threshold: float, now: datetime, timing: Timing) -> list[Work]:
    """Windows to (re)settle: a revision asking for delivery in force (`domain.terms`), not
    final or cancelled, and either waiting with their counted coverage of what is settled at
    the threshold (or stalled below it with some data), filed with data, a revision or an answer
    arrived since (once `restate_every_s` has passed since the last version: a backfill arriving
    in many batches is one restatement, not one per batch), or past their deadline with no data
    arriving for `stall_s`; and, at once, filed windows a cancellation left nothing of, on the
    terms of their withdrawal (`domain.withdrawal`). Reads only the open windows, never the
    assets; oldest window first."""
    rows = await pool.fetch(
        """
        SELECT i.instruction_id, i.state, i.data_seq,
               i.window_end + make_interval(secs => $3) <= $2 AS past_deadline,
               i.state = 'waiting' AND i.covered_s > 0
               AND i.covered_changed_at + make_interval(secs => $4) <= $2 AS stalled
        FROM instructions i
        WHERE i.state IN ('waiting', 'filed') AND (
            -- filed, and a cancellation left nothing of it: withdrawn at once
            (i.state = 'filed' AND i.settled_end IS NULL)
            OR (i.settled_end IS NOT NULL AND (
                (i.state = 'waiting' AND i.covered_s > 0 AND (
                    i.covered_s >= $1::float8 * i.assets_expected
                                   * extract(epoch FROM i.settled_end - i.window_start) - 1e-6
                    OR i.covered_changed_at + make_interval(secs => $4) <= $2))
                OR (i.state = 'filed' AND i.dirty
                    AND (SELECT max(r.filed_at) FROM reports r
                         WHERE r.instruction_id = i.instruction_id)
                        + make_interval(secs => $5) <= $2)
                -- past the deadline, once no data has arrived for the stall time: a window
                -- settled long after it happened (a replay) is not finalised while its data
                -- streams in
                OR (i.window_end + make_interval(secs => $3) <= $2
                    AND i.covered_changed_at + make_interval(secs => $4) <= $2))))
        ORDER BY i.window_end, i.instruction_id
        """,
        threshold,
        now,
        timing.final_after_s,
        timing.stall_s,
        timing.restate_every_s,
    )
    stored = await _revisions(pool, [r["instruction_id"] for r in rows]) if rows else {}
    work = []
    for r in rows:
        s = stored[r["instruction_id"]]
        args = (r["instruction_id"], s.resource_id, s.window_start, s.window_end, s.revisions)
        due = terms(*args)
        if due is None and r["state"] == "filed":
            due = withdrawal(*args)
        if due is not None:  # None: its terms changed since the row was read; seen next time
            work.append(Work(due, r["state"], r["past_deadline"], r["stalled"], r["data_seq"]))
    return work


async def fleet_as_of(pool: asyncpg.Pool, due: Due, channel: Channel) -> Fleet:
    """The resource's assets enrolled as of the window (see `_AS_OF`), by asset id."""
    rows = await pool.fetch(
        f"SELECT * FROM ({_AS_OF}) a WHERE a.resource_id = $1 AND a.status = $5"
        " ORDER BY a.asset_id",
        due.resource_id,
        due.window_start,
        due.window_end,
        channel.value,
        AssetStatus.ENROLLED.value,
    )
    return Fleet(
        asset_ids=[r["asset_id"] for r in rows],
        cohorts=[r["cohort"] for r in rows],
        subscribers=[r["subscriber_id"] or r["asset_id"] for r in rows],
        accredited_kw=np.fromiter((r["capacity_kw"] for r in rows), float, len(rows)),
    )


# One row per asset, its intervals packed by PostgreSQL: 100,000 assets' rows decode as fast
# as 100,000 small values, not millions of records.
READING = np.dtype(
    [("start_s", ">f8"), ("interval_s", ">i4"), ("value_kw", ">f8"), ("billing", "u1")]
)
HISTORY_DAY = np.dtype([("day", ">i4"), ("kwh", FLOATS, (HOURS,)), ("covered_s", FLOATS, (HOURS,))])


CHUNK_ASSETS = 20_000  # assets per query: bounds the packed bytes held at once


def _unpack(
    rows: Sequence[asyncpg.Record], index: dict[str, int], dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """(fleet position of each packed record, the records) from rows of (asset_id, packed)."""
    packed = [r[1] for r in rows]
    counts = np.fromiter((len(p) // dtype.itemsize for p in packed), np.intp, len(packed))
    owners = np.fromiter((index[r[0]] for r in rows), np.intp, len(rows))
    return np.repeat(owners, counts), np.frombuffer(b"".join(packed), dtype)


async def _packed(
    pool: asyncpg.Pool, query: str, fleet: Fleet, dtype: np.dtype, *args: object
) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
    """`query` ($1: asset ids, then `args`) over the fleet, chunk by chunk, unpacked."""
    index = {asset_id: i for i, asset_id in enumerate(fleet.asset_ids)}
    for first in range(0, fleet.size, CHUNK_ASSETS):
        chunk = list(fleet.asset_ids[first : first + CHUNK_ASSETS])
        yield _unpack(await pool.fetch(query, chunk, *args), index, dtype)


async def readings(
    pool: asyncpg.Pool, fleet: Fleet, channel: Channel, start: datetime, end: datetime
) -> Readings:
    """Measured intervals of `channel` of the fleet's assets that overlap [start, end)."""
    chunks = _packed(
        pool,
        """
        SELECT asset_id,
               string_agg(float8send(extract(epoch FROM interval_start)::float8)
                          || int4send(interval_s) || float8send(value)
                          || CASE WHEN billing THEN '\\x01'::bytea ELSE '\\x00'::bytea END,
                          ''::bytea)
        FROM telemetry
        WHERE asset_id = ANY($1::text[]) AND channel = $2
          AND value IS NOT NULL AND quality = ANY($6::text[])
          AND interval_start < $4
          AND interval_start > $5  -- a bound the primary key's index can use
          AND interval_start + make_interval(secs => interval_s) > $3
        GROUP BY asset_id
        """,
        fleet,
        READING,
        channel.value,
        start,
        end,
        start - MAX_INTERVAL,
        sorted(MEASURED),
    )
    parts = [part async for part in chunks]
    found = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, READING)
    return Readings(
        asset_index=np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.intp),
        start_s=found["start_s"].astype(float),
        interval_s=found["interval_s"].astype(float),
        value_kw=found["value_kw"].astype(float),
        billing=found["billing"].astype(bool),
    )


async def history(
    pool: asyncpg.Pool,
    fleet: Fleet,
    channel: Channel,
    first_day: date,
    last_day: date,
    event_days: frozenset[date],
) -> History:
    """Hourly means of the fleet's `channel` for the days [first_day, last_day] [kW]: NaN for
    an hour not fully measured."""
    hourly_kw = np.full((fleet.size, (last_day - first_day).days + 1, HOURS), np.nan)
    chunks = _packed(
        pool,
        """
        SELECT asset_id, string_agg(int4send(day - $3::date) || kwh || covered_s, ''::bytea)
        FROM hourly
        WHERE asset_id = ANY($1::text[]) AND channel = $2 AND day BETWEEN $3 AND $4
        GROUP BY asset_id
        """,
        fleet,
        HISTORY_DAY,
        channel.value,
        first_day,
        last_day,
    )
    async for owners, days in chunks:
        covered = days["covered_s"]
        full = covered >= 3600.0 - 1e-6  # the autumn DST hour holds two: mean = kWh / hours
        hourly_kw[owners, days["day"]] = np.where(
            full, days["kwh"] * 3600.0 / np.where(full, covered, 1.0), np.nan
        )
    return History(first_day=first_day, hourly_kw=hourly_kw, event_days=event_days)


async def event_days(
    pool: asyncpg.Pool, resource_id: str, instruction_id: str, clock: MarketClock
) -> frozenset[date]:
    """Local days of the resource's other dispatched windows: a revision asking for delivery in
    force and not called off before the start; events and capability tests alike."""
    rows = await pool.fetch(
        "SELECT window_start FROM instructions"
        " WHERE resource_id = $1 AND instruction_id <> $2 AND settled_end IS NOT NULL",
        resource_id,
        instruction_id,
    )
    return frozenset(clock.local_date(r["window_start"]) for r in rows)


def parse_report(text: str) -> SettlementFiled:
    """A kept report, whichever contract version it was filed under."""
    try:
        return SettlementFiled.model_validate_json(text)
    except ValueError:
        return SettlementFiledV1.model_validate_json(text).upgrade()


async def latest_report(pool: asyncpg.Pool, instruction_id: str) -> SettlementFiled | None:
    text = await pool.fetchval(
        "SELECT report::text FROM reports WHERE instruction_id = $1 ORDER BY version DESC LIMIT 1",
        instruction_id,
    )
    return parse_report(text) if text is not None else None


async def record_report(
    conn: asyncpg.Connection,
    report: SettlementFiled,
    payouts: Sequence[Payout],
    data_seq: int,
    withdraws: bool = False,
) -> bool:
    """Keep a report version and its payouts in the caller's transaction, and move the window
    on: 'filed', 'final', or 'cancelled' after a version that `withdraws` it (never settled
    again). False when the window moved on meanwhile (another replica, or an earlier try, filed
    this version or a final one: what was filed stands; or it was called off before its
    start), or when its terms did (a version asking for delivery, computed before a
    cancellation left nothing of the window: the withdrawal follows). The window stays marked
    for a restatement if data arrived after `data_seq`, the count this version was computed
    from."""
    window = await conn.fetchrow(
        "SELECT state, settled_end IS NULL AS nothing_left,"
        " (SELECT max(version) FROM reports r WHERE r.instruction_id = $1) AS latest"
        " FROM instructions WHERE instruction_id = $1 FOR UPDATE",
        report.instruction_id,
    )
    if (
        window is None
        or window["state"] not in ("waiting", "filed")
        or (window["latest"] or 0) != report.version - 1
        or window["nothing_left"] != withdraws
    ):
        return False
    await conn.execute(
        """
        INSERT INTO reports (instruction_id, version, report_id, resource_id, filed_at,
                             delivered_mw, data_quality, report)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        report.instruction_id,
        report.version,
        report.report_id,
        report.resource_id,
        report.filed_at,
        report.delivered_mw,
        report.data_quality.value,
        report.model_dump_json(),
    )
    await conn.copy_records_to_table(
        "payouts",
        records=[
            (report.instruction_id, report.version, p.cohort, p.subscriber_id, p.assets,
             p.delivered_wh, p.cents)
            for p in payouts
        ],
        columns=["instruction_id", "version", "cohort", "subscriber_id", "assets",
                 "delivered_wh", "cents"],
    )  # fmt: skip
    state = "cancelled" if withdraws else "final" if report.data_quality == "final" else "filed"
    await conn.execute(
        "UPDATE instructions SET state = $2, dirty = data_seq <> $3 WHERE instruction_id = $1",
        report.instruction_id,
        state,
        data_seq,
    )
    return True


async def recount(
    pool: asyncpg.Pool, instruction_id: str, covered_s: float, assets_expected: int
) -> None:
    """Set a waiting window's coverage to the settlement's own count (the per-batch count is
    a hint: it counts today's members, and late data of assets that left)."""
    await pool.execute(
        "UPDATE instructions SET covered_s = $2, assets_expected = $3,"
        " covered_changed_at = CASE WHEN covered_s = $2 THEN covered_changed_at ELSE now() END"
        " WHERE instruction_id = $1",
        instruction_id,
        covered_s,
        assets_expected,
    )


async def clear_dirty(pool: asyncpg.Pool, instruction_id: str, data_seq: int) -> None:
    """New data changed nothing to the Wh: no new version (unless more arrived meanwhile)."""
    await pool.execute(
        "UPDATE instructions SET dirty = false WHERE instruction_id = $1 AND data_seq = $2",
        instruction_id,
        data_seq,
    )
