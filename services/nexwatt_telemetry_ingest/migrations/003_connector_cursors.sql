-- How far each connector has published each site's format: the end of the last window the
-- broker acknowledged. A restart continues from here; the first run starts --backfill-hours back.
CREATE TABLE connector_cursors (
    vendor         text        NOT NULL,
    site_id        text        NOT NULL,
    format         text        NOT NULL,
    covered_until  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor, site_id, format)
);
