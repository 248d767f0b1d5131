"""The shipped rules of each ISO: each file loads, the right entry is in force on a date, every
stated fact names its source, and the figures read from those sources are the ones recorded."""

from __future__ import annotations

from datetime import date

import pytest

from nexwatt_onboarding.rules import RULES_DIR, NoRulesInForce, load_registry

REGISTRY = load_registry()
ISOS = ["PJM", "NYISO", "ISONE", "CAISO", "MISO", "ERCOT"]


def test_the_registry_holds_the_six_isos_one_file_each() -> None:
    assert sorted(REGISTRY) == sorted(ISOS)
    assert sorted(p.stem for p in RULES_DIR.glob("*.json")) == sorted(i.lower() for i in ISOS)


@pytest.mark.parametrize("iso", ISOS)
def test_every_stated_fact_names_its_source_and_every_unknown_says_why(iso: str) -> None:
    for entry in REGISTRY[iso].delivery_years:
        assert entry.iso == iso
        for path, value in entry.facts().items():
            if value is None:
                assert entry.notes[path].strip(), (entry.delivery_year, path)
            else:
                source = entry.source_of(path)
                assert source is not None, (entry.delivery_year, path)
                assert source.title and source.url.startswith("http"), (entry.delivery_year, path)
        # An Order 2222 model is what a DER aggregation is filed under; every ISO states its path.
        assert entry.participation


@pytest.mark.parametrize(
    ("iso", "on", "starts_on"),
    [
        ("PJM", date(2026, 5, 31), date(2025, 6, 1)),  # 2025/2026
        ("PJM", date(2026, 6, 1), date(2026, 6, 1)),  # 2026/2027
        ("CAISO", date(2022, 6, 16), date(2016, 6, 3)),  # 2016 DERA model
        ("CAISO", date(2022, 6, 17), date(2022, 6, 17)),  # Order 2222 compliance
        ("NYISO", date(2026, 11, 27), date(2024, 4, 16)),
        ("MISO", date(2026, 11, 27), date(2025, 1, 16)),
        ("ISONE", date(2026, 11, 27), date(2023, 3, 1)),
        ("ERCOT", date(2026, 11, 27), date(2022, 11, 1)),
    ],
)
def test_the_entry_in_force_on_a_date(iso: str, on: date, starts_on: date) -> None:
    assert REGISTRY[iso].in_force(on).starts_on == starts_on


@pytest.mark.parametrize(
    ("iso", "before"),
    [
        ("PJM", date(2025, 5, 31)),
        ("CAISO", date(2016, 6, 2)),
        ("NYISO", date(2024, 4, 15)),
        ("MISO", date(2025, 1, 15)),
        ("ISONE", date(2023, 2, 28)),
        ("ERCOT", date(2022, 10, 31)),
    ],
)
def test_no_rules_before_the_first_entry(iso: str, before: date) -> None:
    with pytest.raises(NoRulesInForce):
        REGISTRY[iso].in_force(before)


def test_pjm_figures() -> None:
    rules = REGISTRY["PJM"].in_force(date(2026, 11, 27))
    assert rules.min_aggregation_kw == 100  # Order 2222 ceiling
    assert rules.nodes.area == "multiple_nodes"
    assert rules.nodes.multi_node_max_kw == 167_000  # 167 MW per multi-node aggregation
    assert rules.utility_review.days == 60
    model = rules.participation["der_aggregator"]
    assert model.order_2222 and not model.in_force
    assert model.effective_on == date(2028, 2, 2)
    assert rules.participation["demand_resource"].in_force
    assert rules.source_of("participation.der_aggregator.effective_on").date == "2024-09"


def test_nyiso_figures() -> None:
    rules = REGISTRY["NYISO"].in_force(date(2026, 11, 27))
    assert rules.min_aggregation_kw == 100
    assert rules.der_min_kw == 10
    assert rules.nodes.area == "transmission_node"
    assert rules.metering.interval_meter_required is True
    assert rules.telemetry.required is True
    assert rules.participation["der_aggregation"].order_2222


def test_caiso_lowered_its_minimum_from_500_to_100_kw() -> None:
    before = REGISTRY["CAISO"].in_force(date(2020, 1, 1))
    after = REGISTRY["CAISO"].in_force(date(2026, 11, 27))
    assert (before.min_aggregation_kw, after.min_aggregation_kw) == (500, 100)
    assert not before.participation["dera"].order_2222
    assert after.participation["dera"].order_2222
    for rules in (before, after):
        assert rules.telemetry.required_at_or_above_kw == 10_000  # 10 MW
        assert rules.nodes.area == "multiple_nodes"
    assert (after.utility_review.days, after.utility_review.day_kind) == (30, "business")
    assert before.utility_review.days is None


def test_miso_figures() -> None:
    rules = REGISTRY["MISO"].in_force(date(2026, 11, 27))
    assert rules.min_aggregation_kw == 100
    assert rules.nodes.area == "pricing_node"
    assert rules.metering.per_der is True
    model = rules.participation["der_aggregation"]
    assert model.order_2222 and not model.in_force  # full implementation in 2030


def test_isone_figures() -> None:
    rules = REGISTRY["ISONE"].in_force(date(2026, 11, 27))
    assert rules.min_aggregation_kw == 100
    assert rules.participation["der_aggregation"].in_force is None  # date not found
    assert rules.participation["demand_response"].in_force


def test_ercot_figures() -> None:
    rules = REGISTRY["ERCOT"].in_force(date(2026, 11, 27))
    assert rules.min_aggregation_kw == 100
    assert rules.der_max_kw == 1000  # per premise
    assert rules.nodes.area == "load_zone"
    assert not rules.participation["ader_pilot"].order_2222


@pytest.mark.parametrize("iso", [i for i in ISOS if i != "PJM"])
def test_isos_without_a_nexwatt_resource_have_no_zones(iso: str) -> None:
    rules = REGISTRY[iso].in_force(date(2026, 11, 27))
    assert rules.zones == {}
    assert rules.resource_prefix == f"NXW-{iso}-"
    assert "no resource registered" in rules.notes["zones"]
