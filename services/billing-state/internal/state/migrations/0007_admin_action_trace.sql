-- The W3C traceparent of the span that first made a staff action. Every
-- retry of the action sends Stripe this same value in the object's metadata
-- (Stripe refuses an idempotency key reused with other parameters), and the
-- webhook the change causes links its trace to it.
ALTER TABLE admin_actions ADD COLUMN traceparent text NOT NULL DEFAULT '';
