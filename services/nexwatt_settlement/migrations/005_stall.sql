-- When a waiting window's coverage last grew: one stalled below the threshold (offline assets
-- that will not report) is filed as it is after NEXWATT_SETTLEMENT_STALL_S.
ALTER TABLE instructions ADD COLUMN covered_changed_at timestamptz NOT NULL DEFAULT now();
