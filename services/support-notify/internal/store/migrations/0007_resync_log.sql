-- Staff resyncs (billing.resync.support-notify, see pkg/resync): one row
-- per request id, claimed before the customer's tickets are re-sent and
-- settled with the outcome, so a repeated request is answered from here
-- and sends nothing a second time.
CREATE TABLE resync_log (
    request_id   text PRIMARY KEY,
    customer_id  text NOT NULL,
    actor        text NOT NULL,
    reason       text NOT NULL,
    outcome      text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    requested_at timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz
);
CREATE INDEX resync_log_customer ON resync_log (customer_id, requested_at);
CREATE INDEX tickets_customer_open ON tickets (customer_id) WHERE status = 'open';
CREATE INDEX ticket_intents_customer_pending ON ticket_intents (customer_id) WHERE ticket_id IS NULL AND abandoned_at IS NULL;
