"""Dispatch's in-memory view: what a replay, an older record or a missing value does to it, and
how an asset's delivery in its commanded window is measured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nexwatt_dispatch import view as view_module
from nexwatt_dispatch.view import FleetView, Order, Performance
from nexwatt_shared.contracts import AssetRegistered, TelemetryInterval

T0 = datetime(2026, 7, 1, 17, 0, tzinfo=UTC)


def record(asset_id: str, version: int = 1, status: str = "enrolled", **more) -> AssetRegistered:
    fields = dict(
        asset_id=asset_id, status=status, asset_type="solar_storage", inverter="SolarEdge SE7600",
        vendor="solaredge", capacity_kw=7.6, storage_kwh=9.8, meter_id="M", iso="PJM",
        iso_zone="PJM-PEPCO", resource_id="NXW-PJM-1", cohort="residential",
        telemetry_interval_s=300, version=version, updated_at=T0,
    ) | more  # fmt: skip
    return AssetRegistered(**fields)


def reading(asset_id: str, start: datetime, **values) -> TelemetryInterval:
    return TelemetryInterval(asset_id=asset_id, interval_start=start, interval_s=300, **values)


def test_newer_versions_win_and_membership_follows_status() -> None:
    view = FleetView(capacity=2)  # grown by doubling as assets arrive
    view.apply_registrations([record(f"A-{k}") for k in range(5)])
    view.apply_registrations([record("A-1", 2, "suspended"), record("A-1", 1)])  # older: no
    view.apply_registrations([record("A-2", 2, resource_id="NXW-PJM-2", gateway_id="hub")])
    fleet = view.fleet("NXW-PJM-1")
    assert fleet.asset_ids == ["A-0", "A-3", "A-4"] and view.capacity == 8
    moved = view.fleet("NXW-PJM-2")
    assert moved.asset_ids == ["A-2"] and moved.gateway_ids == ["hub"]
    assert view.fleet("NXW-PJM-1", excluding=["A-3"]).asset_ids == ["A-0", "A-4"]
    assert view.members("NXW-PJM-NONE").size == 0


def test_each_channel_keeps_its_newest_value_and_missing_is_unknown() -> None:
    view = FleetView()
    view.apply_registrations([record("A")])
    later = T0 + timedelta(minutes=5)
    view.apply_telemetry(
        [reading("A", later, pv_kw=2.0, soc_pct=80.0), reading("A", T0, pv_kw=9.0, soc_pct=10.0)]
    )
    fleet = view.fleet("NXW-PJM-1")
    assert (fleet.pv_kw[0], fleet.soc_pct[0]) == (2.0, 80.0)  # the older reading lost
    # A newer reading that reports the SoC missing and carries no PV: SoC unknown from then,
    # PV as it was.
    newest = later + timedelta(minutes=5)
    view.apply_telemetry([reading("A", newest, quality={"soc_pct": "missing"})])
    fleet = view.fleet("NXW-PJM-1")
    assert np.isnan(fleet.soc_pct[0]) and fleet.pv_kw[0] == 2.0
    assert fleet.soc_end_s[0] == (newest + timedelta(minutes=5)).timestamp()


def test_delivery_in_the_commanded_window_is_measured_once() -> None:
    view = FleetView()
    view.apply_registrations([record("A"), record("B")])
    start, end = T0, T0 + timedelta(minutes=10)
    view.order(["A", "B"], [4.0, 2.0], "I-1", start.timestamp(), end.timestamp())
    # A: 4 kW for 5 min, then 2 kW: 4/12 + 2/12 = 0.5 kWh of 4 x 10/60 = 0.6667 commanded.
    # The first reading again (a replay) counts once; B stops reporting after its first; a
    # 1-minute reading of A inside the 5 minutes already counted adds nothing; delivering
    # more than the setpoint counts as the setpoint.
    first = [reading("A", T0, battery_kw=6.0), reading("B", T0, battery_kw=2.0)]
    again = TelemetryInterval(
        asset_id="A", interval_start=T0 + timedelta(minutes=4), interval_s=60, battery_kw=4.0
    )
    assert view.apply_telemetry([*first, reading("A", T0, battery_kw=4.0), again]) == []
    closed = view.apply_telemetry([reading("A", T0 + timedelta(minutes=5), battery_kw=2.0)])
    assert closed == [Performance("I-1", "A", pytest.approx(4 / 6), pytest.approx(0.5))]
    # Another fleet's clock far ahead closes nothing of this resource's windows.
    view.apply_registrations([record("X", resource_id="NXW-PJM-9")])
    view.apply_telemetry([reading("X", T0 + timedelta(days=1), soc_pct=50.0)])
    assert view.close_stale(900.0) == []
    # B's window is closed once its resource's clock (A's telemetry here, half of the two)
    # has moved on 15 minutes past its end: what it showed is what it did, of all it was
    # commanded (2 kW x 10 min).
    view.apply_telemetry([reading("A", end + timedelta(minutes=20), soc_pct=50.0)])
    view.apply_telemetry([reading("B", end + timedelta(minutes=20), soc_pct=50.0)])
    [b] = view.close_stale(900.0)
    assert (b.asset_id, b.commanded_kwh, b.delivered_kwh) == ("B", pytest.approx(2 / 6),
                                                               pytest.approx(2 / 12))  # fmt: skip
    view.set_performance([("A", 4 / 6, 0.5)])
    fleet = view.fleet("NXW-PJM-1")
    assert fleet.delivered_kwh.tolist() == [0.5, 0.0]


def test_readings_before_the_registration_wait_for_it_within_bounds(monkeypatch) -> None:
    monkeypatch.setattr(view_module, "HELD_ASSETS_MAX", 2)
    view = FleetView()
    # A reading can come before its asset's registration: it waits for it, the newest
    # HELD_READINGS_PER_ASSET per asset, without giving the asset a row.
    old, new = T0, T0 + timedelta(minutes=5)
    view.apply_telemetry([reading("A", new, pv_kw=3.0, soc_pct=70.0)] + [
        reading("A", old - timedelta(minutes=5 * k), soc_pct=10.0) for k in range(3)
    ])  # fmt: skip
    assert view.asset_ids == [] and len(view.held["A"]) == 3 and view.held_dropped == 1
    view.apply_registrations([record("A")])
    fleet = view.fleet("NXW-PJM-1")
    assert (fleet.pv_kw[0], fleet.soc_pct[0]) == (3.0, 70.0) and not view.held
    # Ids that never register: only the newest HELD_ASSETS_MAX assets stay, nothing grows.
    view.apply_telemetry([reading(f"GHOST-{k}", T0, soc_pct=1.0) for k in range(5)])
    assert list(view.held) == ["GHOST-3", "GHOST-4"] and view.held_dropped == 4
    assert view.asset_ids == ["A"]


def test_an_order_is_kept_revised_replaced_and_ended_as_at_the_gateway() -> None:
    view = FleetView()
    view.apply_registrations([record("A"), record("B")])
    start, end = T0.timestamp(), (T0 + timedelta(minutes=10)).timestamp()
    view.order(["A", "B", "UNKNOWN"], [4.0, 3.0, 1.0], "I-1", start, end)
    view.apply_telemetry([reading("A", T0, battery_kw=4.0)])  # 4 kW x 5 min = 1/3 kWh
    # Acknowledged less, same instruction: what was measured stays, the setpoint follows.
    view.order(["A"], [2.0], "I-1", start, end)
    orders = view.orders()
    assert orders["A"].setpoint_kw == 2.0
    assert orders["A"].delivered_kwh == pytest.approx(1 / 3)
    assert set(orders) == {"A", "B"}  # an asset the view does not know gets no order
    # Another instruction's command replaces the order (nothing measured yet); 0 ends one.
    view.order(["A", "B"], [1.5, 0.0], "I-2", start + 300, end)
    assert view.orders() == {"A": Order("I-2", start + 300, end, 1.5, 0.0)}
