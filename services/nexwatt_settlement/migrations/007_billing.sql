-- Whether an interval is billing-quality meter data (a utility's own interval data, e.g. Green
-- Button or a Download My Data file): a window whose assets are all covered by it is final.
ALTER TABLE telemetry ADD COLUMN billing boolean NOT NULL DEFAULT false;
