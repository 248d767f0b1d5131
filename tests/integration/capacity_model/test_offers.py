"""Auction offers on the real Kafka and PostgreSQL: the capacity model's snapshot handler builds
the resource's snapshot from asset records, the offers API sizes, approves and submits an
offer, every change goes out on `capacity.offer` from the outbox, the ISO simulator's clearing
logic answers the submitted offer, and the clearing consumer records the result.

Each test has its own database, resource and offer ids, and reads the shared topics from where
they ended when it began.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from nexwatt_capacity_model import offer_store
from nexwatt_capacity_model.bootstrap import MIGRATIONS, api, sizing_policy
from nexwatt_capacity_model.config import Settings
from nexwatt_capacity_model.handlers import make_handler
from nexwatt_capacity_model.offer_handlers import make_clearing_handler
from nexwatt_capacity_model.offers_api import offers_router
from nexwatt_capacity_model.store import current_snapshot, record_published
from nexwatt_iso_sim.auction import clear, clearing_event_id
from nexwatt_shared.codec import decode
from nexwatt_shared.contracts import (
    AssetRegistered,
    CapacityOffer,
    CapacitySnapshot,
    DeadLetter,
    OfferClearing,
    OfferState,
)
from nexwatt_shared.topics import (
    ASSET_REGISTERED,
    CAPACITY_CLEARING,
    CAPACITY_OFFER,
    DEAD_LETTER,
    TELEMETRY_INTERVAL,
)
from tests.helpers import eventually, handled, handler_context, handler_running, read_all, unique

pytestmark = pytest.mark.integration
TOPICS = [ASSET_REGISTERED, TELEMETRY_INTERVAL, CAPACITY_CLEARING]
# The next delivery year with an offer cap: 2026/27 began on 2026-06-01.
YEAR = "2027/28"
CAP = 333.44  # [$/MW-day]
ISO_PRICES = {"2026/27": 329.17, "2027/28": 333.44}


@pytest.fixture
async def ctx(servers: dict[str, str]) -> AsyncIterator[dict]:
    async with handler_context(servers, "offers", MIGRATIONS, TOPICS) as ctx:
        yield ctx


def asset(ctx: dict, name: str) -> AssetRegistered:
    """A 400 kW / 1,600 kWh battery (4 hours), enrolled a minute ago."""
    return AssetRegistered(
        asset_id=ctx["assets"][name],
        status="enrolled",
        asset_type="storage",
        inverter="Tesla Megapack",
        vendor="sunspec",
        capacity_kw=400.0,
        storage_kwh=1600.0,
        backup_reserve_pct=0.0,
        round_trip_efficiency=1.0,
        meter_id=f"M-{ctx['assets'][name]}",
        iso="PJM",
        iso_zone="PJM-PEPCO",
        resource_id=ctx["resource"],
        cohort="east",
        telemetry_interval_s=60,
        version=1,
        updated_at=datetime.now(UTC) - timedelta(minutes=1),
    )


def client(ctx: dict, settings: Settings) -> httpx.AsyncClient:
    app = api(ctx["pool"])
    policy = sizing_policy(settings)
    app.include_router(
        offers_router(ctx["pool"], ctx["producer"], policy, settings.offer_sampling_seed)
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://capacity")


async def resource_with_a_snapshot(ctx: dict) -> CapacitySnapshot:
    """Two assets of cohort east through the real snapshot handler; their snapshot."""
    await ctx["producer"].publish_many(ASSET_REGISTERED, [asset(ctx, "A"), asset(ctx, "B")])
    mine = set(ctx["assets"].values())
    handler = make_handler(ctx["pool"], ctx["producer"], freshness_s=900.0)
    seen: list[str] = []
    keep = lambda d: getattr(d.payload, "asset_id", None) in mine  # noqa: E731
    async with handler_running(ctx, [ASSET_REGISTERED], handler, keep, seen):
        await handled(seen, 2)
    snap = await current_snapshot(ctx["pool"], ctx["resource"])
    assert snap is not None and snap.assets_enrolled == 2
    return snap


async def offer_events(ctx: dict, offer_id: str) -> list[CapacityOffer]:
    records = await read_all(ctx["bootstrap"], CAPACITY_OFFER.name)
    return [decode(CAPACITY_OFFER, r.value).data for r in records if r.key == offer_id.encode()]


async def test_an_offer_goes_from_sized_to_cleared_and_each_state_is_published(ctx: dict) -> None:
    # Every asset enrolled today: no churn history, and a default churn of 0 keeps them all;
    # availability 1. Deliverable UCAP is then the resource's UCAP U in every sample, and the
    # recommendation offers all of it: C* = U, no shortfall, no penalty; revenue =
    # U x 333.44 $/MW-day x 366 days (2027/28 holds 2028-02-29). The quantile is the critical
    # ratio a / b of the default terms: a = 333.44 x 366 = 122,039.04 $/MW;
    # b = 333.44 x 1.2 x 366 + 25.347222 x 360 = 146,446.848 + 9,125 = 155,571.848 $/MW;
    # a / b = 0.784455.
    settings = Settings(offer_default_monthly_churn_pct=0.0, offer_samples=1000)
    snap = await resource_with_a_snapshot(ctx)
    ucap = snap.ucap_mw[YEAR]
    assert ucap >= 0.1  # two 4-hour 400 kW batteries: above PJM's 100 kW minimum
    async with client(ctx, settings) as http:
        created = await http.post(
            f"/v1/resources/{ctx['resource']}/offers", json={"delivery_year": YEAR}
        )
        assert created.status_code == 201, created.text
        offer = CapacityOffer.model_validate(created.json())
        assert (offer.state, offer.version, offer.price_usd_per_mw_day) == ("sized", 1, CAP)
        assert offer.offered_ucap_mw == pytest.approx(ucap, abs=1e-6)
        assert offer.sizing.quantile == pytest.approx(0.784455, abs=1e-6)
        assert offer.sizing.expected_penalty_usd == pytest.approx(0.0, abs=1e-3)
        # the optimizer stops within about 1e-6 MW: 122,039.04 $/MW x 1e-6 MW = 0.12 $
        assert offer.sizing.expected_revenue_usd == pytest.approx(ucap * CAP * 366, abs=0.13)
        oid = offer.offer_id

        approved = await http.post(f"/v1/offers/{oid}/approve", json={"approved_by": "alice"})
        assert approved.status_code == 200, approved.text
        assert (approved.json()["state"], approved.json()["approved_by"]) == ("approved", "alice")
        submitted = await http.post(f"/v1/offers/{oid}/submit")
        assert submitted.status_code == 200 and submitted.json()["version"] == 3

    # The ISO simulator reads the submitted offer from the topic and answers it.
    events = await eventually(lambda: offer_events(ctx, oid), lambda found: len(found) == 3)
    assert [(e.state, e.version) for e in events] == [
        ("sized", 1),
        ("approved", 2),
        ("submitted", 3),
    ]
    answer = clear(events[-1], ISO_PRICES, 1.0, datetime.now(UTC))
    assert answer is not None and answer.cleared
    assert (answer.cleared_mw, answer.clearing_price_usd_per_mw_day) == (
        events[-1].offered_ucap_mw,
        CAP,
    )
    await ctx["producer"].publish(CAPACITY_CLEARING, answer, event_id=clearing_event_id(answer))

    seen: list[str] = []
    keep = lambda d: d.payload.offer_id == oid  # noqa: E731
    handler = make_clearing_handler(ctx["pool"], ctx["producer"])
    async with handler_running(ctx, [CAPACITY_CLEARING], handler, keep, seen):
        await handled(seen, 1)
        # the same answer again (an ISO adapter restarted): a replay, no new version
        await ctx["producer"].publish(CAPACITY_CLEARING, answer)
        await handled(seen, 2)

    async with client(ctx, settings) as http:
        got = (await http.get(f"/v1/offers/{oid}")).json()
        listed = (await http.get(f"/v1/resources/{ctx['resource']}/offers")).json()
    assert (got["state"], got["version"], got["cleared_mw"]) == ("cleared", 4, answer.cleared_mw)
    assert got["clearing_price_usd_per_mw_day"] == CAP
    assert [o["offer_id"] for o in listed] == [oid]
    events = await eventually(lambda: offer_events(ctx, oid), lambda found: len(found) >= 4)
    assert [(e.state, e.version) for e in events] == [
        ("sized", 1),
        ("approved", 2),
        ("submitted", 3),
        ("cleared", 4),
    ]
    assert await ctx["pool"].fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_disallowed_changes_are_409_with_the_reason_and_bad_input_422(ctx: dict) -> None:
    settings = Settings(offer_default_monthly_churn_pct=0.0, offer_samples=1000)
    await resource_with_a_snapshot(ctx)
    path = f"/v1/resources/{ctx['resource']}/offers"
    async with client(ctx, settings) as http:
        # Bad input names its field.
        above_cap = await http.post(path, json={"delivery_year": YEAR, "price_usd_per_mw_day": 400})
        assert above_cap.status_code == 422
        assert [v["field"] for v in above_cap.json()["violations"]] == ["price_usd_per_mw_day"]
        too_much = await http.post(path, json={"delivery_year": YEAR, "offered_ucap_mw": 1000.0})
        assert [v["field"] for v in too_much.json()["violations"]] == ["offered_ucap_mw"]
        no_year = await http.post(path, json={"delivery_year": "2030/31"})
        assert [v["field"] for v in no_year.json()["violations"]] == ["delivery_year"]
        malformed = await http.post(path, json={"delivery_year": "2026-27"})
        assert malformed.status_code == 422
        assert malformed.json()["detail"][0]["loc"] == ["body", "delivery_year"]
        unknown = await http.post("/v1/resources/NXW-PJM-NONE/offers", json={"delivery_year": YEAR})
        assert unknown.status_code == 404
        assert (await http.get("/v1/offers/OFR-none")).status_code == 404
        assert (await http.post("/v1/offers/OFR-none/submit")).status_code == 404

        first = (await http.post(path, json={"delivery_year": YEAR})).json()["offer_id"]
        second = (await http.post(path, json={"delivery_year": YEAR})).json()["offer_id"]
        early = await http.post(f"/v1/offers/{first}/submit")
        assert early.status_code == 409
        assert "approves it before it is submitted" in early.json()["detail"]

        # Two operators approve at once: one wins, the other is told why.
        answers = await asyncio.gather(
            *(
                http.post(f"/v1/offers/{first}/approve", json={"approved_by": who})
                for who in ("alice", "bob")
            )
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        winner = next(a for a in answers if a.status_code == 200).json()["approved_by"]
        refused = next(a for a in answers if a.status_code == 409).json()["detail"]
        assert refused == (
            f"offer {first} is approved (approved by {winner}): only a sized offer can be approved"
        )
        # The resource's other offer for the year cannot be approved as well.
        other = await http.post(f"/v1/offers/{second}/approve", json={"approved_by": "carol"})
        assert other.status_code == 409 and "another offer" in other.json()["detail"]

        assert (await http.post(f"/v1/offers/{first}/submit")).status_code == 200
        again = await http.post(f"/v1/offers/{first}/submit")
        assert again.status_code == 409
        assert again.json()["detail"] == (
            f"offer {first} is submitted: it was submitted already, and an offer is submitted once"
        )
        assert (await http.get(f"/v1/offers/{first}")).json()["version"] == 3
        assert (await http.get(f"/v1/offers/{second}")).json()["state"] == "sized"


async def test_poison_clearings_are_dead_lettered_and_the_consumer_goes_on(ctx: dict) -> None:
    # An offer stored directly in state submitted (the API's path is the test above).
    now = datetime.now(UTC)
    submitted = CapacityOffer.model_validate(
        {
            "offer_id": unique("OFR"),
            "resource_id": ctx["resource"],
            "delivery_year": YEAR,
            "state": OfferState.SUBMITTED,
            "offered_ucap_mw": 2.0,
            "price_usd_per_mw_day": 300.0,
            "sizing": {
                "recommended_ucap_mw": 2.0,
                "quantile": 0.75,
                "expected_revenue_usd": 219_000.0,
                "expected_penalty_usd": 0.0,
                "expected_shortfall_mw": 0.0,
                "resource_ucap_mw": 2.0,
                "samples": 10,
                "terms_source": "test",
            },
            "approved_by": "alice",
            "version": 3,
            "updated_at": now,
        }
    )
    await offer_store.create(ctx["pool"], submitted, "test")
    oid, unknown = submitted.offer_id, unique("OFR")

    def answer(offer_id: str, cleared_mw: float) -> OfferClearing:
        return OfferClearing(
            offer_id=offer_id,
            resource_id=ctx["resource"],
            delivery_year=YEAR,
            cleared=cleared_mw > 0,
            cleared_mw=cleared_mw,
            clearing_price_usd_per_mw_day=CAP,
            cleared_at=now,
        )

    producer = ctx["producer"]
    await producer.publish(CAPACITY_CLEARING, answer(unknown, 1.0))  # an unknown offer
    await producer.send_raw(CAPACITY_CLEARING.name, oid, b"{not json")  # undecodable
    await producer.publish(CAPACITY_CLEARING, answer(oid, 3.0))  # more than offered
    await producer.publish(CAPACITY_CLEARING, answer(oid, 1.5))  # partly cleared: recorded
    await producer.publish(CAPACITY_CLEARING, answer(oid, 0.0))  # a second, other result

    seen: list[str] = []
    keep = lambda d: d.payload.offer_id in {oid, unknown}  # noqa: E731
    handler = make_clearing_handler(ctx["pool"], ctx["producer"])
    async with handler_running(ctx, [CAPACITY_CLEARING], handler, keep, seen) as group:
        await eventually(lambda: offer_store.get(ctx["pool"], oid), lambda o: o.version == 4)

        def mine(records: list) -> list[DeadLetter]:
            letters = [decode(DEAD_LETTER, r.value).data for r in records]
            return [letter for letter in letters if letter.consumer_group == group]

        letters = await eventually(lambda: _dead_letters(ctx, mine), lambda found: len(found) == 4)
    cleared = await offer_store.get(ctx["pool"], oid)
    assert cleared is not None
    assert (cleared.state, cleared.cleared_mw, cleared.version) == ("cleared", 1.5, 4)
    reasons = [letter.error for letter in letters]
    for expected in (
        f"offer {unknown} is unknown",
        "not JSON: ",
        f"the clearing takes 3.0 MW, more than offer {oid}'s 2.0 MW",
        f"offer {oid} is cleared: it has its auction result already",
    ):
        assert sum(r.startswith(expected) for r in reasons) == 1, (expected, reasons)


async def _dead_letters(ctx: dict, mine) -> list[DeadLetter]:
    return mine(await read_all(ctx["bootstrap"], DEAD_LETTER.name))


def test_the_iso_simulator_clears_submitted_offers_at_the_year_price() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    offer = CapacityOffer.model_validate(
        {
            "offer_id": "OFR-1",
            "resource_id": "NXW-PJM-0042",
            "delivery_year": YEAR,
            "state": "submitted",
            "offered_ucap_mw": 10.0,
            "price_usd_per_mw_day": 300.0,
            "sizing": {
                "recommended_ucap_mw": 10.0,
                "quantile": 0.75,
                "expected_revenue_usd": 0.0,
                "expected_penalty_usd": 0.0,
                "expected_shortfall_mw": 0.0,
                "resource_ucap_mw": 10.0,
                "samples": 1,
                "terms_source": "test",
            },
            "approved_by": "alice",
            "version": 3,
            "updated_at": now,
        }
    )
    # 300 <= 333.44: cleared whole, or half (fill 0.5: 5 MW), or not at all (fill 0)
    whole = clear(offer, ISO_PRICES, 1.0, now)
    assert whole is not None and (whole.cleared, whole.cleared_mw) == (True, 10.0)
    assert whole.clearing_price_usd_per_mw_day == 333.44
    half = clear(offer, ISO_PRICES, 0.5, now)
    assert half is not None and half.cleared_mw == 5.0
    none = clear(offer, ISO_PRICES, 0.0, now)
    assert none is not None and (none.cleared, none.cleared_mw) == (False, 0.0)
    # asking 334 > 333.44: not cleared
    dear = clear(offer.model_copy(update={"price_usd_per_mw_day": 334.0}), ISO_PRICES, 1.0, now)
    assert dear is not None and not dear.cleared
    # only submitted offers, only years with an auction
    assert clear(offer.model_copy(update={"state": OfferState.CLEARED}), ISO_PRICES, 1, now) is None
    assert clear(offer, {"2026/27": 329.17}, 1.0, now) is None


async def test_a_resource_beyond_the_contracts_bounds_is_refused_not_a_server_error(
    ctx: dict,
) -> None:
    """A resource accredited for 20,000 MW (more than any offer may carry, 10,000 MW): the
    sizing cannot be expressed as an offer, and the answer says why (422), not 500."""
    huge = CapacitySnapshot(
        resource_id=ctx["resource"], as_of=datetime.now(UTC), assets_enrolled=1,
        assets_reporting=1, nameplate_mw=20_000.0, storage_mwh=80_000.0, available_mw=0.0,
        icap_mw=20_000.0, ucap_mw={YEAR: 20_000.0},
        cohorts=[{"cohort": "east", "assets_enrolled": 1, "assets_reporting": 1,
                  "available_mw": 0.0, "icap_mw": 20_000.0, "ucap_mw": {YEAR: 20_000.0}}],
    )  # fmt: skip
    await record_published(ctx["pool"], huge)
    settings = Settings(offer_default_monthly_churn_pct=0.0, offer_samples=100)
    async with client(ctx, settings) as http:
        answer = await http.post(
            f"/v1/resources/{ctx['resource']}/offers", json={"delivery_year": YEAR}
        )
    assert answer.status_code == 422, answer.text
    assert "less than or equal to 10000" in answer.text
