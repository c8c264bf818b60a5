// Package pg opens the Postgres pool, applies each schema's embedded
// migrations and runs work in one transaction helper.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is the local development server.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/launchready?sslmode=disable"

// Option adjusts the pool configuration before it is opened.
type Option func(*pgxpool.Config)

// WithTracer installs a query tracer (the telemetry package provides one).
func WithTracer(t pgx.QueryTracer) Option {
	return func(c *pgxpool.Config) { c.ConnConfig.Tracer = t }
}

// WithMaxConns caps the pool size.
func WithMaxConns(n int32) Option {
	return func(c *pgxpool.Config) {
		if n > 0 {
			c.MaxConns = n
		}
	}
}

// WithIndexPlans is for a service whose statements are all index lookups
// by key (billing-state's are), prepared once per connection. Left to
// itself, Postgres plans an "= ANY($1)" statement again on every call (for
// a short array a custom plan looks cheaper than the generic one), and it
// keeps a generic plan built while a table was still small, with a
// sequential scan, until the table is next analyzed. This option makes
// each statement one generic plan, with sequential scans only where no
// index serves, and turns JIT off: a plan left with a disabled scan costs
// more than JIT's threshold, and compiling it took 300 ms a call. It is
// wrong for a statement whose best plan depends on its parameters
// ("(a = $1 OR $1 IS NULL) AND b = $2"): its generic plan cannot pick the
// index. A partial index serves a generic plan only if the statement
// repeats the index's predicate. A DATABASE_URL that sets any of these
// settings wins.
func WithIndexPlans() Option {
	return sessionDefaults(map[string]string{"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off", "jit": "off"})
}

// WithAsyncCommit makes the sessions commit without waiting for the WAL
// to reach disk (synchronous_commit=off): a commit is visible to every
// session at once, and durable a moment later, when Postgres's WAL writer
// or any synchronous commit flushes it. Until then a crash of Postgres
// (not of the service) loses it. A service that uses it must not let
// anything outside the database depend on a commit before it is durable;
// billing-state holds its JetStream acks and its outbox publishes until
// then (state.FlushGate). A DATABASE_URL that sets synchronous_commit wins.
func WithAsyncCommit() Option {
	return sessionDefaults(map[string]string{"synchronous_commit": "off"})
}

// WithApplicationName names the sessions in pg_stat_activity, so an
// operator sees which service holds a connection. A DATABASE_URL that sets
// application_name itself wins.
func WithApplicationName(name string) Option {
	if name == "" {
		return func(*pgxpool.Config) {}
	}
	return sessionDefaults(map[string]string{"application_name": name})
}

// sessionDefaults sets session settings the connection string did not.
func sessionDefaults(settings map[string]string) Option {
	return func(c *pgxpool.Config) {
		for k, v := range settings {
			if _, set := c.ConnConfig.RuntimeParams[k]; !set {
				c.ConnConfig.RuntimeParams[k] = v
			}
		}
	}
}

// Open returns a pool for url. It does not wait for the server: a service
// starts while Postgres is down and reports it through readiness.
func Open(ctx context.Context, url string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx echoes the URL, password included, in its parse errors.
		return nil, errors.New("parse DATABASE_URL: invalid connection string")
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	cfg.HealthCheckPeriod = 5 * time.Second
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return pool, nil
}

// EnsureDatabase creates the database named in url when it does not exist,
// connecting to the server's "postgres" database to do so.
func EnsureDatabase(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return errors.New("parse DATABASE_URL: invalid URL")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("connect to create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created by a racing peer
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Migrate applies the *.sql files of migrations, in name order, to schema.
// Each file runs once, in its own transaction, recorded in
// <schema>.schema_migrations. An advisory lock keeps concurrent replicas from
// racing. Files must be named so that their order is their sort order
// (0001_init.sql, 0002_....sql).
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string, migrations fs.FS) error {
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	defer conn.Release()
	lockKey := "launchready.migrate." + schema
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, lockKey); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", schema, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, lockKey) //nolint:errcheck
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident+`;
		CREATE TABLE IF NOT EXISTS `+ident+`.schema_migrations (
			name text PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate %s: bootstrap: %w", schema, err)
	}
	for _, name := range names {
		body, err := fs.ReadFile(migrations, name)
		if err != nil {
			return fmt.Errorf("migrate %s: read %s: %w", schema, name, err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `INSERT INTO `+ident+`.schema_migrations (name) VALUES ($1) ON CONFLICT DO NOTHING`, name)
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, string(body))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %s: %w", schema, name, err)
		}
	}
	return nil
}

// Pending lists the migrations of schema not yet applied, in the order
// Migrate would apply them: all of them when the schema has never been
// migrated.
func Pending(ctx context.Context, pool *pgxpool.Pool, schema string, migrations fs.FS) ([]string, error) {
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, "schema_migrations"}.Sanitize()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("pending migrations of %s: %w", schema, err)
	}
	if !exists {
		return names, nil
	}
	rows, err := pool.Query(ctx, `SELECT name FROM `+pgx.Identifier{schema}.Sanitize()+`.schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("pending migrations of %s: %w", schema, err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pending migrations of %s: %w", schema, err)
	}
	done := make(map[string]bool, len(applied))
	for _, n := range applied {
		done[n] = true
	}
	var pending []string
	for _, n := range names {
		if !done[n] {
			pending = append(pending, n)
		}
	}
	return pending, nil
}

// IsUnavailable reports whether err means the database could not be reached
// or the connection broke, i.e. a retry later may succeed.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P0x: admin shutdown, crash
		// shutdown, cannot connect now; 40001/40P01: serialization and
		// deadlock, which a retry resolves; 53300: too many connections;
		// 55000: "database is not currently accepting connections", what an
		// operator's ALLOW_CONNECTIONS false looks like to a client.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") ||
			pgErr.Code == "40001" || pgErr.Code == "40P01" || pgErr.Code == "53300" || pgErr.Code == "55000"
	}
	// Anything that is not a server error is a transport error.
	return !errors.Is(err, pgx.ErrNoRows)
}
