-- Whether an asset has PV behind its inverter: a battery-only asset reports no PV, and its
-- capacity must not wait for it. Records stored before this knew no better: assume PV until
-- their next version (onboarding re-publishes every record's newest version on replay).
ALTER TABLE assets ADD COLUMN has_pv boolean NOT NULL DEFAULT true;
