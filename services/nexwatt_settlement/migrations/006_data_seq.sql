-- Counts data arrivals per window: a version computed before the latest arrival leaves the
-- window marked for a restatement (late data is never lost to a concurrent filing).
ALTER TABLE instructions ADD COLUMN data_seq bigint NOT NULL DEFAULT 0;
