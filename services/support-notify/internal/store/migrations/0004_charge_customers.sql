-- Which customer each charge (and payment intent) belongs to, learned from
-- the charge, invoice, payment and checkout events this service sees, or
-- read from Stripe's API. A dispute names only its charge: this is how its
-- ticket and alert name the customer. A guest payment has no customer; its
-- row keeps the billing e-mail.
CREATE TABLE charge_customers (
    ref         text        PRIMARY KEY, -- ch_... or pi_...
    customer_id text        NOT NULL DEFAULT '',
    email       text        NOT NULL DEFAULT '',
    name        text        NOT NULL DEFAULT '',
    source      text        NOT NULL, -- event id, or "stripe_api"
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A ticket opened before its charge's customer was known: the charge it
-- waits on. The event that teaches the link adds the customer to it.
ALTER TABLE tickets ADD COLUMN awaiting_charge text NOT NULL DEFAULT '';
CREATE INDEX tickets_awaiting_charge ON tickets (awaiting_charge) WHERE awaiting_charge <> '';
