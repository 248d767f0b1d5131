"""telemetry-ingest: the normalization gateway of stage 1, and the historian.

Consumes `telemetry.raw` (vendor payloads: `formats`) and publishes standard readings on
`telemetry.interval`; consumes `telemetry.interval` and stores each reading once in PostgreSQL,
one series per asset and channel (a repeat changes nothing, an overlap is dead-lettered:
`nexwatt_shared.series`); answers each asset's coverage and newest values from it.
"""
