"""settlement reads instruction revisions, cancellations, capability tests and answers to reused
instruction ids: the handler is given deliveries directly (event ids as dispatch makes them),
with a PostgreSQL database of its own and the real producer; reports are read from the record
they are published from.

One asset, A, in a resource of its own. A reports 0 kW over the hour before each window (its
Hour Before baseline is 0 kW: no history, so High X of Y falls back to it) and 8.0 kW in every
slot of the 60-minute window that lies two days back: it delivers 0.008 MW throughout, and one
asset's 12 readings cover the window wholly (version 1 is filed at once). Money at 100 $/MW
per 5-minute interval short, 50 $/MW per interval over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import BaseModel

from nexwatt_settlement import store
from nexwatt_settlement.baselines import ParticipationModel
from nexwatt_settlement.bootstrap import MIGRATIONS
from nexwatt_settlement.domain import BaselineMethod, Program
from nexwatt_settlement.handlers import CONFLICT_ANSWERS, Settler
from nexwatt_settlement.market_time import MarketClock
from nexwatt_settlement.money import PerformanceRates
from nexwatt_shared.codec import envelope
from nexwatt_shared.contracts import (
    AssetRegistered,
    DataQuality,
    DispatchConfirmed,
    DispatchInstruction,
    DispatchStatus,
    InstructionKind,
    SettlementFiled,
    TelemetryInterval,
    answer_event_id,
    conflict_event_id,
)
from nexwatt_shared.kafka.consumer import Delivery
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import (
    ASSET_REGISTERED,
    DISPATCH_CONFIRMED,
    DISPATCH_INSTRUCTION,
    TELEMETRY_INTERVAL,
    Topic,
)
from tests.helpers import handler_context, unique

pytestmark = pytest.mark.integration
WINDOW_START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
TOL_MW = 1e-9
RATES = PerformanceRates(100.0, 50.0, source="test")  # [$/MW per 5-minute interval]
PROGRAM = Program(
    model=ParticipationModel.DER_AGGREGATOR,
    method=BaselineMethod.HIGH_X_OF_Y,
    clock=MarketClock(),
    coverage_threshold=0.98,
    rates=RATES,
)
RESTATE_AT_ONCE = store.Timing(final_after_s=60 * 86400.0, stall_s=3600.0, restate_every_s=0.0)


def at(minutes: float) -> datetime:
    return WINDOW_START + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Scene:
    pool: asyncpg.Pool
    producer: EventProducer
    resource: str
    instruction: str
    asset: str

    def settler(self, timing: store.Timing = RESTATE_AT_ONCE) -> Settler:
        return Settler(self.pool, self.producer, PROGRAM, timing)

    def revision(
        self,
        revision: int,
        issued_min: float,
        mw: float,
        cancelled: bool = False,
        kind: InstructionKind = InstructionKind.EVENT,
        window_end_min: float = 60,
    ) -> DispatchInstruction:
        return DispatchInstruction(
            window_start=at(0),
            window_end=at(window_end_min),
            instruction_id=self.instruction,
            resource_id=self.resource,
            mw=mw,
            issued_at=at(issued_min),
            revision=revision,
            kind=kind,
            cancelled=cancelled,
        )

    def answer(
        self,
        i: DispatchInstruction,
        status: DispatchStatus,
        commanded: int | None = None,
        commands_min: float | None = None,
    ) -> DispatchConfirmed:
        """Dispatch's answer to revision `i`: all of it confirmed, unless rejected or cancelled;
        `commanded` assets (by default 1, none when rejected), commands from `commands_min`
        (None: the answer does not say, as before dispatch told)."""
        delivering = status in (DispatchStatus.CONFIRMED, DispatchStatus.PARTIAL)
        if commanded is None:
            commanded = 0 if status == DispatchStatus.REJECTED else 1
        return DispatchConfirmed(
            window_start=i.window_start,
            window_end=i.window_end,
            instruction_id=i.instruction_id,
            resource_id=i.resource_id,
            status=status,
            reason=None if delivering else f"{status.value} in the test",
            mw_requested=max(i.mw, 0.0),
            mw_confirmed=i.mw if delivering else 0.0,
            assets_commanded=commanded,
            assets_dispatched=1 if delivering else 0,
            instruction_received_at=i.issued_at,
            commands_start=at(commands_min) if commands_min is not None else None,
            confirmed_at=i.issued_at + timedelta(seconds=1),
            processing_ms=1000.0,
            revision=i.revision,
            kind=i.kind,
        )

    def enrolment_and_data(self, window_kw: Sequence[float] = (8.0,) * 12) -> list[Delivery]:
        record = AssetRegistered(
            asset_id=self.asset,
            status="enrolled",
            asset_type="solar_storage",
            inverter="SolarEdge SE7600",
            vendor="solaredge",
            capacity_kw=7.6,
            storage_kwh=13.5,
            meter_id=f"M-{self.asset}",
            iso="PJM",
            iso_zone="PJM-PEPCO",
            resource_id=self.resource,
            cohort="east",
            telemetry_interval_s=300,
            version=1,
            updated_at=at(-30 * 24 * 60),
        )
        readings = [
            TelemetryInterval(
                asset_id=self.asset,
                interval_start=at(5 * k),
                interval_s=300,
                battery_kw=kw,
                net_kw=kw - 1.0,
            )
            for k, kw in enumerate([0.0] * 12 + list(window_kw), start=-12)
        ]
        return [*deliveries(ASSET_REGISTERED, [record]), *deliveries(TELEMETRY_INTERVAL, readings)]

    async def reports(self) -> list[SettlementFiled]:
        rows = await self.pool.fetch(
            "SELECT report::text FROM reports WHERE instruction_id = $1 ORDER BY version",
            self.instruction,
        )
        return [store.parse_report(r[0]) for r in rows]

    async def window(self) -> asyncpg.Record:
        return await self.pool.fetchrow(
            "SELECT state, window_end, settled_end, dirty FROM instructions"
            " WHERE instruction_id = $1",
            self.instruction,
        )

    async def payouts(self) -> list[tuple[int, int]]:
        """(version, cents) of each payout of the window, by version."""
        rows = await self.pool.fetch(
            "SELECT version, cents FROM payouts WHERE instruction_id = $1 ORDER BY version",
            self.instruction,
        )
        return [(r["version"], r["cents"]) for r in rows]


def deliveries(topic: Topic, payloads: Sequence[BaseModel]) -> list[Delivery]:
    return [
        Delivery(topic, 0, k, None, envelope(topic, p, source="test"), b"")
        for k, p in enumerate(payloads)
    ]


def answers(items: Sequence[DispatchConfirmed], event_id: str | None = None) -> list[Delivery]:
    """Answers as dispatch publishes them: under `answer_event_id`, unless told otherwise."""
    return [
        Delivery(
            DISPATCH_CONFIRMED,
            0,
            k,
            None,
            envelope(
                DISPATCH_CONFIRMED,
                a,
                source="dispatch",
                event_id=event_id or answer_event_id(a.instruction_id, a.revision),
            ),
            b"",
        )
        for k, a in enumerate(items)
    ]


@pytest.fixture
async def scene(servers: dict[str, str]) -> AsyncIterator[Scene]:
    async with handler_context(servers, "settlement", MIGRATIONS, [DISPATCH_INSTRUCTION]) as ctx:
        yield Scene(
            ctx["pool"], ctx["producer"], ctx["resource"], unique("I-rev"), ctx["assets"]["A"]
        )


async def test_a_revision_in_force_changes_the_requested_mw_and_the_money(scene: Scene) -> None:
    # Revision 1 asks 0.010 MW (issued 2 min before the window), revision 2 0.006 MW from
    # +15 min, revision 3 (0.001 MW from +30) is answered rejected with nothing commanded: not
    # in force.
    # Requested per slot: 0.010 in slots 1-3, 0.006 in slots 4-12; mean (0.010 * 15 + 0.006 *
    # 45) / 60 = 0.007 MW. Delivered 0.008 MW: 114.286 %.
    # Slots 1-3 short 0.002 MW: 0.002 * 100 $ * 3 = $0.60 = 60 cents charged;
    # slots 4-12 over 0.002 MW: 0.002 * 50 $ * 9 = $0.90 = 90 cents bonus; net +30 cents.
    # (Revision 1 alone would charge 0.002 * 100 * 12 = $2.40.)
    revisions = [scene.revision(1, -2, 0.010), scene.revision(2, 15, 0.006)]
    rejected = scene.revision(3, 30, 0.001)
    batch = [
        *scene.enrolment_and_data(),
        *deliveries(DISPATCH_INSTRUCTION, [*revisions, rejected]),
        *answers([scene.answer(i, DispatchStatus.CONFIRMED) for i in revisions]),
        *answers([scene.answer(rejected, DispatchStatus.REJECTED)]),
    ]
    settler = scene.settler()
    await settler.handle(batch)
    [report] = await scene.reports()
    assert report.data_quality == DataQuality.PRELIMINARY
    assert (report.window_start, report.window_end) == (at(0), at(60))
    assert report.mw_requested == pytest.approx(0.007, abs=TOL_MW)
    assert (report.mw_confirmed, report.revision, report.kind) == (0.006, 2, "event")
    assert report.delivered_mw == pytest.approx(0.008, abs=TOL_MW)
    assert report.performance_pct == 114.286
    money = report.performance
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (60, 90, 30)
    assert [c.performance_cents for c in report.cohorts] == [30]
    requested = [line.split(",")[-1] for line in report.intervals_csv.splitlines()[1:]]
    assert requested == ["0.0100"] * 3 + ["0.0060"] * 9

    # Delivered again (a replay): nothing new is stored or filed.
    await settler.handle(batch)
    counts = [
        await scene.pool.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("instruction_revisions", "confirmations", "reports")
    ]
    assert counts == [3, 3, 1]


async def test_a_cancellation_mid_window_ends_the_settled_window(scene: Scene) -> None:
    # 0.008 MW asked; revision 2 calls the event off at +20 min, answered cancelled. A
    # delivers 8 kW until then and 0 kW after. Settled: [0, 20) only, four slots at 0.008 MW:
    # 100 %, 0.008 * 20 / 60 = 0.002667 MWh, no charge. (Over the whole hour it would have
    # been 0.002667 MW, a third of the request.)
    first, cancel = scene.revision(1, -2, 0.008), scene.revision(2, 20, 0.0, cancelled=True)
    await scene.settler().handle(
        [
            *scene.enrolment_and_data([8.0] * 4 + [0.0] * 8),
            *deliveries(DISPATCH_INSTRUCTION, [first, cancel]),
            *answers(
                [
                    scene.answer(first, DispatchStatus.CONFIRMED),
                    scene.answer(cancel, DispatchStatus.CANCELLED),
                ]
            ),
        ]
    )
    [report] = await scene.reports()
    assert (report.window_start, report.window_end) == (at(0), at(20))
    assert len(report.intervals_csv.splitlines()) == 1 + 4
    assert (report.mw_requested, report.mw_confirmed, report.revision) == (0.008, 0.008, 2)
    assert report.delivered_mw == pytest.approx(0.008, abs=TOL_MW)
    assert report.delivered_mwh == pytest.approx(0.002667, abs=TOL_MW)
    assert report.performance_pct == 100.0
    assert report.coverage_pct == 100.0
    assert report.performance.net_cents == 0
    assert (await scene.window())["settled_end"] == at(20)


async def test_a_cancellation_before_the_start_files_nothing(scene: Scene) -> None:
    # Called off 5 minutes before the window: nothing to settle, though A's data is in.
    first, cancel = scene.revision(1, -10, 0.008), scene.revision(2, -5, 0.0, cancelled=True)
    settler = scene.settler()
    await settler.handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first, cancel]),
            *answers(
                [
                    scene.answer(first, DispatchStatus.CONFIRMED),
                    scene.answer(cancel, DispatchStatus.CANCELLED),
                ]
            ),
        ]
    )
    await settler.settle_due()
    assert await scene.reports() == []
    window = await scene.window()
    assert (window["state"], window["settled_end"]) == ("cancelled", None)
    # Not an event day for the resource's later windows either.
    days = await store.event_days(scene.pool, scene.resource, "another", PROGRAM.clock)
    assert days == frozenset()


async def test_a_capability_test_is_filed_as_a_test_with_zero_money(scene: Scene) -> None:
    # 0.010 MW asked, 0.008 delivered: 80 %, which as an event would be charged
    # 0.002 * 100 $ * 12 = $2.40. A test is scored, not paid: every amount 0.
    test = scene.revision(1, -2, 0.010, kind=InstructionKind.TEST)
    await scene.settler().handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [test]),
            *answers([scene.answer(test, DispatchStatus.CONFIRMED)]),
        ]
    )
    [report] = await scene.reports()
    assert report.kind == InstructionKind.TEST
    assert report.performance_pct == 80.0
    money = report.performance
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (0, 0, 0)
    assert [c.performance_cents for c in report.cohorts] == [0]
    payouts = await scene.pool.fetch("SELECT cents FROM payouts")
    assert [r["cents"] for r in payouts] == [0]
    # The test's day is kept out of the resource's later baselines, like an event's.
    days = await store.event_days(scene.pool, scene.resource, "another", PROGRAM.clock)
    assert days == {PROGRAM.clock.local_date(at(0))}


async def test_an_answer_to_a_reused_id_arriving_first_does_not_block_the_real_answer(
    scene: Scene,
) -> None:
    # Dispatch refused a reuse of the instruction's id at once (rejected, under a conflict
    # event id, with the same instruction id and revision) and answered the instruction itself
    # after the acks. The refusal is ignored and counted; the real answer is the one stored.
    first = scene.revision(1, -2, 0.008)
    refusal = scene.answer(first, DispatchStatus.REJECTED)
    conflict = conflict_event_id(first.instruction_id, 1, "0123456789abcdef")
    ignored = CONFLICT_ANSWERS._value.get()
    settler = scene.settler()
    await settler.handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first]),
            *answers([refusal], event_id=conflict),
        ]
    )
    assert CONFLICT_ANSWERS._value.get() == ignored + 1
    assert await scene.pool.fetchval("SELECT count(*) FROM confirmations") == 0
    assert await scene.reports() == []

    await settler.handle(answers([scene.answer(first, DispatchStatus.CONFIRMED)]))
    [report] = await scene.reports()
    assert report.delivered_mw == pytest.approx(0.008, abs=TOL_MW)
    assert report.performance.net_cents == 0
    stored = await scene.pool.fetch("SELECT revision, status FROM confirmations")
    assert [tuple(r) for r in stored] == [(1, "confirmed")]


async def test_a_revision_after_a_filing_restates_it_and_after_the_final_is_only_kept(
    scene: Scene,
) -> None:
    # v1 on revision 1 alone: 0.010 MW asked, 0.008 delivered: 240 cents charged (see above).
    # Revision 2 (0.006 MW from +15 min) and its answer arrive after the filing: v2 restated
    # with the same data to the Wh and the money of the first test: +30 cents.
    # Then the window is filed final (its deadline has passed); revision 3 arriving after
    # that is kept, and nothing more is filed.
    first, second = scene.revision(1, -2, 0.010), scene.revision(2, 15, 0.006)
    settler = scene.settler()
    await settler.handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first]),
            *answers([scene.answer(first, DispatchStatus.CONFIRMED)]),
        ]
    )
    [v1] = await scene.reports()
    assert (v1.revision, v1.mw_requested, v1.performance.net_cents) == (1, 0.010, -240)

    await settler.handle(
        [
            *deliveries(DISPATCH_INSTRUCTION, [second]),
            *answers([scene.answer(second, DispatchStatus.CONFIRMED)]),
        ]
    )
    [_, v2] = await scene.reports()
    assert (v2.version, v2.supersedes, v2.data_quality) == (2, v1.report_id, DataQuality.RESTATED)
    assert (v2.revision, v2.mw_confirmed) == (2, 0.006)
    assert v2.mw_requested == pytest.approx(0.007, abs=TOL_MW)
    assert v2.performance.net_cents == 30
    assert v2.diff is not None and v2.diff.delivered_wh == 0

    deadline_passed = store.Timing(final_after_s=86400.0, stall_s=0.0, restate_every_s=0.0)
    await scene.settler(deadline_passed).settle_due()
    [*_, v3] = await scene.reports()
    assert (v3.version, v3.data_quality) == (3, DataQuality.FINAL)
    third = scene.revision(3, 30, 0.004)
    await settler.handle(
        [
            *deliveries(DISPATCH_INSTRUCTION, [third]),
            *answers([scene.answer(third, DispatchStatus.CONFIRMED)]),
        ]
    )
    assert len(await scene.reports()) == 3
    assert (await scene.window())["state"] == "final"
    assert await scene.pool.fetchval("SELECT max(revision) FROM instruction_revisions") == 3


async def test_a_revision_rejected_after_its_commands_went_out_is_in_force(scene: Scene) -> None:
    # Revision 2 (0.006 MW from +15 min) is answered rejected, no asset having acknowledged,
    # after its command went out to A (assets_commanded 1): the gateway may apply it, so it is
    # in force. The money of the first test: 60 cents charged, 90 bonus, net +30; nothing of
    # it confirmed. (Not in force, revision 1 alone: 0.002 * 100 $ * 12 = 240 cents charged.)
    first, second = scene.revision(1, -2, 0.010), scene.revision(2, 15, 0.006)
    await scene.settler().handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first, second]),
            *answers(
                [
                    scene.answer(first, DispatchStatus.CONFIRMED),
                    scene.answer(second, DispatchStatus.REJECTED, commanded=1),
                ]
            ),
        ]
    )
    [report] = await scene.reports()
    assert report.mw_requested == pytest.approx(0.007, abs=TOL_MW)
    assert (report.revision, report.mw_confirmed) == (2, 0.0)
    money = report.performance
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (60, 90, 30)
    stored = await scene.pool.fetch(
        "SELECT revision, status, assets_commanded FROM confirmations ORDER BY revision"
    )
    assert [tuple(r) for r in stored] == [(1, "confirmed", 1), (2, "rejected", 1)]


async def test_a_request_starts_with_its_commands_and_slots_before_it_are_not_priced(
    scene: Scene,
) -> None:
    # Issued at +10 min, 0.010 MW; dispatch's commands start at +15 (its lead time). A
    # delivers 0.008 MW throughout. Slots 1-3 ask nothing and are left out of the money (as
    # 0 MW owed, they would earn 0.008 * 50 $ * 3 = $1.20 of bonus); slots 4-12 are short
    # 0.002 MW: 0.002 * 100 $ * 9 = $1.80 = 180 cents. mw_requested 0.010 * 45 / 60 =
    # 0.0075 MW: 106.667 %. (From the issue time, slot 3 would ask 0.010 too.)
    first = scene.revision(1, 10, 0.010)
    await scene.settler().handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first]),
            *answers([scene.answer(first, DispatchStatus.CONFIRMED, commands_min=15)]),
        ]
    )
    [report] = await scene.reports()
    assert report.mw_requested == pytest.approx(0.0075, abs=TOL_MW)
    assert report.performance_pct == 106.667
    money = report.performance
    assert (money.intervals, money.expected_mw) == (9, 0.01)
    assert (money.charge_cents, money.bonus_cents, money.net_cents) == (180, 0, -180)
    requested = [line.split(",")[-1] for line in report.intervals_csv.splitlines()[1:]]
    assert requested == ["0.0000"] * 3 + ["0.0100"] * 9
    assert await scene.pool.fetchval("SELECT commands_start FROM confirmations") == at(15)


async def test_a_cancellation_before_the_start_in_force_after_a_filing_withdraws_it(
    scene: Scene,
) -> None:
    # v1 is filed on revision 1 (0.010 MW asked, 0.008 delivered: 240 cents charged). Then
    # the answer to revision 2, a cancellation issued 5 minutes before the window, arrives
    # before revision 2 itself (nothing changes yet), then revision 2: the event was called
    # off before it began. v2 withdraws v1: final, 0 MW asked, no interval assessed, every
    # amount 0, the data as measured (0.008 MW), filed at once (not held back like a
    # restatement); the window is cancelled and never settled again, whatever is delivered
    # again or arrives later.
    first, cancel = scene.revision(1, -10, 0.010), scene.revision(2, -5, 0.0, cancelled=True)
    hourly = store.Timing(final_after_s=60 * 86400.0, stall_s=3600.0, restate_every_s=3600.0)
    settler = scene.settler(hourly)
    batches = [
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first]),
            *answers([scene.answer(first, DispatchStatus.CONFIRMED)]),
        ],
        answers([scene.answer(cancel, DispatchStatus.CANCELLED)]),
        deliveries(DISPATCH_INSTRUCTION, [cancel]),
    ]
    await settler.handle(batches[0])
    await settler.handle(batches[1])
    [v1] = await scene.reports()
    assert (v1.revision, v1.performance.net_cents) == (1, -240)
    await settler.handle(batches[2])
    [_, v2] = await scene.reports()
    assert (v2.version, v2.supersedes, v2.data_quality) == (2, v1.report_id, DataQuality.FINAL)
    assert (v2.window_start, v2.window_end) == (at(0), at(60))
    assert (v2.mw_requested, v2.mw_confirmed, v2.revision) == (0.0, 0.0, 2)
    assert (v2.delivered_mw, v2.performance_pct) == (0.008, 0.0)
    money = v2.performance
    assert (money.intervals, money.charge_cents, money.bonus_cents, money.net_cents) == (
        0,
        0,
        0,
        0,
    )
    assert [c.performance_cents for c in v2.cohorts] == [0]
    assert await scene.payouts() == [(1, -240), (2, 0)]
    assert v2.diff is not None and v2.diff.delivered_wh == 0
    window = await scene.window()
    assert (window["state"], window["settled_end"]) == ("cancelled", None)
    assert await store.event_days(scene.pool, scene.resource, "x", PROGRAM.clock) == frozenset()

    # Redelivered, more data, the deadline passed: nothing more is filed.
    for batch in batches:
        await settler.handle(batch)
    earlier = TelemetryInterval(
        asset_id=scene.asset, interval_start=at(-120), interval_s=300, battery_kw=1.0, net_kw=0.0
    )  # within the hours before the window its baseline may read
    await settler.handle(deliveries(TELEMETRY_INTERVAL, [earlier]))
    deadline_passed = store.Timing(final_after_s=86400.0, stall_s=0.0, restate_every_s=0.0)
    await scene.settler(deadline_passed).settle_due()
    assert [r.version for r in await scene.reports()] == [1, 2]
    published = await scene.pool.fetch(
        "SELECT event_id FROM outbox WHERE published_at IS NOT NULL ORDER BY id"
    )
    assert [r["event_id"] for r in published] == [
        f"settlement:{scene.instruction}:v1",
        f"settlement:{scene.instruction}:v2",
    ]


async def test_a_revision_changing_the_window_rejected_with_nothing_commanded_is_ignored(
    scene: Scene,
) -> None:
    # Revision 2 moves the window's end to +90 min and asks 0.006 MW; dispatch rejects it
    # with nothing commanded. It arrives first, answered, before revision 1: the window is
    # revision 1's (ending at +60), settled on 0.010 MW alone: 240 cents charged.
    first = scene.revision(1, -2, 0.010)
    moved = scene.revision(2, 15, 0.006, window_end_min=90)
    settler = scene.settler()
    await settler.handle(
        [
            *deliveries(DISPATCH_INSTRUCTION, [moved]),
            *answers([scene.answer(moved, DispatchStatus.REJECTED)]),
        ]
    )
    await settler.handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first]),
            *answers([scene.answer(first, DispatchStatus.CONFIRMED)]),
        ]
    )
    [report] = await scene.reports()
    assert (report.window_start, report.window_end) == (at(0), at(60))
    assert (report.mw_requested, report.mw_confirmed, report.revision) == (0.010, 0.010, 1)
    assert report.performance.net_cents == -240
    window = await scene.window()
    assert (window["window_end"], window["settled_end"]) == (at(60), at(60))


async def test_a_revision_after_a_cancellation_rejected_with_nothing_commanded_is_ignored(
    scene: Scene,
) -> None:
    # The mid-window cancellation of the test above (revision 2 at +20 min); revision 3
    # (0.004 MW from +30), after it, is rejected with nothing commanded, after the filing:
    # the window still ends at +20 on revision 1's 0.008 MW (100 %, no money), and the
    # restatement it triggers changes nothing, so nothing more is filed.
    first, cancel = scene.revision(1, -2, 0.008), scene.revision(2, 20, 0.0, cancelled=True)
    after = scene.revision(3, 30, 0.004)
    settler = scene.settler()
    await settler.handle(
        [
            *scene.enrolment_and_data([8.0] * 4 + [0.0] * 8),
            *deliveries(DISPATCH_INSTRUCTION, [first, cancel]),
            *answers(
                [
                    scene.answer(first, DispatchStatus.CONFIRMED),
                    scene.answer(cancel, DispatchStatus.CANCELLED),
                ]
            ),
        ]
    )
    await settler.handle(
        [
            *deliveries(DISPATCH_INSTRUCTION, [after]),
            *answers([scene.answer(after, DispatchStatus.REJECTED)]),
        ]
    )
    [report] = await scene.reports()
    assert (report.window_end, report.revision, report.mw_requested) == (at(20), 2, 0.008)
    assert (report.performance_pct, report.performance.net_cents) == (100.0, 0)
    window = await scene.window()
    assert (window["state"], window["settled_end"], window["dirty"]) == ("filed", at(20), False)


async def test_a_version_asking_for_delivery_is_refused_once_nothing_is_left_to_settle(
    scene: Scene,
) -> None:
    # Two settlers racing: one computed a restatement of v1 (asking 0.010 MW) while the
    # cancellation before the start came into force. Recording it is refused: only a version
    # withdrawing the window is taken, and after it nothing (the window is cancelled).
    first, cancel = scene.revision(1, -10, 0.010), scene.revision(2, -5, 0.0, cancelled=True)
    await scene.settler().handle(
        [
            *scene.enrolment_and_data(),
            *deliveries(DISPATCH_INSTRUCTION, [first]),
            *answers([scene.answer(first, DispatchStatus.CONFIRMED)]),
        ]
    )
    [v1] = await scene.reports()
    saved = await store.save_inputs(
        scene.pool, PROGRAM, [], [], [cancel], [scene.answer(cancel, DispatchStatus.CANCELLED)]
    )
    assert saved.withdrawn == [scene.instruction]
    window = await scene.window()
    assert (window["state"], window["settled_end"]) == ("filed", None)

    def next_version(version: int) -> SettlementFiled:
        return v1.model_copy(
            update={
                "version": version,
                "report_id": f"SR-{scene.instruction}-v{version}",
                "data_quality": DataQuality.RESTATED,
            }
        )

    async def record(report: SettlementFiled, withdraws: bool) -> bool:
        async with scene.pool.acquire() as conn, conn.transaction():
            return await store.record_report(conn, report, [], 10**6, withdraws)

    assert not await record(next_version(2), withdraws=False)
    assert await record(next_version(2), withdraws=True)
    assert (await scene.window())["state"] == "cancelled"
    assert not await record(next_version(3), withdraws=True)
    assert [r.version for r in await scene.reports()] == [1, 2]
