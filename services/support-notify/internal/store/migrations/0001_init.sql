-- support-notify's own schema. Every table here is written only by this
-- service; other services never read it.

-- One row per event the ticket consumer finished, written in the same
-- transaction as the ticket change, so a redelivery is skipped.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    outcome      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Zendesk tickets by the Stripe object they are about ("invoice:in_...",
-- "dispute:dp_...", "subscription:sub_...", "payment_intent:pi_...",
-- "event:evt_..."). At most one open ticket per object: later events about
-- it comment on that ticket.
CREATE TABLE tickets (
    id              bigserial   PRIMARY KEY,
    object_key      text        NOT NULL,
    ticket_id       bigint      NOT NULL,
    status          text        NOT NULL CHECK (status IN ('open', 'solved')),
    priority        text        NOT NULL,
    customer_id     text        NOT NULL DEFAULT '',
    opened_by_event text        NOT NULL UNIQUE,
    last_event_id   text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tickets_one_open_per_object ON tickets (object_key) WHERE status = 'open';
CREATE INDEX tickets_by_ticket_id ON tickets (ticket_id);

-- Objects a success event has settled (invoice paid, dispute closed). A
-- failure delivered after its own resolution opens nothing.
CREATE TABLE resolutions (
    object_key  text        PRIMARY KEY,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    resolved_at timestamptz NOT NULL DEFAULT now()
);

-- Alerts the alert channel accepted, deduplicated by event id: checked
-- before sending, recorded after acceptance.
CREATE TABLE alerts_sent (
    event_id        text             PRIMARY KEY,
    event_type      text             NOT NULL,
    customer_id     text             NOT NULL DEFAULT '',
    event_created   timestamptz      NOT NULL,
    sent_at         timestamptz      NOT NULL,
    latency_seconds double precision NOT NULL,
    late            boolean          NOT NULL
);
