-- The console's own schema: staff accounts, their sessions and the audit
-- log of what staff did. Written only by the console.

-- One row per staff member. A local account has a password hash (argon2id,
-- PHC string); an account made by an OIDC sign-in has none. The role of an
-- OIDC account is its IdP groups' role at its last sign-in.
CREATE TABLE staff (
    id                   bigserial   PRIMARY KEY,
    email                text        NOT NULL,
    role                 text        NOT NULL CHECK (role IN ('viewer', 'support', 'billing_admin', 'owner')),
    source               text        NOT NULL CHECK (source IN ('local', 'oidc')),
    password_hash        text,
    must_change_password boolean     NOT NULL DEFAULT false,
    -- Consecutive failed sign-ins; reset by a good one. Past a few, the
    -- next attempt waits until next_attempt_at; past more, locked_until.
    failed_logins        integer     NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    locked_until         timestamptz,
    disabled             boolean     NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX staff_email ON staff (lower(email));

-- Sessions: the cookie holds a random token, the table its SHA-256, so a
-- read of this table signs nobody in. expires_at is the absolute end;
-- last_seen_at + the idle limit is the other.
CREATE TABLE sessions (
    token_hash   bytea       PRIMARY KEY,
    staff_id     bigint      NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    remote_addr  text        NOT NULL DEFAULT '',
    user_agent   text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_staff ON sessions (staff_id);

-- Append-only: every sign-in, failed sign-in, sign-out and staff action.
-- actor is the staff member's email (or the email tried, for a failure).
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    outcome     text        NOT NULL,
    customer_id text        NOT NULL DEFAULT '',
    target      text        NOT NULL DEFAULT '',
    reason      text        NOT NULL DEFAULT '',
    before      jsonb,
    after       jsonb,
    remote_addr text        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_customer ON audit_log (customer_id, id) WHERE customer_id <> '';
CREATE INDEX audit_log_actor ON audit_log (actor, id);
