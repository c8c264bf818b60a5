-- One row per drift check, written when it ends: the staff console's
-- overview shows the last one (when, how many customers drifted, the
-- outcome). The metrics say the same to Prometheus but vanish with the
-- process; this outlives it.
CREATE TABLE drift_checks (
    id            bigserial PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    -- clean, drift or error, as lr_billing_drift_checks_total{outcome}.
    outcome       text NOT NULL,
    customers     integer NOT NULL DEFAULT 0,
    subscriptions integer NOT NULL DEFAULT 0,
    -- Why an errored check failed, secrets stripped.
    error         text NOT NULL DEFAULT ''
);
