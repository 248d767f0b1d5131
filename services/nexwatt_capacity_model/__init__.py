"""capacity-model: what each ISO resource could deliver now, from its assets' latest state.

Consumes `asset.registered` (the newest version of each asset) and `telemetry.interval` (per
asset, the newest interval of each channel it needs, PV and SoC, each only ever moving forward
in event time; a channel reported missing is unknown, never 0); keeps both in PostgreSQL;
recomputes the snapshot of every resource a batch touched and publishes it on
`capacity.snapshot` when its figures changed. Serves the last published snapshot over HTTP.
"""
