package readiness_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/services/launchready/internal/readiness"
)

// The schema the launchready command makes is readable by the staff
// console's role, as every service's own schema is, and only readable: the
// console's overview shows the last smoke run from it.
func TestEnsureSchemaLetsTheConsoleReadOnly(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	pool, err := pg.Open(ctx, url, pg.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// Twice: a second run finds everything made and grants again.
	for range 2 {
		if err := readiness.EnsureSchema(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	finished := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	if err := readiness.RecordSmoke(ctx, pool, "run-1", []readiness.SmokeResult{{Channel: "webhook", OK: true, Latency: 840 * time.Millisecond}}, finished); err != nil {
		t.Fatal(err)
	}
	if _, err := readiness.RecordDoctor(ctx, pool, map[string]string{"status": "ok"}); err != nil {
		t.Fatal(err)
	}

	reader, err := pg.Open(ctx, url, pg.WithMaxConns(2), pg.WithRole(pg.ConsoleReaderRole))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var channel string
	var at time.Time
	if err := reader.QueryRow(ctx, `SELECT channel, finished_at FROM readiness.smoke_results WHERE ok`).Scan(&channel, &at); err != nil || channel != "webhook" || !at.Equal(finished) {
		t.Fatalf("%s reads smoke result %q at %v (%v), want webhook at %v", pg.ConsoleReaderRole, channel, at, err, finished)
	}
	var reports int
	if err := reader.QueryRow(ctx, `SELECT count(*) FROM readiness.doctor_reports`).Scan(&reports); err != nil || reports != 1 {
		t.Fatalf("%s reads %d doctor reports (%v), want 1", pg.ConsoleReaderRole, reports, err)
	}
	_, err = reader.Exec(ctx, `DELETE FROM readiness.smoke_results`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("%s deleting smoke results: %v, want permission denied", pg.ConsoleReaderRole, err)
	}
}
