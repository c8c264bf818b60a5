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
	"github.com/launchready/launchready/pkg/stripeapi"
)

// Schema is the Postgres schema the backfill command owns.
const Schema = "backfill"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate applies the backfill schema's migrations.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	// The console shows the last run: its reader may SELECT.
	return pg.MigrateShared(ctx, pool, Schema, pg.MigrationsIn(migrationFiles, "migrations"))
}

// Run is one backfill run's window and how far it has read it.
type Run struct {
	ID         int64
	Types      string
	Start, End time.Time
	// NextUntil marks what is spooled: every event of the window created
	// after it is.
	NextUntil time.Time
	// Read counts the events spooled; Published, Known and Skipped those
	// published from the spool so far.
	Read, Published, Known, Skipped int64
	// ListedAt is set once the whole window is spooled.
	ListedAt    *time.Time
	CompletedAt *time.Time
}

// store is the runs table.
type store struct {
	pool *pgxpool.Pool
}

const runColumns = `id, types, window_start, window_end, next_until, events_read, published, known, skipped, listed_at, completed_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.Types, &r.Start, &r.End, &r.NextUntil, &r.Read, &r.Published, &r.Known, &r.Skipped, &r.ListedAt, &r.CompletedAt)
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

// lastPos is the listing position of the run's last spooled event (0
// when none is).
func (s *store) lastPos(ctx context.Context, run int64) (int64, error) {
	var pos int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(pos), 0) FROM backfill.spool WHERE run_id = $1`, run).Scan(&pos); err != nil {
		return 0, fmt.Errorf("spool of run %d: %w", run, err)
	}
	return pos, nil
}

// spool stores one listed page, evs[i] at listing position first+i, and
// records in the same statement that everything after nextUntil is
// spooled. An event already spooled (the mark's second is read again)
// keeps its first position. It sets r.Read to the events spooled in all.
func (s *store) spool(ctx context.Context, r *Run, evs []stripeapi.Event, first int64, nextUntil time.Time) error {
	ids, types := make([]string, len(evs)), make([]string, len(evs))
	created, pos := make([]time.Time, len(evs)), make([]int64, len(evs))
	payloads := make([][]byte, len(evs))
	for i, ev := range evs {
		ids[i], types[i], created[i], pos[i], payloads[i] = ev.ID, ev.Type, ev.Created, first+int64(i), ev.Raw
	}
	err := s.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO backfill.spool (run_id, event_id, event_type, created, pos, payload)
			SELECT $1, e.* FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bytea[]) AS e
			ON CONFLICT DO NOTHING RETURNING 1)
		UPDATE backfill.runs SET next_until = $7, events_read = events_read + (SELECT count(*) FROM ins), updated_at = now()
		WHERE id = $1 RETURNING events_read`, r.ID, ids, types, created, pos, payloads, nextUntil).Scan(&r.Read)
	if err != nil {
		return fmt.Errorf("spool page of run %d: %w", r.ID, err)
	}
	r.NextUntil = nextUntil
	return nil
}

// listed records that the run's whole window is spooled.
func (s *store) listed(ctx context.Context, r *Run) error {
	err := s.pool.QueryRow(ctx, `UPDATE backfill.runs SET next_until = window_start, listed_at = now(), updated_at = now()
		WHERE id = $1 RETURNING next_until, listed_at`, r.ID).Scan(&r.NextUntil, &r.ListedAt)
	if err != nil {
		return fmt.Errorf("record run %d listed: %w", r.ID, err)
	}
	return nil
}

// unpublished returns up to limit of the run's events not published yet,
// oldest first: by created, then in Stripe's order within the second (the
// reverse of the newest-first listing).
func (s *store) unpublished(ctx context.Context, run int64, limit int) ([]stripeapi.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT event_id, event_type, created, payload FROM backfill.spool
		WHERE run_id = $1 AND NOT published ORDER BY created, pos DESC LIMIT $2`, run, limit)
	if err != nil {
		return nil, fmt.Errorf("spool of run %d: %w", run, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (stripeapi.Event, error) {
		var ev stripeapi.Event
		var raw []byte
		err := row.Scan(&ev.ID, &ev.Type, &ev.Created, &raw)
		ev.Raw = raw
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("spool of run %d: %w", run, err)
	}
	return out, nil
}

// published records, in one statement, that the event is published (or
// skipped) and the run's counts.
func (s *store) published(ctx context.Context, r Run, eventID string) error {
	_, err := s.pool.Exec(ctx, `WITH p AS (UPDATE backfill.spool SET published = true WHERE run_id = $1 AND event_id = $2)
		UPDATE backfill.runs SET published = $3, known = $4, skipped = $5, updated_at = now() WHERE id = $1`,
		r.ID, eventID, r.Published, r.Known, r.Skipped)
	if err != nil {
		return fmt.Errorf("record %s published by run %d: %w", eventID, r.ID, err)
	}
	return nil
}

// complete records the run done and empties its spool.
func (s *store) complete(ctx context.Context, r Run) error {
	_, err := s.pool.Exec(ctx, `WITH d AS (DELETE FROM backfill.spool WHERE run_id = $1)
		UPDATE backfill.runs SET next_until = window_start, published = $2, known = $3, skipped = $4,
		updated_at = now(), completed_at = now() WHERE id = $1`, r.ID, r.Published, r.Known, r.Skipped)
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
