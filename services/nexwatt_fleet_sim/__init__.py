"""fleet simulator: plays the inverter gateways of a fleet of solar + storage assets.

Streams `telemetry.interval` for every asset at its own interval from a simple physical model
(`nexwatt_fleet_sim.physics`: clear-sky-shaped PV with daily weather, household load, a
battery that charges from PV surplus outside events and, at homes, covers the load
(self-consumption), within its own ratings and its coupling's limits), except the SolarEdge
sites: their telemetry goes to `telemetry.raw` in SolarEdge's own formats
(`nexwatt_fleet_sim.solaredge`: storageData per interval, powerDetails per quarter hour, local
times in `NEXWATT_SIM_SITE_TIMEZONE`), for telemetry-ingest to normalize. It plays the gateways
that command the assets (homes: their vendor's cloud connector; commercial sites: their own,
`nexwatt_fleet_sim.fleet.gateway_id`): it obeys `asset.command` setpoints within physical limits
and answers each command message with one message on `asset.command-ack`; a share of commands
(`NEXWATT_SIM_LOST_COMMAND_FRACTION`) is lost the first time a gateway sees them.
Before its live loop, it publishes `NEXWATT_SIM_HISTORY_DAYS` days of hourly readings per asset
on `telemetry.interval` (`nexwatt_fleet_sim.history`), the days before the start that customer
baselines are computed from. Runs on an accelerated event clock. Some assets can be offline (no
live telemetry, no acks), some under-respond (acknowledge, then deliver less), some refuse.
"""
