"""Capacity math against hand-worked numbers. Tolerance: abs=1e-9 MW (a milliwatt); snapshots
are rounded to the watt (6 decimals of MW) and the hand-worked values are whole watts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nexwatt_capacity_model.domain import (
    AssetState,
    ChannelValue,
    changed,
    latest_channels,
    resource_capacity,
    snapshot,
    snapshot_event_id,
)
from nexwatt_shared.contracts import (
    AssetRegistered,
    Channel,
    Quality,
    TelemetryInterval,
    newest_versions,
)

T0 = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
NAN = np.nan


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ends_s(*minutes: float) -> np.ndarray:
    return np.array([at(m).timestamp() for m in minutes])


def test_available_mw_is_the_smaller_of_headroom_and_usable_energy_of_fresh_assets() -> None:
    # The resource's newest telemetry ends at 10:00; freshness 900 s.
    #   A 7.6 kW, 13.5 kWh, reserve 20 %, ends 10:00, pv 2.0, soc 80:
    #     headroom 7.6 - 2.0 = 5.6 kW; energy (80 - 20)/100 * 13.5 = 8.1 kWh -> 8.1 kW; min 5.6
    #   B 5.0 kW, 10 kWh, reserve 30 %, ends 09:50 (600 s old, fresh), pv 0.5, soc 50:
    #     headroom 4.5 kW; energy (50 - 30)/100 * 10 = 2.0 kWh -> 2.0 kW; min 2.0
    #   C 10 kW, 20 kWh, soc 100, ends 09:40 (1200 s old > 900 s): not reporting -> 0
    #   D 3.0 kW solar only (0 kWh, no SoC to report), ends 10:00: reporting, no energy -> 0
    #   E 5.0 kW, 10 kWh, reserve 20 %, soc 10 (below its reserve), ends 10:00: reporting -> 0
    # available = 5.6 + 2.0 = 7.6 kW = 0.0076 MW
    # nameplate = 7.6 + 5 + 10 + 3 + 5 = 30.6 kW = 0.0306 MW
    # storage = 13.5 + 10 + 20 + 0 + 10 = 53.5 kWh = 0.0535 MWh
    ends = ends_s(0, -10, -20, 0, 0)
    got = resource_capacity(
        capacity_kw=np.array([7.6, 5.0, 10.0, 3.0, 5.0]),
        storage_kwh=np.array([13.5, 10.0, 20.0, 0.0, 10.0]),
        reserve_pct=np.array([20.0, 30.0, 20.0, 20.0, 20.0]),
        pv_end_s=ends,
        pv_kw=np.array([2.0, 0.5, 0.0, 1.0, 0.0]),
        soc_end_s=np.where([True, True, True, False, True], ends, NAN),
        soc_pct=np.array([80.0, 50.0, 100.0, NAN, 10.0]),
        freshness_s=900.0,
    )
    assert got.assets_enrolled == 5
    assert got.assets_reporting == 4  # A, B, D, E
    assert got.nameplate_mw == pytest.approx(0.0306, abs=1e-9)
    assert got.storage_mwh == pytest.approx(0.0535, abs=1e-9)
    assert got.available_mw == pytest.approx(0.0076, abs=1e-9)


def test_a_battery_only_asset_needs_no_pv_reading() -> None:
    # Both: 5 kW battery inverter, 10 kWh at 60 % with a 20 % reserve, SoC fresh, no PV ever
    # reported. A has PV behind its inverter: unknown PV, unknown headroom -> not reporting.
    # B is battery-only (asset type storage): its PV is 0, known; headroom 5 kW, energy
    # (60 - 20) / 100 * 10 = 4 kWh -> 4 kW for one hour: available 4 kW.
    ends = ends_s(0, 0)
    got = resource_capacity(
        capacity_kw=np.array([5.0, 5.0]), storage_kwh=np.array([10.0, 10.0]),
        reserve_pct=np.array([20.0, 20.0]), pv_end_s=np.array([NAN, NAN]),
        pv_kw=np.array([NAN, NAN]), soc_end_s=ends, soc_pct=np.array([60.0, 60.0]),
        freshness_s=900.0, has_pv=np.array([True, False]),
    )  # fmt: skip
    assert got.assets_reporting == 1
    assert got.available_mw == pytest.approx(0.004, abs=1e-12)


def test_freshness_is_inclusive_and_relative_to_the_resources_clock() -> None:
    # Both full batteries far above their headroom: each adds capacity - pv = 4.0 kW when fresh.
    # Ends 10:00 and 09:45: the clock of two assets is the newest end (half of two is one),
    # 900 s apart, exactly the freshness -> both report: 8.0 kW.
    # With freshness 899 s the older one drops out: 4.0 kW.
    kwargs = {
        "capacity_kw": np.array([5.0, 5.0]),
        "storage_kwh": np.array([20.0, 20.0]),
        "reserve_pct": np.array([0.0, 0.0]),
        "pv_end_s": ends_s(0, -15),
        "pv_kw": np.array([1.0, 1.0]),
        "soc_end_s": ends_s(0, -15),
        "soc_pct": np.array([100.0, 100.0]),
    }
    both = resource_capacity(**kwargs, freshness_s=900.0)
    one = resource_capacity(**kwargs, freshness_s=899.0)
    assert (both.assets_reporting, one.assets_reporting) == (2, 1)
    assert both.available_mw == pytest.approx(0.008, abs=1e-9)
    assert one.available_mw == pytest.approx(0.004, abs=1e-9)


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
    got = resource_capacity(
        capacity_kw=np.full(4, 5.0),
        storage_kwh=np.full(4, 20.0),
        reserve_pct=np.zeros(4),
        pv_end_s=ends_s(*ends_min),
        pv_kw=np.ones(4),
        soc_end_s=ends_s(*ends_min),
        soc_pct=np.full(4, 100.0),
        freshness_s=900.0,
    )
    assert got.assets_reporting == reporting
    assert got.available_mw == pytest.approx(0.004 * reporting, abs=1e-9)


def test_assets_without_telemetry_are_enrolled_but_neither_report_nor_add_capacity() -> None:
    # 5 kW + 3 kW nameplate, 10 kWh storage, no telemetry at all: nothing is available.
    got = resource_capacity(
        capacity_kw=np.array([5.0, 3.0]),
        storage_kwh=np.array([10.0, 0.0]),
        reserve_pct=np.array([20.0, 20.0]),
        pv_end_s=np.array([NAN, NAN]),
        pv_kw=np.array([NAN, NAN]),
        soc_end_s=np.array([NAN, NAN]),
        soc_pct=np.array([NAN, NAN]),
        freshness_s=900.0,
    )
    assert (got.assets_enrolled, got.assets_reporting) == (2, 0)
    assert got.nameplate_mw == pytest.approx(0.008, abs=1e-9)
    assert got.storage_mwh == pytest.approx(0.010, abs=1e-9)
    assert got.available_mw == 0.0


def test_a_missing_soc_or_pv_makes_an_asset_report_nothing_however_fresh() -> None:
    # Four identical assets, 5 kW, 20 kWh, reserve 0, every channel ending 10:00 (fresh):
    #   A pv 1.0, soc 100: min(5 - 1 = 4.0 kW, 20 kWh / 1 h) = 4.0 kW
    #   B soc reported missing (NaN, its end known): enrolled, not reporting -> 0, not 4.0
    #   C pv reported missing: headroom unknown (0 PV would claim 5.0 kW) -> 0
    #   D pv 1.0 and soc 100 but its SoC interval ended 09:40 (1200 s > 900 s): stale -> 0
    # available 4.0 kW = 0.004 MW; reporting: A only.
    got = resource_capacity(
        capacity_kw=np.full(4, 5.0),
        storage_kwh=np.full(4, 20.0),
        reserve_pct=np.zeros(4),
        pv_end_s=ends_s(0, 0, 0, 0),
        pv_kw=np.array([1.0, 1.0, NAN, 1.0]),
        soc_end_s=ends_s(0, 0, 0, -20),
        soc_pct=np.array([100.0, NAN, 100.0, 100.0]),
        freshness_s=900.0,
    )
    assert (got.assets_enrolled, got.assets_reporting) == (4, 1)
    assert got.available_mw == pytest.approx(0.004, abs=1e-9)


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


def state(
    status: str = "enrolled", updated_min: float = -60, end_min: float | None = 0, **changes: float
) -> AssetState:
    fields = {
        "status": status,
        "capacity_kw": 5.0,
        "storage_kwh": 10.0,
        "has_pv": True,
        "backup_reserve_pct": 20.0,
        "updated_at": at(updated_min),
        "pv_end": None if end_min is None else at(end_min),
        "pv_kw": None if end_min is None else 1.0,
        "soc_end": None if end_min is None else at(end_min),
        "soc_pct": None if end_min is None else 60.0,
    }
    return AssetState(**{**fields, **changes})


def test_snapshot_counts_enrolled_assets_only_and_is_as_of_the_newest_input() -> None:
    # Enrolled: min(5 - 1, (60 - 20)/100 * 10 = 4.0) = 4.0 kW, twice -> 8.0 kW = 0.008 MW.
    # The suspended asset adds nothing but its record (updated 10:05) is the newest input.
    assets = [state(), state(end_min=-5), state("suspended", updated_min=5)]
    snap = snapshot("NXW-PJM-1", assets, touched_at=at(-1), freshness_s=900.0)
    assert snap.as_of == at(5)
    assert (snap.assets_enrolled, snap.assets_reporting) == (2, 2)
    assert snap.nameplate_mw == pytest.approx(0.010, abs=1e-9)
    assert snap.storage_mwh == pytest.approx(0.020, abs=1e-9)
    assert snap.available_mw == pytest.approx(0.008, abs=1e-9)


def test_an_emptied_resource_is_all_zeros_as_of_the_input_that_emptied_it() -> None:
    snap = snapshot("NXW-PJM-1", [], touched_at=at(3), freshness_s=900.0)
    assert snap.as_of == at(3)
    assert snap.model_dump(exclude={"resource_id", "as_of"}) == {
        "assets_enrolled": 0,
        "assets_reporting": 0,
        "nameplate_mw": 0.0,
        "storage_mwh": 0.0,
        "available_mw": 0.0,
    }


def test_a_snapshot_changes_with_its_figures_not_with_as_of_alone() -> None:
    first = snapshot("R", [state()], touched_at=at(0), freshness_s=900.0)
    later = snapshot("R", [state(end_min=1)], touched_at=at(1), freshness_s=900.0)
    more_pv = snapshot("R", [state(end_min=2, pv_kw=2.0)], touched_at=at(2), freshness_s=900.0)
    assert changed(None, first)
    assert later.as_of > first.as_of and not changed(first, later)
    # min(5 - 2, 4.0) = 3.0 kW: a different figure.
    assert changed(later, more_pv) and more_pv.available_mw == pytest.approx(0.003, abs=1e-9)
    assert snapshot_event_id(first) == snapshot_event_id(first.model_copy())
    assert snapshot_event_id(first) != snapshot_event_id(later)


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
