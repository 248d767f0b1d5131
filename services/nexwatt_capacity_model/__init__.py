"""capacity-model: what each ISO resource could deliver now, from its assets' latest state.

Consumes `asset.registered` (the newest version of each asset) and `telemetry.interval` (each
asset's newest interval, only ever moving forward in event time); keeps both in PostgreSQL;
recomputes the snapshot of every resource a batch touched and publishes it on
`capacity.snapshot` when its figures changed. Serves the last published snapshot over HTTP.
"""
