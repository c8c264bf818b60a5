-- crm-sync's own schema. Three parts:
--   * delivery bookkeeping: processed_events, sync_log;
--   * a minimal mirror of each customer's billing objects, fed by the same
--     events billing-state reads, so pkg/canonical derives the same status
--     here as there;
--   * what the CRM holds: contact and deal ids, and the last state pushed.

CREATE TABLE processed_events (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    customer_id  text NOT NULL DEFAULT '',
    outcome      text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per customer. Profile fields carry per-field watermarks: the
-- created time and id of the event that set them, and whether that event
-- was a customer.* event (authoritative) or another object that merely
-- named an email. A field changes only when the incoming event is
-- authoritative over the stored one, or as authoritative and newer, or the
-- same second with a greater event id, so the final value never depends on
-- delivery order.
CREATE TABLE customers (
    customer_id              text PRIMARY KEY,
    email                    text NOT NULL DEFAULT '',
    email_created            timestamptz,
    email_event_id           text NOT NULL DEFAULT '',
    email_authoritative      boolean NOT NULL DEFAULT false,
    name                     text NOT NULL DEFAULT '',
    name_created             timestamptz,
    name_event_id            text NOT NULL DEFAULT '',
    user_id                  text NOT NULL DEFAULT '',
    user_id_created          timestamptz,
    user_id_event_id         text NOT NULL DEFAULT '',
    user_id_authoritative    boolean NOT NULL DEFAULT false,
    -- Monotonic facts: no ordering needed.
    deleted                  boolean NOT NULL DEFAULT false,
    last_payment_failed_at   timestamptz,
    livemode                 boolean NOT NULL DEFAULT false,
    -- The newest event applied, whatever arrived last.
    last_event_id            text NOT NULL DEFAULT '',
    last_event_created       timestamptz,
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- The stored snapshot of each subscription is pkg/canonical's own
-- Subscription value (JSON), replaced only when canonical.DecideSnapshot
-- says the incoming snapshot is newer.
CREATE TABLE subscriptions (
    subscription_id text PRIMARY KEY,
    customer_id     text NOT NULL,
    snapshot        jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

-- Payments, keyed by payment intent when known (a checkout session and its
-- charge share it), else by checkout session or charge id. A payment is a
-- one-time purchase when a checkout in payment mode made it, as in
-- billing-state. Every column only moves one way, so merging is order
-- independent.
CREATE TABLE purchases (
    purchase_key        text PRIMARY KEY,
    customer_id         text NOT NULL,
    checkout_session_id text NOT NULL DEFAULT '',
    payment_intent_id   text NOT NULL DEFAULT '',
    charge_id           text NOT NULL DEFAULT '',
    from_checkout       boolean NOT NULL DEFAULT false,
    paid                boolean NOT NULL DEFAULT false,
    awaiting_async      boolean NOT NULL DEFAULT false,
    async_failed        boolean NOT NULL DEFAULT false,
    amount              bigint NOT NULL DEFAULT 0,
    amount_refunded     bigint NOT NULL DEFAULT 0,
    refunded            boolean NOT NULL DEFAULT false,
    currency            text NOT NULL DEFAULT '',
    created             timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX purchases_customer ON purchases (customer_id);
CREATE INDEX purchases_charge ON purchases (charge_id) WHERE charge_id <> '';

-- Disputes name a charge, not a customer: charge → customer comes from
-- charge, invoice and payment intent events, in any order.
CREATE TABLE charges (
    charge_id         text PRIMARY KEY,
    customer_id       text NOT NULL,
    payment_intent_id text NOT NULL DEFAULT ''
);

-- Refund objects (refund.*, charge.refund.updated): a purchase's refunded
-- amount is the larger of its charge's amount_refunded and their sum.
CREATE TABLE refunds (
    refund_id          text PRIMARY KEY,
    charge_id          text NOT NULL DEFAULT '',
    payment_intent_id  text NOT NULL DEFAULT '',
    amount             bigint NOT NULL DEFAULT 0,
    status             text NOT NULL DEFAULT '',
    last_event_created timestamptz
);

CREATE TABLE disputes (
    dispute_id        text PRIMARY KEY,
    charge_id         text NOT NULL DEFAULT '',
    payment_intent_id text NOT NULL DEFAULT '',
    closed            boolean NOT NULL DEFAULT false,
    lost              boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disputes_charge ON disputes (charge_id);

-- What the CRM holds, per provider (switching CRM_PROVIDER starts afresh).
-- pushed is the document last written successfully; a change is pushed
-- only when the newly derived document differs from it.
CREATE TABLE contacts (
    provider           text NOT NULL,
    customer_id        text NOT NULL,
    crm_id             text NOT NULL DEFAULT '',
    pushed             jsonb,
    pushed_hash        text NOT NULL DEFAULT '',
    last_event_id      text NOT NULL DEFAULT '',
    last_event_created timestamptz,
    synced_at          timestamptz,
    PRIMARY KEY (provider, customer_id)
);

CREATE TABLE deals (
    provider           text NOT NULL,
    subscription_id    text NOT NULL,
    customer_id        text NOT NULL,
    crm_id             text NOT NULL DEFAULT '',
    associated_to      text NOT NULL DEFAULT '',
    pushed             jsonb,
    pushed_hash        text NOT NULL DEFAULT '',
    last_event_id      text NOT NULL DEFAULT '',
    last_event_created timestamptz,
    synced_at          timestamptz,
    PRIMARY KEY (provider, subscription_id)
);
CREATE INDEX deals_customer ON deals (provider, customer_id);

-- Every outbound call and every decision not to call, failures included
-- (those are written outside the rolled-back transaction).
CREATE TABLE sync_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    event_id        text NOT NULL,
    event_type      text NOT NULL DEFAULT '',
    customer_id     text NOT NULL DEFAULT '',
    provider        text NOT NULL,
    call            text NOT NULL,
    object_id       text NOT NULL DEFAULT '',
    status          integer NOT NULL DEFAULT 0,
    outcome         text NOT NULL,
    duration_ms     integer NOT NULL DEFAULT 0,
    delivery        integer NOT NULL DEFAULT 0,
    detail          text NOT NULL DEFAULT ''
);
CREATE INDEX sync_log_event ON sync_log (event_id);
CREATE INDEX sync_log_customer ON sync_log (customer_id, at);
