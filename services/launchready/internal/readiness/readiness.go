// Package readiness is the Postgres schema "readiness" that the launchready
// command writes and others read: the smoke runs' results per channel
// (readiness.smoke_results, shown by the console and exported by
// support-notify as lr_smoke_last_success_timestamp_seconds) and the
// doctor's reports (readiness.doctor_reports). The command creates it on
// first use.
package readiness

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/pg"
)

// SmokeResult is one channel's outcome in one smoke run.
type SmokeResult struct {
	Channel string
	OK      bool
	Latency time.Duration
	Detail  string
}

// schemaSQL is the readiness schema: the smoke results the console shows
// and support-notify exports, and the doctor's reports. Written only by
// the launchready command.
const schemaSQL = `
CREATE SCHEMA IF NOT EXISTS readiness;
CREATE TABLE IF NOT EXISTS readiness.smoke_results (
    run_id      text        NOT NULL,
    channel     text        NOT NULL,
    ok          boolean     NOT NULL,
    latency_ms  bigint      NOT NULL,
    detail      text        NOT NULL DEFAULT '',
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, channel)
);
CREATE INDEX IF NOT EXISTS smoke_results_last ON readiness.smoke_results (channel, finished_at DESC);
CREATE TABLE IF NOT EXISTS readiness.doctor_reports (
    id         bigserial   PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    report     jsonb       NOT NULL
);`

// EnsureSchema creates the readiness tables when missing and lets the
// staff console read them (pg.GrantReader), as each service's migrations do
// for its own schema. Two runs racing on the first creation are serialised
// by an advisory lock.
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if err := createSchema(ctx, pool); err != nil {
		return err
	}
	ok, err := pg.GrantReader(ctx, pool, "readiness")
	switch {
	case pg.IsInsufficientPrivilege(err):
		// A login that uses the schema but does not own it (the doctor's,
		// after a smoke run made it) may not grant; the owner's next run
		// does. Its results are still worth keeping.
		slog.WarnContext(ctx, "this database login may not grant the staff console SELECT on readiness; the owner's next smoke run or doctor grants it",
			"schema", "readiness", "role", pg.ConsoleReaderRole)
	case err != nil:
		return fmt.Errorf("readiness schema: %w", err)
	case !ok:
		slog.WarnContext(ctx, "the database login may not create roles: the staff console cannot read the smoke results until an administrator creates the role",
			"schema", "readiness", "role", pg.ConsoleReaderRole)
	}
	return nil
}

func createSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("readiness schema: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('launchready:readiness', 7))`); err != nil {
		return fmt.Errorf("readiness schema: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("readiness schema: %w", err)
	}
	return tx.Commit(ctx)
}

// RecordSmoke stores a run's results.
func RecordSmoke(ctx context.Context, pool *pgxpool.Pool, runID string, results []SmokeResult, finished time.Time) error {
	for _, r := range results {
		if _, err := pool.Exec(ctx, `INSERT INTO readiness.smoke_results (run_id, channel, ok, latency_ms, detail, finished_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, channel) DO UPDATE SET ok = EXCLUDED.ok,
			latency_ms = EXCLUDED.latency_ms, detail = EXCLUDED.detail, finished_at = EXCLUDED.finished_at`,
			runID, r.Channel, r.OK, r.Latency.Milliseconds(), r.Detail, finished); err != nil {
			return fmt.Errorf("record smoke result %s: %w", r.Channel, err)
		}
	}
	return nil
}

// RecordDoctor stores a doctor report (any JSON-encodable value).
func RecordDoctor(ctx context.Context, pool *pgxpool.Pool, report any) (int64, error) {
	b, err := json.Marshal(report)
	if err != nil {
		return 0, fmt.Errorf("encode doctor report: %w", err)
	}
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO readiness.doctor_reports (report) VALUES ($1) RETURNING id`, string(b)).Scan(&id); err != nil {
		return 0, fmt.Errorf("record doctor report: %w", err)
	}
	return id, nil
}
