-- Staff resyncs (billing.resync.crm-sync, see pkg/resync): one row per
-- request id, claimed before the customer's documents are pushed again and
-- settled with the outcome, so a repeated request is answered from here
-- and pushes nothing a second time.
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
