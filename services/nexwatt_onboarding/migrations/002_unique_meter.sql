-- A meter belongs to one asset at a time, or settlement and telemetry would count it twice. An
-- unenrolled asset frees its meter; a suspended one keeps it (it can come back). Registration
-- checks this under a per-meter advisory lock (store.lock_meter) to answer with a violation;
-- this index is the final guard should a writer ever skip that check.
CREATE UNIQUE INDEX assets_meter_in_use ON assets (meter_id) WHERE status <> 'unenrolled';
