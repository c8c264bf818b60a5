-- Events of a customer that billing-state gave up on: each stored in
-- BILLING_DLQ. While one is neither applied (a replay that succeeded
-- leaves its processed_events row) nor cleared by ReconcileCustomer, the
-- customer's display is the error state "status unknown".
CREATE TABLE dead_letters (
    event_id    text PRIMARY KEY,
    customer_id text NOT NULL,
    event_type  text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_customer_idx ON dead_letters (customer_id);
