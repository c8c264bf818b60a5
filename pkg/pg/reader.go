package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ConsoleReaderRole is the role the staff console reads other services'
// schemas as. Each service's migration step creates it when missing and
// grants it USAGE and SELECT on that service's own schema, nothing more,
// so the console can show what a service holds and can never change it.
const ConsoleReaderRole = "launchready_console_ro"

// WithRole makes every session of the pool run as role (SET ROLE at
// connection start): its statements are checked against role's rights,
// not the login's. The login must be a member of role, or a superuser.
func WithRole(role string) Option {
	return func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["role"] = role }
}

// ensureReader creates ConsoleReaderRole when it does not exist. A role
// belongs to the whole server, so two services migrating at once may race
// to create it; the loser finds it made. It reports false when the login
// may not create roles and the role does not exist.
const ensureReader = `
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + ConsoleReaderRole + `') THEN
        BEGIN
            CREATE ROLE ` + ConsoleReaderRole + ` NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN NULL;
        END;
    END IF;
END $$`

func readerExists(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	if _, err := pool.Exec(ctx, ensureReader); err != nil {
		return false, fmt.Errorf("role %s: %w", ConsoleReaderRole, err)
	}
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, ConsoleReaderRole).Scan(&ok); err != nil {
		return false, fmt.Errorf("role %s: %w", ConsoleReaderRole, err)
	}
	return ok, nil
}

// GrantReader is the last step of a service's migrations: it creates
// ConsoleReaderRole when missing and grants it USAGE and SELECT on every
// table of schema, and SELECT on the tables later migrations add. It runs
// at every start, so it also covers tables made before it existed. When the
// login may not create roles and the role does not exist, it grants
// nothing and returns false: the console then shows nothing of schema
// until an administrator creates the role (the service's next start
// grants).
func GrantReader(ctx context.Context, pool *pgxpool.Pool, schema string) (bool, error) {
	ok, err := readerExists(ctx, pool)
	if err != nil || !ok {
		return false, err
	}
	ident, role := pgx.Identifier{schema}.Sanitize(), pgx.Identifier{ConsoleReaderRole}.Sanitize()
	_, err = pool.Exec(ctx, `GRANT USAGE ON SCHEMA `+ident+` TO `+role+`;
		GRANT SELECT ON ALL TABLES IN SCHEMA `+ident+` TO `+role+`;
		ALTER DEFAULT PRIVILEGES IN SCHEMA `+ident+` GRANT SELECT ON TABLES TO `+role)
	if err != nil {
		return false, fmt.Errorf("grant %s SELECT on %s: %w", ConsoleReaderRole, schema, err)
	}
	return true, nil
}

// JoinReader makes the pool's login a member of ConsoleReaderRole, so that
// a pool opened WithRole(ConsoleReaderRole) may SET ROLE to it (a
// superuser needs no membership). It reports false when the role does not
// exist or the login may not grant it: an administrator then runs
// GRANT launchready_console_ro TO <login>.
func JoinReader(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	ok, err := readerExists(ctx, pool)
	if err != nil || !ok {
		return false, err
	}
	var member bool
	if err := pool.QueryRow(ctx, `SELECT pg_has_role(current_user, $1, 'MEMBER')`, ConsoleReaderRole).Scan(&member); err != nil {
		return false, fmt.Errorf("role %s: %w", ConsoleReaderRole, err)
	}
	if member {
		return true, nil
	}
	if _, err := pool.Exec(ctx, `GRANT `+pgx.Identifier{ConsoleReaderRole}.Sanitize()+` TO CURRENT_USER`); err != nil {
		if IsInsufficientPrivilege(err) {
			return false, nil
		}
		return false, fmt.Errorf("join %s: %w", ConsoleReaderRole, err)
	}
	return true, nil
}

// IsInsufficientPrivilege reports whether Postgres refused err's statement
// for want of a right (SQLSTATE 42501).
func IsInsufficientPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// MigrateShared is Migrate followed by GrantReader: the migration step of
// a service whose schema the staff console reads. It warns, through slog's
// default logger, when the role could not be made.
func MigrateShared(ctx context.Context, pool *pgxpool.Pool, schema string, migrations fs.FS) error {
	if err := Migrate(ctx, pool, schema, migrations); err != nil {
		return err
	}
	ok, err := GrantReader(ctx, pool, schema)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	if !ok {
		slog.WarnContext(ctx, "the database login may not create roles: the staff console cannot read this schema until an administrator creates the role",
			"schema", schema, "role", ConsoleReaderRole)
	}
	return nil
}
