-- Capacity auction offers: each offer's current state (the whole CapacityOffer as JSON, its
-- state and version as columns to lock and query on). Changes happen under a row lock.
CREATE TABLE offers (
    offer_id       text        PRIMARY KEY,
    resource_id    text        NOT NULL,
    delivery_year  text        NOT NULL,
    state          text        NOT NULL,
    version        integer     NOT NULL,
    updated_at     timestamptz NOT NULL,
    offer          jsonb       NOT NULL
);
CREATE INDEX offers_resource ON offers (resource_id, delivery_year);
-- A resource takes part in a delivery year's auction with one offer: two approvals of two
-- offers for the same resource and year cannot both commit.
CREATE UNIQUE INDEX offers_one_in_auction ON offers (resource_id, delivery_year)
    WHERE state IN ('approved', 'submitted', 'cleared');

-- Each offer change is recorded here in the transaction that makes it, then published to
-- capacity.offer from the record (nexwatt_shared.outbox): a crash in between loses nothing.
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
