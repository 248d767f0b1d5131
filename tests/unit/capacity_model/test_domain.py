"""Capacity math against hand-worked numbers. Tolerance: abs=1e-9 MW (a milliwatt); snapshots
are rounded to the watt (6 decimals of MW) and the hand-worked values are whole watts.

Unless a test says otherwise an asset is rated as the platform assumed before batteries had
ratings: battery power = the inverter's rating, round trip 1, DC-coupled, so the figures are
inverter headroom and energy above the reserve."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from nexwatt_capacity_model import domain
from nexwatt_capacity_model.book import DELIVERY_YEARS, Books, ResourceBook
from nexwatt_capacity_model.domain import (
    Assets,
    ChannelValue,
    accredit,
    available_kw,
    changed,
    fleet_soc,
    latest_channels,
    snapshot,
    snapshot_event_id,
    soc_availability,
    window_opening,
)
from nexwatt_capacity_model.soc_forecast import RESIDENTIAL_BATTERY_PROGRAM
from nexwatt_capacity_model.store import Changes
from nexwatt_shared.contracts import (
    AssetRegistered,
    Channel,
    Quality,
    TelemetryInterval,
    newest_versions,
)
from nexwatt_shared.power_model import AssetRatings

T0 = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
NAN = np.nan
FRESH_S = 900.0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def row(asset_id: str, end_min: float | None = 0, **changes: object) -> dict[str, object]:
    """A store row (`store._ASSET_ROWS`): 5 kW, 10 kWh, reserve 20 %, PV 1.0 kW and SoC 60 %
    in intervals ending `end_min` (None: no telemetry), record updated at 09:00."""
    end_s = NAN if end_min is None else at(end_min).timestamp()
    fields: dict[str, object] = {
        "asset_id": asset_id, "resource_id": "R", "status": "enrolled",
        "asset_type": "solar_storage", "cohort": "c", "capacity_kw": 5.0, "storage_kwh": 10.0,
        "backup_reserve_pct": 20.0, "battery_continuous_kw": 5.0, "battery_peak_kw": 5.0,
        "round_trip_efficiency": 1.0, "coupling": "dc", "pv_dc_kw": 5.0, "pv_mounting": "fixed",
        "updated_at_s": at(-60).timestamp(), "pv_end_s": end_s,
        "pv_kw": NAN if end_min is None else 1.0, "soc_end_s": end_s,
        "soc_pct": NAN if end_min is None else 60.0,
    }  # fmt: skip
    for name, value in changes.items():
        fields[name] = value.timestamp() if isinstance(value, datetime) else value
    fields["battery_peak_kw"] = max(fields["battery_peak_kw"], fields["battery_continuous_kw"])
    return fields


def columns(*rows: dict[str, object]) -> dict[str, np.ndarray]:
    """Rows as the store reads them: one array per column."""
    names = rows[0] if rows else row("")
    return {name: np.array([r[name] for r in rows]) for name in names}


def channel(asset_id: str, name: str, end_s: float, value: float) -> dict[str, np.ndarray]:
    return columns({"asset_id": asset_id, "channel": name, "end_s": end_s, "value": value})


def fleet(*rows: dict[str, object]) -> Assets:
    book = ResourceBook()
    book.put(columns(*rows))
    return book.view()


def available_mw(assets: Assets) -> float:
    return float(available_kw(assets, FRESH_S)[1].sum()) / 1000.0


def test_available_mw_per_topology_battery_rating_and_losses() -> None:
    # The resource's newest telemetry ends at 10:00; freshness 900 s.
    #   A DC-coupled 7.6 kW hybrid, 5 kW / 13.5 kWh battery, round trip 0.81 (0.9 each way),
    #     reserve 20 %, pv 2.0, soc 80: battery 5.0; headroom 7.6 - 2.0 = 5.6;
    #     energy (80 - 20)/100 * 13.5 * 0.9 = 7.29 kWh -> 7.29 kW; min 5.0
    #   B AC-coupled 5 kW battery inverter, 10 kWh, round trip 0.81, reserve 30 %, pv 4.5 (its
    #     own inverter: no limit), soc 50, ends 09:50 (fresh): energy 0.2 * 10 * 0.9 = 1.8 kW
    #   C 10 kW, 20 kWh, soc 100, ends 09:40 (1200 s old > 900 s): not reporting -> 0
    #   D 3.0 kW solar only (0 kWh, no SoC to report), ends 10:00: reporting, no energy -> 0
    #   E 5.0 kW, 10 kWh, reserve 20 %, soc 10 (below its reserve), ends 10:00: reporting -> 0
    # available = 5.0 + 1.8 = 6.8 kW = 0.0068 MW
    assets = fleet(
        row("A", capacity_kw=7.6, storage_kwh=13.5, round_trip_efficiency=0.81, pv_kw=2.0,
            soc_pct=80.0),
        row("B", end_min=-10, coupling="ac", round_trip_efficiency=0.81,
            backup_reserve_pct=30.0, pv_kw=4.5, soc_pct=50.0),
        row("C", end_min=-20, capacity_kw=10.0, battery_continuous_kw=10.0, storage_kwh=20.0,
            soc_pct=100.0),
        row("D", asset_type="solar", capacity_kw=3.0, storage_kwh=0.0,
            battery_continuous_kw=0.0, soc_end_s=NAN, soc_pct=NAN),
        row("E", soc_pct=10.0),
    )  # fmt: skip
    reporting, kw = available_kw(assets, FRESH_S)
    assert reporting.tolist() == [True, True, False, True, True]
    assert kw == pytest.approx([5.0, 1.8, 0.0, 0.0, 0.0], abs=1e-12)


def test_the_issues_two_examples() -> None:
    """SolarEdge SE7600 (DC) with a 9.8 kWh / 5 kW battery at night: 5.0 kW, not 7.6.
    SMA Sunny Boy Storage 6.0 (AC) beside 5 kW of PV: 6.0 kW, not 1.0. Full batteries, no
    reserve, lossless, so only the power limits bind (an hour needs 5 and 6 kWh)."""
    assets = fleet(
        row("SE", capacity_kw=7.6, battery_continuous_kw=5.0, storage_kwh=9.8, pv_kw=0.0,
            soc_pct=100.0, backup_reserve_pct=0.0),
        row("SMA", coupling="ac", capacity_kw=6.0, battery_continuous_kw=6.0, storage_kwh=9.8,
            pv_kw=5.0, soc_pct=100.0, backup_reserve_pct=0.0),
    )  # fmt: skip
    assert available_kw(assets, FRESH_S)[1] == pytest.approx([5.0, 6.0], abs=1e-12)


def test_a_battery_only_asset_needs_no_pv_reading() -> None:
    # Both: 5 kW, 10 kWh at 60 % with a 20 % reserve, SoC fresh, no PV ever reported.
    # A has PV behind its inverter: unknown PV, unknown headroom -> not reporting.
    # B is battery-only (asset type storage): its PV is 0, known; headroom 5 kW, energy
    # (60 - 20) / 100 * 10 = 4 kWh -> 4 kW for one hour: available 4 kW.
    no_pv = {"pv_end_s": NAN, "pv_kw": NAN}
    assets = fleet(row("A", **no_pv), row("B", asset_type="storage", **no_pv))
    assert available_kw(assets, FRESH_S)[0].tolist() == [False, True]
    assert available_mw(assets) == pytest.approx(0.004, abs=1e-12)


def test_freshness_is_inclusive_and_relative_to_the_resources_clock() -> None:
    # Both full batteries far above their headroom: each adds capacity - pv = 4.0 kW when fresh.
    # Ends 10:00 and 09:45: the clock of two assets is the newest end (half of two is one),
    # 900 s apart, exactly the freshness -> both report: 8.0 kW.
    # With freshness 899 s the older one drops out: 4.0 kW.
    full = {"storage_kwh": 20.0, "backup_reserve_pct": 0.0, "soc_pct": 100.0}
    assets = fleet(row("A", **full), row("B", end_min=-15, **full))
    for freshness_s, reporting in ((900.0, [True, True]), (899.0, [True, False])):
        got, kw = available_kw(assets, freshness_s)
        assert got.tolist() == reporting
        assert kw.sum() == pytest.approx(4.0 * sum(reporting), abs=1e-9)


@pytest.mark.parametrize(
    ("ends_min", "reporting"),
    [
        # One asset's clock 4 h ahead: the resource's clock is the 2nd newest end (half of
        # four), 10:00, so the others stay fresh; the one ahead reports too (its data is new).
        ((0, 0, 0, 240), 4),
        # Half the fleet silent for an hour: the clock is still the live half's 10:00.
        ((-60, -60, 0, 0), 2),
    ],
)
def test_one_asset_ahead_or_half_the_fleet_silent_moves_no_one(ends_min, reporting) -> None:
    # Four full batteries, each adding capacity - pv = 5.0 - 1.0 = 4.0 kW when reporting.
    full = {"storage_kwh": 20.0, "backup_reserve_pct": 0.0, "soc_pct": 100.0}
    assets = fleet(*(row(f"A{i}", end_min=m, **full) for i, m in enumerate(ends_min)))
    assert int(available_kw(assets, FRESH_S)[0].sum()) == reporting
    assert available_mw(assets) == pytest.approx(0.004 * reporting, abs=1e-9)


def test_assets_without_telemetry_are_enrolled_but_neither_report_nor_add_capacity() -> None:
    # 5 kW + 3 kW nameplate, 10 kWh storage, no telemetry at all: nothing is available.
    assets = fleet(
        row("A", end_min=None),
        row("B", end_min=None, capacity_kw=3.0, storage_kwh=0.0, battery_continuous_kw=0.0),
    )
    snap = snapshot("R", assets, touched_at=at(0), freshness_s=FRESH_S)
    assert (snap.assets_enrolled, snap.assets_reporting) == (2, 0)
    assert snap.nameplate_mw == pytest.approx(0.008, abs=1e-9)
    assert snap.storage_mwh == pytest.approx(0.010, abs=1e-9)
    assert snap.available_mw == 0.0


def test_a_missing_soc_or_pv_makes_an_asset_report_nothing_however_fresh() -> None:
    # Four identical assets, 5 kW, 20 kWh, reserve 0, every channel ending 10:00 (fresh):
    #   A pv 1.0, soc 100: min(5 - 1 = 4.0 kW, 20 kWh / 1 h) = 4.0 kW
    #   B soc reported missing (NaN, its end known): enrolled, not reporting -> 0, not 4.0
    #   C pv reported missing: headroom unknown (0 PV would claim 5.0 kW) -> 0
    #   D pv 1.0 and soc 100 but its SoC interval ended 09:40 (1200 s > 900 s): stale -> 0
    full = {"storage_kwh": 20.0, "backup_reserve_pct": 0.0, "soc_pct": 100.0}
    assets = fleet(
        row("A", **full),
        row("B", **{**full, "soc_pct": NAN}),
        row("C", pv_kw=NAN, **full),
        row("D", soc_end_s=at(-20), **full),
    )
    assert available_kw(assets, FRESH_S)[0].tolist() == [True, False, False, False]
    assert available_mw(assets) == pytest.approx(0.004, abs=1e-9)


def ratings(**changes: object) -> AssetRatings:
    fields: dict[str, object] = {
        "battery_continuous_kw": 5.0, "battery_peak_kw": 7.5, "usable_kwh": 9.8,
        "round_trip_efficiency": 0.9025, "coupling": "dc", "pv_dc_kw": 8.0,
        "inverter_ac_kw": 7.6, "backup_reserve_pct": 20.0,
    }  # fmt: skip
    return AssetRatings(**{**fields, **changes})


def test_accreditation_of_a_dc_coupled_solar_and_storage_site_by_hand() -> None:
    # Battery: power min(5, 7.6) = 5 kW; event energy 9.8 * (1 - 0.20) * sqrt(0.9025) =
    #   9.8 * 0.8 * 0.95 = 7.448 kWh (1.49 h: under 4 h) -> ICAP min(5, 7.448 / 4) = 1.862 kW
    #   of 4-hour storage.
    # PV: 8 kW DC through the 7.6 kW hybrid inverter the battery shares: 7.6 - 1.862 = 5.738 kW
    #   of fixed solar (both at once never pass the inverter).
    # ICAP 5.738 + 1.862 = 7.6 kW.
    # 2025/26: 5.738 * 0.10 + 1.862 * 0.55 = 0.5738 + 1.0241 = 1.5979 kW
    # 2026/27: 5.738 * 0.08 + 1.862 * 0.50 = 0.45904 + 0.931 = 1.39004 kW
    # 2027/28: 5.738 * 0.07 + 1.862 * 0.58 = 0.40166 + 1.07996 = 1.48162 kW
    icap, ucap = accredit(ratings(), True, "fixed", ("2025/26", "2026/27", "2027/28"))
    assert float(icap) * 1000 == pytest.approx(7.6, abs=1e-9)
    assert ucap * 1000 == pytest.approx([1.5979, 1.39004, 1.48162], abs=1e-9)
    # A small array under the inverter's headroom counts whole: 4 kW DC -> 4 kW.
    icap, _ = accredit(ratings(pv_dc_kw=4.0), True, "fixed", ("2026/27",))
    assert float(icap) * 1000 == pytest.approx(4.0 + 1.862, abs=1e-9)


def test_accreditation_of_storage_alone_and_of_ac_coupled_tracking_pv_by_hand() -> None:
    # 1 MW / 4 MWh, no reserve, lossless, no PV, 2026/27: 1 MW x 0.50 = 0.500000 MW.
    big = ratings(battery_continuous_kw=1000.0, battery_peak_kw=1000.0, usable_kwh=4000.0,
                  round_trip_efficiency=1.0, backup_reserve_pct=0.0,
                  inverter_ac_kw=1000.0)  # fmt: skip
    icap, ucap = accredit(big, False, "fixed", ("2026/27",))
    assert float(icap) == pytest.approx(1.0, abs=1e-12)
    assert float(ucap[0]) == pytest.approx(0.5, abs=1e-12)
    # AC-coupled 6 kW battery inverter beside 5 kW DC of tracking PV: the PV is not limited by
    # the battery's inverter. Battery 6 kW, 9.8 * 0.8 * 0.95 = 7.448 kWh -> 1.862 kW.
    # 2027/28: 5 * 0.08 + 1.862 * 0.58 = 0.4 + 1.07996 = 1.47996 kW.
    sma = ratings(coupling="ac", battery_continuous_kw=6.0, battery_peak_kw=6.0,
                  inverter_ac_kw=6.0, pv_dc_kw=5.0)  # fmt: skip
    icap, ucap = accredit(sma, True, "tracking", ("2027/28",))
    assert float(icap) * 1000 == pytest.approx(6.862, abs=1e-9)
    assert float(ucap[0]) * 1000 == pytest.approx(1.47996, abs=1e-9)


def test_per_cohort_parts_add_up_to_the_resource_to_a_microwatt() -> None:
    rng = np.random.default_rng(7)
    n = 100_000
    cohorts = rng.choice(["residential", "commercial", "pilot", "east"], n)
    capacity = rng.uniform(3.0, 20.0, n)
    storage = capacity * rng.uniform(0.5, 4.0, n)
    assets = fleet(
        *(
            row(f"A{i}", cohort=str(cohorts[i]), capacity_kw=capacity[i],
                battery_continuous_kw=capacity[i] * 0.8, storage_kwh=storage[i],
                pv_dc_kw=capacity[i] * 1.1, soc_pct=float(rng.uniform(0, 100)),
                status="suspended" if i % 50 == 0 else "enrolled")
            for i in range(n)
        )
    )  # fmt: skip
    snap = snapshot("R", assets, touched_at=at(0), freshness_s=FRESH_S)
    assert snap.assets_enrolled == n - n // 50
    assert sum(c.assets_enrolled for c in snap.cohorts) == snap.assets_enrolled
    parts = {
        "available_mw": sum(c.available_mw for c in snap.cohorts),
        "icap_mw": sum(c.icap_mw for c in snap.cohorts),
    }
    assert snap.available_mw == pytest.approx(parts["available_mw"], abs=1e-6)
    assert snap.icap_mw == pytest.approx(parts["icap_mw"], abs=1e-6)
    assert set(snap.ucap_mw) == set(DELIVERY_YEARS)
    for year, total in snap.ucap_mw.items():
        assert total == pytest.approx(sum(c.ucap_mw[year] for c in snap.cohorts), abs=1e-6)
        # ... and the resource equals the exact sum over its enrolled assets, to 1e-6 MW.
        exact = assets.ucap_mw[list(DELIVERY_YEARS).index(year), assets.enrolled].sum()
        assert total == pytest.approx(exact, abs=1e-6)
    assert snap.ucap_mw["2026/27"] > 0


def test_the_latest_value_of_each_channel_comes_from_the_readings_that_carry_it() -> None:
    # A: a 15-minute PV reading 09:45-10:00 (pv 2.0) and 5-minute battery readings ending 09:55
    #    (soc 70) and 10:05 (soc reported missing): PV 2.0 as of 10:00, SoC unknown as of 10:05.
    # B: soc 60 flagged questionable (a value, refused): unknown as of its end, 10:00.
    # C: a meter-only reading (net_kw alone): says nothing about PV or SoC.
    readings = [
        TelemetryInterval(asset_id="A", interval_start=at(-15), interval_s=900, pv_kw=2.0,
                          load_kw=1.0, net_kw=1.0),
        TelemetryInterval(asset_id="A", interval_start=at(0), interval_s=300,
                          quality={"soc_pct": "missing", "battery_kw": "missing"}),
        TelemetryInterval(asset_id="A", interval_start=at(-10), interval_s=300, soc_pct=70.0,
                          battery_kw=0.0),
        TelemetryInterval(asset_id="B", interval_start=at(-5), interval_s=300, soc_pct=60.0,
                          quality={"soc_pct": "questionable"}),
        TelemetryInterval(asset_id="C", interval_start=at(-5), interval_s=300, net_kw=-1.0),
    ]  # fmt: skip
    got = {(c.asset_id, c.channel): c for c in latest_channels(readings)}
    assert got == {
        ("A", Channel.PV_KW): ChannelValue("A", Channel.PV_KW, at(0), 2.0, Quality.ACTUAL),
        ("A", Channel.SOC_PCT): ChannelValue("A", Channel.SOC_PCT, at(5), None, Quality.MISSING),
        ("B", Channel.SOC_PCT): ChannelValue(
            "B", Channel.SOC_PCT, at(0), None, Quality.QUESTIONABLE
        ),
    }


def test_snapshot_counts_enrolled_assets_only_and_is_as_of_the_newest_input() -> None:
    # Enrolled: min(5 - 1, (60 - 20)/100 * 10 = 4.0) = 4.0 kW, twice -> 8.0 kW = 0.008 MW.
    # The suspended asset adds nothing but its record (updated 10:05) is the newest input.
    assets = fleet(row("A"), row("B", end_min=-5), row("C", status="suspended", updated_at_s=at(5)))
    snap = snapshot("NXW-PJM-1", assets, touched_at=at(-1), freshness_s=FRESH_S)
    assert snap.as_of == at(5)
    assert (snap.assets_enrolled, snap.assets_reporting) == (2, 2)
    assert snap.nameplate_mw == pytest.approx(0.010, abs=1e-9)
    assert snap.storage_mwh == pytest.approx(0.020, abs=1e-9)
    assert snap.available_mw == pytest.approx(0.008, abs=1e-9)
    assert [(c.cohort, c.assets_enrolled) for c in snap.cohorts] == [("c", 2)]


def test_an_emptied_resource_is_all_zeros_as_of_the_input_that_emptied_it() -> None:
    snap = snapshot("NXW-PJM-1", fleet(), touched_at=at(3), freshness_s=FRESH_S)
    assert snap.as_of == at(3)
    assert snap.model_dump(exclude={"resource_id", "as_of"}) == {
        "assets_enrolled": 0,
        "assets_reporting": 0,
        "nameplate_mw": 0.0,
        "storage_mwh": 0.0,
        "available_mw": 0.0,
        "icap_mw": 0.0,
        "ucap_mw": dict.fromkeys(DELIVERY_YEARS, 0.0),
        "cohorts": [],
    }


def test_a_snapshot_changes_with_its_figures_not_with_as_of_alone() -> None:
    first = snapshot("R", fleet(row("A")), touched_at=at(0), freshness_s=FRESH_S)
    later = snapshot("R", fleet(row("A", end_min=1)), touched_at=at(1), freshness_s=FRESH_S)
    more_pv = snapshot("R", fleet(row("A", end_min=2, pv_kw=2.0)), at(2), FRESH_S)
    assert changed(None, first)
    assert later.as_of > first.as_of and not changed(first, later)
    # min(5 - 2, 4.0) = 3.0 kW: a different figure.
    assert changed(later, more_pv) and more_pv.available_mw == pytest.approx(0.003, abs=1e-9)
    assert snapshot_event_id(first) == snapshot_event_id(first.model_copy())
    assert snapshot_event_id(first) != snapshot_event_id(later)


def test_a_book_gives_a_leaving_assets_slot_to_the_last_one() -> None:
    book = ResourceBook()
    book.put(columns(row("A", soc_pct=30.0), row("B", soc_pct=40.0), row("C", soc_pct=50.0)))
    book.remove(["A", "unknown"])
    assert book.ids == ["C", "B"] and book.slot == {"C": 0, "B": 1}
    assert book.view().soc_pct.tolist() == [50.0, 40.0]
    book.put_channels(channel("B", "soc_pct", 1.0, 99.0))
    assert book.view().soc_pct.tolist() == [50.0, 99.0]


def test_books_move_an_asset_between_resources_and_ignore_resources_not_loaded() -> None:
    books = Books()
    books.load("R", Changes(columns(row("A"), row("B")), {}, xmin="100"))
    books.load("S", Changes(columns(row("C", resource_id="S")), {}, xmin="150"))
    assert books.xmin == "100"  # the oldest read: nothing written after it is missed
    changes = Changes(
        columns(row("A", resource_id="S"), row("X", resource_id="elsewhere")),
        channel("B", "pv_kw", 7.0, 2.5),
        xmin="120",
    )
    books.apply(changes)
    assert books.of["R"].ids == ["B"] and sorted(books.of["S"].ids) == ["A", "C"]
    assert books.of["R"].view().pv_kw.tolist() == [2.5]
    assert books.xmin == "120"
    assert "elsewhere" not in books.of


def record(asset_id: str, version: int) -> AssetRegistered:
    return AssetRegistered(
        asset_id=asset_id,
        status="enrolled",
        asset_type="solar_storage",
        inverter="SolarEdge SE7600",
        vendor="solaredge",
        capacity_kw=float(version),
        meter_id="M-1",
        iso="PJM",
        iso_zone="PJM-PEPCO",
        resource_id="R",
        cohort="c",
        telemetry_interval_s=60,
        version=version,
        updated_at=at(version),
    )


def reading(asset_id: str, minute: int) -> TelemetryInterval:
    return TelemetryInterval(
        asset_id=asset_id,
        interval_start=at(minute),
        interval_s=60,
        pv_kw=1.0,
        load_kw=1.0,
        battery_kw=0.0,
        net_kw=0.0,
    )


def test_a_batch_keeps_the_highest_version_and_the_latest_reading_of_each_asset() -> None:
    records = newest_versions([record("A", 2), record("A", 3), record("A", 1), record("B", 1)])
    assert sorted((r.asset_id, r.version) for r in records) == [("A", 3), ("B", 1)]
    channels = latest_channels([reading("A", 2), reading("A", 1), reading("B", 0)])
    # Each 1-minute reading ends a minute after its start; no SoC was reported.
    assert sorted((c.asset_id, c.channel, c.interval_end) for c in channels) == [
        ("A", Channel.PV_KW, at(3)),
        ("B", Channel.PV_KW, at(1)),
    ]


EASTERN = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("local", "day"),
    [
        (datetime(2026, 7, 1, 16, 0), date(2026, 7, 1)),  # Wednesday, the window opens
        (datetime(2026, 7, 1, 16, 14, 59), date(2026, 7, 1)),  # within 15 minutes
        (datetime(2026, 7, 1, 16, 15), None),  # too late: the window's SoC is past
        (datetime(2026, 7, 1, 15, 59), None),  # before it opens
        (datetime(2026, 7, 4, 16, 5), None),  # Saturday
        (datetime(2026, 3, 11, 16, 5), None),  # a weekday out of season (May-October)
        (datetime(2026, 10, 30, 16, 5), date(2026, 10, 30)),  # the season's last Friday
    ],
)
def test_a_program_days_window_opening_in_market_time(local: datetime, day: date | None) -> None:
    as_of = local.replace(tzinfo=EASTERN).astimezone(UTC)  # 16:00 EDT is 20:00 UTC
    assert window_opening(as_of, EASTERN, 15.0, RESIDENTIAL_BATTERY_PROGRAM) == day


def test_the_fleets_soc_is_weighted_by_energy_over_reporting_batteries() -> None:
    # A 10 kWh at 80 % (reserve 20), B 30 kWh at 40 % (reserve 10), C stale, D solar only:
    # SoC (10 x 80 + 30 x 40) / 40 = 50 %; reserve (10 x 20 + 30 x 10) / 40 = 12.5 %.
    assets = fleet(
        row("A", soc_pct=80.0),
        row("B", storage_kwh=30.0, backup_reserve_pct=10.0, soc_pct=40.0),
        row("C", end_min=-60, soc_pct=100.0),
        row("D", asset_type="solar", storage_kwh=0.0, battery_continuous_kw=0.0,
            soc_end_s=NAN, soc_pct=NAN),
    )  # fmt: skip
    got = fleet_soc(assets, FRESH_S)
    assert got is not None
    assert (got.soc_pct, got.reserve_pct, got.assets) == (
        pytest.approx(50.0, abs=1e-12),
        pytest.approx(12.5, abs=1e-12),
        2,
    )
    assert fleet_soc(fleet(row("A", end_min=None)), FRESH_S) is None
    # Availability: (50 - 12.5) / (100 - 12.5) = 0.428571...; below the reserve: 0; full: 1.
    assert soc_availability([50.0, 5.0, 100.0], [12.5, 10.0, 20.0]) == pytest.approx(
        [37.5 / 87.5, 0.0, 1.0], abs=1e-12
    )


def test_rows_the_power_model_refuses_change_no_book() -> None:
    """A refused row (here a round trip above 1, which no valid record carries) raises before
    anything changes: the book keeps serving what it had, and a failed load keeps no book."""
    book = ResourceBook()
    book.put(columns(row("A", soc_pct=30.0)))
    before = book.view()
    with pytest.raises(ValueError, match="round_trip_efficiency"):
        book.put(columns(row("A", soc_pct=99.0), row("B", round_trip_efficiency=1.5)))
    assert book.ids == ["A"] and book.view() is before
    books = Books()
    with pytest.raises(ValueError, match="round_trip_efficiency"):
        books.load("R", Changes(columns(row("B", round_trip_efficiency=1.5)), {}, "1"))
    assert books.of == {} and books.xmin is None


def test_cohorts_are_listed_by_name_and_beyond_the_limit_the_smallest_are_folded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cohorts d (1 asset), b (1), c (2), a (3), in that order of arrival.
    rows = [row("D1", cohort="d"), row("B1", cohort="b"), row("C1", cohort="c")]
    rows += [row("C2", cohort="c"), *(row(f"A{i}", cohort="a") for i in range(3))]
    assets = fleet(*rows)
    snap = snapshot("R", assets, at(0), FRESH_S)
    assert [(c.cohort, c.assets_enrolled) for c in snap.cohorts] == [
        ("a", 3), ("b", 1), ("c", 2), ("d", 1),
    ]  # fmt: skip
    # At most 3 listed: the two largest by name, then the rest (b and d) folded.
    monkeypatch.setattr(domain, "MAX_COHORTS", 3)
    folded = snapshot("R", assets, at(0), FRESH_S)
    assert [(c.cohort, c.assets_enrolled) for c in folded.cohorts] == [
        ("a", 3), ("c", 2), (domain.OTHER_COHORTS, 2),
    ]  # fmt: skip
    assert folded.model_dump(exclude={"cohorts"}) == snap.model_dump(exclude={"cohorts"})


def test_the_portfolio_is_the_sum_of_its_resources_and_of_its_cohorts() -> None:
    # R: cohort a 2 assets (4.0 kW each available), b 1 asset; S: cohort a 1 asset.
    # Each 5 kW / 10 kWh asset: available min(5 - 1, 4) = 4 kW; ICAP: battery min(5, 10 x 0.8
    # / 4 = 2) = 2 kW + PV min(5, 5 - 2) = 3 kW = 5 kW; UCAP 2026/27 3 x 0.08 + 2 x 0.50 =
    # 1.24 kW. Portfolio: 4 assets, 16 kW available, 20 kW ICAP, 4.96 kW UCAP; cohort a has 3
    # assets over both resources (3.72 kW), b 1 (1.24 kW).
    r = snapshot("R", fleet(row("A1", cohort="a"), row("A2", cohort="a"), row("B1", cohort="b")),
                 at(0), FRESH_S)  # fmt: skip
    s = snapshot("S", fleet(row("C1", cohort="a", resource_id="S")), at(1), FRESH_S)
    got = domain.portfolio([s, r])
    assert (got.as_of, got.assets_enrolled) == (at(1), 4)
    assert got.available_mw == pytest.approx(0.016, abs=1e-9)
    assert got.icap_mw == pytest.approx(0.020, abs=1e-9)
    assert got.ucap_mw["2026/27"] == pytest.approx(0.00496, abs=1e-9)
    assert [snap.resource_id for snap in got.resources] == ["R", "S"]
    assert [(c.cohort, c.assets_enrolled) for c in got.cohorts] == [("a", 3), ("b", 1)]
    assert got.cohorts[0].ucap_mw["2026/27"] == pytest.approx(0.00372, abs=1e-9)
    for year, mw in got.ucap_mw.items():
        assert mw == pytest.approx(sum(c.ucap_mw[year] for c in got.cohorts), abs=1e-6)
    assert domain.portfolio([]).model_dump() == {
        "as_of": None, "assets_enrolled": 0, "available_mw": 0.0, "icap_mw": 0.0,
        "ucap_mw": {}, "resources": [], "cohorts": [],
    }  # fmt: skip
