"""telemetry-ingest: stores every interval reading once, and the latest reading per asset.

Consumes `telemetry.interval`; writes readings to PostgreSQL idempotently on
(asset_id, interval_start); keeps each asset's newest reading in Redis for fast lookups.
"""
