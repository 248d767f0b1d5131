"""Connectors: clients that fetch vendor telemetry (cloud APIs, local Modbus) and publish it,
as the vendor sent it, on `telemetry.raw`. Normalizing is not their job: telemetry-ingest's
formats read what they publish."""
