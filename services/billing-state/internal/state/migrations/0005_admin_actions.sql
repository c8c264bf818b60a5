-- Staff actions made in Stripe through BillingAdminService. A row is
-- written as 'requested' before Stripe is called and completed with
-- Stripe's answer after; the action id is the Idempotency-Key's source, so
-- a second call with it returns this row instead of calling Stripe again.
CREATE TABLE admin_actions (
    action_id        text PRIMARY KEY,
    kind             text NOT NULL,
    customer_id      text NOT NULL DEFAULT '',
    actor_email      text NOT NULL,
    actor_role       text NOT NULL DEFAULT '',
    approved_by      text NOT NULL DEFAULT '',
    reason           text NOT NULL,
    request          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'requested'
                     CHECK (state IN ('requested', 'succeeded', 'failed')),
    stripe_object_id text NOT NULL DEFAULT '',
    stripe_response  jsonb,
    error_code       text NOT NULL DEFAULT '',
    requested_at     timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz
);
CREATE INDEX admin_actions_customer_idx ON admin_actions (customer_id, requested_at DESC);
