"""telemetry-ingest: stores every interval reading once, and the latest reading per asset.

Consumes `telemetry.interval`; writes readings to PostgreSQL as one series per asset (a repeat
changes nothing, a reading overlapping a stored interval is dead-lettered: `nexwatt_shared.series`);
keeps each asset's newest reading in Redis for fast lookups.
"""
