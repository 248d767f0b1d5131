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

-- Answers published before this migration were kept as jsonb on the instruction: carry them
-- over as published, so a replayed instruction finds its answer and is never decided again.
INSERT INTO outbox (event_id, topic, key, value, published_at)
SELECT confirmed_event ->> 'id', 'dispatch.confirmed', resource_id,
       convert_to(confirmed_event::text, 'UTF8'), now()
FROM instructions WHERE confirmed_event IS NOT NULL
ON CONFLICT (event_id) DO NOTHING;
ALTER TABLE instructions DROP COLUMN confirmed_event;
