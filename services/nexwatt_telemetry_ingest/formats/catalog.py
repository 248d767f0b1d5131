"""Every format telemetry-ingest reads, by name (the event type's tail on `telemetry.raw`)."""

from __future__ import annotations

from nexwatt_telemetry_ingest.formats import Format, enphase, generac, sma, solaredge, sunspec

FORMATS: dict[str, Format] = {
    f.name: f for module in (solaredge, enphase, sma, generac, sunspec) for f in module.FORMATS
}
