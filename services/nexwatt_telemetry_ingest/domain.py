"""Pure rules of telemetry ingest."""

from __future__ import annotations

from collections.abc import Iterable

from nexwatt_shared.contracts import TelemetryInterval


def newest_per_asset(readings: Iterable[TelemetryInterval]) -> dict[str, TelemetryInterval]:
    """The reading with the latest interval start for each asset (ties: the later one)."""
    newest: dict[str, TelemetryInterval] = {}
    for r in readings:
        seen = newest.get(r.asset_id)
        if seen is None or r.interval_start >= seen.interval_start:
            newest[r.asset_id] = r
    return newest
