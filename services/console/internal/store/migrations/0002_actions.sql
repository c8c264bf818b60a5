-- Staff actions (refunds, cancellations, plan changes) as the console saw
-- them: asked, waiting for a second staff member when the policy says so,
-- approved or rejected, then sent to billing-state's BillingAdminService
-- and its answer. id is the action id billing-state and Stripe see (the
-- Idempotency-Key comes from it), made when the form is drawn, so a second
-- submission of the same form is the same action.
CREATE TABLE actions (
    id             text        PRIMARY KEY,
    kind           text        NOT NULL CHECK (kind IN ('refund', 'cancel_subscription', 'change_plan')),
    customer_id    text        NOT NULL DEFAULT '',
    -- The payment or subscription acted on, and the request's own fields.
    target         text        NOT NULL,
    params         jsonb       NOT NULL,
    -- A refund's amount in the smallest currency unit (0 for other kinds).
    amount         bigint      NOT NULL DEFAULT 0,
    reason         text        NOT NULL,
    requested_by   text        NOT NULL,
    requested_role text        NOT NULL,
    state          text        NOT NULL CHECK (state IN ('pending_approval', 'rejected', 'submitted', 'succeeded', 'failed')),
    approved_by    text        NOT NULL DEFAULT '',
    decided_reason text        NOT NULL DEFAULT '',
    -- Stripe's object (re_..., sub_...) or its error code.
    stripe_object_id text      NOT NULL DEFAULT '',
    error_code     text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actions_pending ON actions (created_at) WHERE state = 'pending_approval';
CREATE INDEX actions_customer ON actions (customer_id, created_at) WHERE customer_id <> '';
