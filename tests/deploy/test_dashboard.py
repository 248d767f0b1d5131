"""deploy/grafana/dashboards/nexwatt.json: the panels the platform is watched by."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "nexwatt.json"


def _panels() -> list[dict[str, Any]]:
    return json.loads(DASHBOARD.read_text())["panels"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", [])]


def test_dashboard_is_provisionable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert "id" not in dashboard or dashboard["id"] is None  # Grafana assigns it
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_dashboard_covers_the_platform_metrics() -> None:
    exprs = " ".join(_exprs())
    for needle in (
        "rate(nexwatt_messages_consumed_total[1m])",
        "by (group, topic)",
        "nexwatt_messages_produced_total",
        "nexwatt_consumer_lag",
        "nexwatt_dead_letters_total",
        "histogram_quantile(0.95, sum by (le) (rate(nexwatt_dispatch_confirm_seconds_bucket",
        "nexwatt_dispatch_mw_requested",
        "nexwatt_dispatch_mw_confirmed",
        "nexwatt_settlements_filed_total",
        "nexwatt_settlement_failures_total",
        "sum by (format) (rate(nexwatt_ingest_raw_normalized_total[1m]))",
        "nexwatt_ingest_channel_intervals_stored_total",
    ):
        assert needle in exprs, needle


def test_dashboard_exprs_are_balanced() -> None:
    for expr in _exprs():
        assert expr.count("(") == expr.count(")"), expr
        assert expr.count("[") == expr.count("]"), expr
        assert expr.count("{") == expr.count("}"), expr
