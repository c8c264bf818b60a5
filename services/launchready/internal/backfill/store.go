package backfill

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/pg"
)

// Schema is the Postgres schema the backfill command owns.
const Schema = "backfill"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate applies the backfill schema's migrations.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pg.MigrateDir(ctx, pool, Schema, migrationFiles, "migrations")
}

// Run is one backfill run's window and how far it has read it.
type Run struct {
	ID          int64
	Types       string
	Start, End  time.Time
	NextUntil   time.Time
	Read        int64
	Published   int64
	Known       int64
	CompletedAt *time.Time
}

// store is the runs table.
type store struct {
	pool *pgxpool.Pool
}

const runColumns = `id, types, window_start, window_end, next_until, events_read, published, known, completed_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.Types, &r.Start, &r.End, &r.NextUntil, &r.Read, &r.Published, &r.Known, &r.CompletedAt)
	return r, err
}

// unfinished are the runs over types that were interrupted, oldest first.
func (s *store) unfinished(ctx context.Context, types string) ([]Run, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+runColumns+` FROM backfill.runs WHERE types = $1 AND completed_at IS NULL ORDER BY id`, types)
	if err != nil {
		return nil, fmt.Errorf("unfinished runs: %w", err)
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("unfinished runs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// lastEnd is where the latest complete run over types ended; zero when
// there is none.
func (s *store) lastEnd(ctx context.Context, types string) (time.Time, error) {
	var end *time.Time
	err := s.pool.QueryRow(ctx, `SELECT max(window_end) FROM backfill.runs WHERE types = $1 AND completed_at IS NOT NULL`, types).Scan(&end)
	if err != nil || end == nil {
		return time.Time{}, err
	}
	return *end, nil
}

func (s *store) create(ctx context.Context, types string, start, end time.Time) (Run, error) {
	r, err := scanRun(s.pool.QueryRow(ctx, `INSERT INTO backfill.runs (types, window_start, window_end, next_until)
		VALUES ($1, $2, $3, $3) RETURNING `+runColumns, types, start, end))
	if err != nil {
		return Run{}, fmt.Errorf("record run: %w", err)
	}
	return r, nil
}

// advance records that everything after nextUntil is published, with the
// run's counts.
func (s *store) advance(ctx context.Context, r Run) error {
	_, err := s.pool.Exec(ctx, `UPDATE backfill.runs SET next_until = $2, events_read = $3, published = $4, known = $5, updated_at = now()
		WHERE id = $1`, r.ID, r.NextUntil, r.Read, r.Published, r.Known)
	if err != nil {
		return fmt.Errorf("record progress of run %d: %w", r.ID, err)
	}
	return nil
}

func (s *store) complete(ctx context.Context, r Run) error {
	_, err := s.pool.Exec(ctx, `UPDATE backfill.runs SET next_until = window_start, events_read = $2, published = $3, known = $4,
		updated_at = now(), completed_at = now() WHERE id = $1`, r.ID, r.Read, r.Published, r.Known)
	if err != nil {
		return fmt.Errorf("complete run %d: %w", r.ID, err)
	}
	return nil
}

// ErrBusy: another backfill holds the lock.
var ErrBusy = errors.New("another backfill is running against this database")

// lock holds the backfill's advisory lock on a connection of its own until
// release is called, so two runs never interleave their marks.
func (s *store) lock(ctx context.Context) (release func(), err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("backfill lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('launchready backfill'))`).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("backfill lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, ErrBusy
	}
	return func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('launchready backfill'))`)
		conn.Release()
	}, nil
}
