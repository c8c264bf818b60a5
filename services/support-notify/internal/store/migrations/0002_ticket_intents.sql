-- Ticket creations about to be sent to Zendesk, committed before the call
-- so they outlive a crash between the call and the commit that records the
-- ticket. The next event about the object replays the exact request with
-- the exact Idempotency-Key, gets the ticket Zendesk already opened, and
-- records it, instead of opening a second one and orphaning the first.
CREATE TABLE ticket_intents (
    idempotency_key text        PRIMARY KEY,
    object_key      text        NOT NULL,
    event_id        text        NOT NULL,
    customer_id     text        NOT NULL DEFAULT '',
    request         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    ticket_id       bigint,
    done_at         timestamptz,
    -- Set when Zendesk refused the replay for good, so one bad request does
    -- not block every later event about the object.
    abandoned_at    timestamptz
);
CREATE INDEX ticket_intents_pending ON ticket_intents (object_key) WHERE ticket_id IS NULL AND abandoned_at IS NULL;
