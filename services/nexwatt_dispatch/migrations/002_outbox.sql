-- Outputs recorded before they are published (nexwatt_shared.outbox): the first content
-- recorded under an event id is the only one ever published under it.
CREATE TABLE outbox (
    id            bigserial   PRIMARY KEY,
    event_id      text        NOT NULL UNIQUE,
    topic         text        NOT NULL,
    key           text,
    value         bytea       NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- The answer's bytes now live in the outbox (a jsonb copy could not be re-sent byte for byte).
ALTER TABLE instructions DROP COLUMN confirmed_event;
