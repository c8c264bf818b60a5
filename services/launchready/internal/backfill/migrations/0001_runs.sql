-- What each `launchready backfill` run has read of its window. Stripe lists
-- events newest first, so a run reads its window from the top down: every
-- event created after next_until is published, and [window_start,
-- next_until] is what is left. An interrupted run is continued from there,
-- whatever later runs have read since.
CREATE TABLE runs (
    id           bigserial PRIMARY KEY,
    -- The event types filtered on, sorted and comma-separated; '' is all.
    types        text NOT NULL DEFAULT '',
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    -- Inclusive: events created in the same second as the oldest one
    -- published may be on the next page, so that second is read again.
    next_until   timestamptz NOT NULL,
    events_read  bigint NOT NULL DEFAULT 0,
    published    bigint NOT NULL DEFAULT 0,
    known        bigint NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CHECK (window_start <= window_end)
);
CREATE INDEX runs_unfinished_idx ON runs (types, id) WHERE completed_at IS NULL;
CREATE INDEX runs_completed_idx ON runs (types, window_end) WHERE completed_at IS NOT NULL;
