-- The seed's per-asset tables (one command and one ack per asset, asset.command v1) are read by
-- nothing since commands go per gateway (003). Their rows move to the per-message log, each as
-- the one-asset message it was (the ack's data in version 1's shape), and the tables go.
INSERT INTO command_messages (command_id, instruction_id, revision, round, gateway_id,
                              asset_ids, setpoints_kw, limits_kw, recorded_at)
SELECT c.command_id, c.instruction_id, 1, 0, c.asset_id, ARRAY[c.asset_id], ARRAY[c.setpoint_kw],
       ARRAY[c.limit_kw], coalesce(i.received_at, now())
FROM commands c LEFT JOIN instructions i ON i.instruction_id = c.instruction_id AND i.revision = 1
ON CONFLICT (command_id) DO NOTHING;

INSERT INTO ack_messages (command_id, instruction_id, gateway_id, data, acked_at, received_at)
SELECT command_id, instruction_id, asset_id,
       jsonb_build_object('command_id', command_id, 'instruction_id', instruction_id,
                          'asset_id', asset_id, 'accepted', accepted,
                          'setpoint_kw', setpoint_kw, 'reason', reason, 'acked_at', acked_at),
       acked_at, received_at
FROM command_acks
ON CONFLICT (command_id) DO NOTHING;

DROP TABLE command_acks;
DROP TABLE commands;
