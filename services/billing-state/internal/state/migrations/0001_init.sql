-- Canonical billing state. Every write happens in one transaction per
-- Stripe event together with its processed_events, audit_log and outbox rows.

CREATE TABLE customers (
    id                     text PRIMARY KEY,
    email                  text NOT NULL DEFAULT '',
    name                   text NOT NULL DEFAULT '',
    user_id                text NOT NULL DEFAULT '',
    livemode               boolean NOT NULL DEFAULT false,
    -- true until a customer.* event describes the customer: events may name
    -- a customer before Stripe's customer.created reaches us.
    placeholder            boolean NOT NULL DEFAULT true,
    deleted                boolean NOT NULL DEFAULT false,
    -- created time of the customer.* event the profile came from, to keep
    -- an older customer.updated from overwriting a newer one.
    profile_event_created  timestamptz,
    profile_event_id       text NOT NULL DEFAULT '',
    profile_event_type     text NOT NULL DEFAULT '',
    last_payment_failed_at timestamptz,
    needs_reconciliation   boolean NOT NULL DEFAULT false,
    -- The derived CustomerStatus (protojson) and its searchable parts.
    status                 text NOT NULL DEFAULT 'none',
    entitled               boolean NOT NULL DEFAULT false,
    status_json            jsonb,
    last_event_id          text NOT NULL DEFAULT '',
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_email_idx ON customers (lower(email)) WHERE email <> '';
CREATE INDEX customers_user_id_idx ON customers (user_id) WHERE user_id <> '';

CREATE TABLE subscriptions (
    id                        text PRIMARY KEY,
    customer_id               text NOT NULL REFERENCES customers (id),
    status                    text NOT NULL DEFAULT '',
    price_id                  text NOT NULL DEFAULT '',
    created                   timestamptz,
    current_period_end        timestamptz,
    trial_end                 timestamptz,
    cancel_at_period_end      boolean NOT NULL DEFAULT false,
    deleted                   boolean NOT NULL DEFAULT false,
    quantity                  bigint NOT NULL DEFAULT 0,
    unit_amount               bigint NOT NULL DEFAULT 0,
    interval                  text NOT NULL DEFAULT '',
    interval_count            bigint NOT NULL DEFAULT 0,
    currency                  text NOT NULL DEFAULT '',
    user_id                   text NOT NULL DEFAULT '',
    livemode                  boolean NOT NULL DEFAULT false,
    last_event_id             text NOT NULL DEFAULT '',
    last_event_type           text NOT NULL DEFAULT '',
    last_event_created        timestamptz,
    -- previous_attributes of the last applied event, to order same-second
    -- snapshots (NULL: the attribute did not change).
    prev_status               text,
    prev_cancel_at_period_end boolean,
    prev_price_id             text,
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_customer_idx ON subscriptions (customer_id);
CREATE INDEX subscriptions_user_id_idx ON subscriptions (user_id) WHERE user_id <> '';

-- Payments outside invoices. id is the payment intent when known (a
-- checkout session, its payment intent and its charge are one purchase),
-- else the checkout session or charge id. Only rows from a checkout session
-- in payment mode count as one-time purchases: from API version basil on a
-- charge no longer says whether it paid a subscription invoice, so a bare
-- charge could be a renewal. Charge and payment intent events still record
-- their facts here (paid, refunds) for the purchase they belong to, in
-- whatever order they arrive.
CREATE TABLE payments (
    id                  text PRIMARY KEY,
    customer_id         text NOT NULL REFERENCES customers (id),
    checkout_session_id text NOT NULL DEFAULT '',
    charge_id           text NOT NULL DEFAULT '',
    payment_intent_id   text NOT NULL DEFAULT '',
    from_checkout       boolean NOT NULL DEFAULT false,
    -- Monotonic facts: once true they stay true, so no ordering is needed.
    paid                boolean NOT NULL DEFAULT false,
    awaiting_async      boolean NOT NULL DEFAULT false,
    async_failed        boolean NOT NULL DEFAULT false,
    refunded            boolean NOT NULL DEFAULT false,
    amount              bigint NOT NULL DEFAULT 0,
    amount_refunded     bigint NOT NULL DEFAULT 0,
    currency            text NOT NULL DEFAULT '',
    user_id             text NOT NULL DEFAULT '',
    created             timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_customer_idx ON payments (customer_id);
CREATE INDEX payments_user_id_idx ON payments (user_id) WHERE user_id <> '';

CREATE TABLE refunds (
    id                 text PRIMARY KEY,
    customer_id        text NOT NULL REFERENCES customers (id),
    charge_id          text NOT NULL DEFAULT '',
    payment_intent_id  text NOT NULL DEFAULT '',
    amount             bigint NOT NULL DEFAULT 0,
    status             text NOT NULL DEFAULT '',
    last_event_created timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_customer_idx ON refunds (customer_id);

-- Latest state of each invoice.
CREATE TABLE invoices (
    id                   text PRIMARY KEY,
    customer_id          text NOT NULL REFERENCES customers (id),
    subscription_id      text NOT NULL DEFAULT '',
    status               text NOT NULL DEFAULT '',
    amount_due           bigint NOT NULL DEFAULT 0,
    amount_paid          bigint NOT NULL DEFAULT 0,
    currency             text NOT NULL DEFAULT '',
    attempt_count        bigint NOT NULL DEFAULT 0,
    next_payment_attempt timestamptz,
    charge_id            text NOT NULL DEFAULT '',
    payment_intent_id    text NOT NULL DEFAULT '',
    last_event_id        text NOT NULL DEFAULT '',
    last_event_created   timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_customer_idx ON invoices (customer_id);

-- How final an invoice status is, to order same-second invoice events.
CREATE FUNCTION invoice_status_rank(status text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'draft' THEN 1 WHEN 'open' THEN 2 WHEN 'uncollectible' THEN 3
        WHEN 'paid' THEN 4 WHEN 'void' THEN 4 WHEN 'deleted' THEN 5 ELSE 0 END
$$;

CREATE TABLE disputes (
    id                 text PRIMARY KEY,
    customer_id        text NOT NULL REFERENCES customers (id),
    charge_id          text NOT NULL DEFAULT '',
    payment_intent_id  text NOT NULL DEFAULT '',
    status             text NOT NULL DEFAULT '',
    reason             text NOT NULL DEFAULT '',
    amount             bigint NOT NULL DEFAULT 0,
    currency           text NOT NULL DEFAULT '',
    -- A dispute only moves toward closed, and lost never turns back.
    closed             boolean NOT NULL DEFAULT false,
    lost               boolean NOT NULL DEFAULT false,
    last_event_created timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disputes_customer_idx ON disputes (customer_id);

-- Charge and payment intent ids → customer, learned from charge, invoice,
-- payment_intent and checkout events: disputes and refunds name only a
-- charge.
CREATE TABLE payment_refs (
    ref         text PRIMARY KEY,
    customer_id text NOT NULL,
    learned_at  timestamptz NOT NULL DEFAULT now()
);

-- Events naming a charge whose customer is still unknown after the retries.
-- They are applied as soon as an event teaches the charge's customer, or by
-- ReconcileCustomer; nothing is dropped.
CREATE TABLE unresolved_events (
    event_id    text PRIMARY KEY,
    event_type  text NOT NULL,
    ref         text NOT NULL,
    event       bytea NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX unresolved_events_ref_idx ON unresolved_events (ref) WHERE resolved_at IS NULL;

CREATE TABLE processed_events (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    customer_id  text NOT NULL DEFAULT '',
    outcome      text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    customer_id   text NOT NULL,
    event_id      text NOT NULL DEFAULT '',
    event_type    text NOT NULL DEFAULT '',
    actor         text NOT NULL,
    action        text NOT NULL,
    before        jsonb,
    after         jsonb,
    event_created timestamptz,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_customer_idx ON audit_log (customer_id, id DESC);

-- The table owner cannot be denied UPDATE/DELETE by REVOKE, so a trigger
-- keeps the log append-only for every role.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    customer_id  text NOT NULL,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL;
