"""dispatch: answers ISO dispatch instructions within seconds, from its own availability view.

Keeps each asset's registration and, per channel (PV, SoC), its latest value in Redis (built
from `asset.registered` and `telemetry.interval`), so it works while onboarding, capacity-model
and settlement are down. An asset whose PV or SoC is unknown (reported missing) or stale is not
dispatched.
On a `dispatch.instruction` it allocates the MW over the resource's available assets, sends
setpoints on `asset.command`, waits a bounded time for `asset.command-ack`, records its answer
and publishes `dispatch.confirmed` from that record. Every instruction, command and ack is
logged in PostgreSQL.
"""
