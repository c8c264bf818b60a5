-- Stripe lists events newest first, but a problem's start must reach the
-- consumers before its end (support-notify opens no ticket for a problem
-- already over). A run therefore lists its whole window into the spool
-- first, and only then publishes it oldest first. From here on next_until
-- marks what is spooled: every event created after it is in the spool.
ALTER TABLE runs ADD COLUMN listed_at timestamptz;
ALTER TABLE runs ADD COLUMN skipped bigint NOT NULL DEFAULT 0;

CREATE TABLE spool (
    run_id     bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    created    timestamptz NOT NULL,
    -- The position in the listing (newest first): within one second of
    -- created, a higher position is an older event in Stripe's order.
    pos        bigint NOT NULL,
    -- The event as listed, byte for byte.
    payload    bytea NOT NULL,
    published  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, event_id)
);
CREATE INDEX spool_unpublished_idx ON spool (run_id, created, pos DESC) WHERE NOT published;
