"""ISO simulator: plays the ISO adapter. It registers nothing. `play`: it watches the event clock
on `telemetry.interval`, publishes one `dispatch.instruction` at a configured event time, then
reads `dispatch.confirmed` and `settlement.filed` and prints the dispatch event log. `auction`:
it answers each offer submitted on `capacity.offer` with its result on `capacity.clearing`."""
