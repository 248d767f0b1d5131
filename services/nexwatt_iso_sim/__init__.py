"""ISO simulator: plays the ISO adapter. It registers nothing; it watches the event clock on
`telemetry.interval`, publishes one `dispatch.instruction` at a configured event time, then
reads `dispatch.confirmed` and `settlement.filed` and prints the dispatch event log."""
