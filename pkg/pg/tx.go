package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tx is a pipelined transaction. Statements whose results nothing reads
// (writes, locks) are queued with Queue and travel with the next statement
// that needs an answer; BEGIN rides with the first of them and COMMIT with
// the last writes. A handler that locks, checks, writes and commits pays
// for two round trips instead of one per statement plus BEGIN and COMMIT.
// Each round trip costs both processes a few system calls and a context
// switch, so on a busy box the saving is CPU as much as latency.
//
// A queued statement's failure is reported by the call that carried it to
// Postgres, as a *StepError naming the step; the transaction is then
// aborted, and InTx rolls it back.
type Tx struct {
	conn    *pgxpool.Conn
	pending *pgx.Batch
	steps   []step
	// Owner is recorded with each statement queued from now on and
	// reported in its StepError: which part of a shared transaction (one
	// event of a batch, say) the statement belongs to.
	Owner int
}

type step struct {
	what  string
	owner int
	// dest, when set, receives the statement's one row (QueueScan).
	dest []any
}

// StepError is a queued statement's failure, reported by whichever later
// call carried it to Postgres.
type StepError struct {
	// Owner is Tx.Owner when the statement was queued.
	Owner int
	// Step is the name Queue was given.
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// InTx runs fn in one pipelined transaction on one connection: committed
// when fn returns nil, rolled back otherwise. It is the one way services
// write, so a state change, its processed_events row, its audit row and
// its outbox row commit together.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(*Tx) error) error {
	_, err := RunTx(ctx, pool, fn)
	return err
}

// RunTx is InTx that also reports, on failure, whether the connection was
// lost or ctx ended (as opposed to Postgres refusing a statement, or fn
// failing): a caller that retries piece by piece does not blame a
// statement for an outage.
func RunTx(ctx context.Context, pool *pgxpool.Pool, fn func(*Tx) error) (connLost bool, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return true, fmt.Errorf("acquire connection: %w", err)
	}
	// A connection released inside a transaction (a failed rollback) is
	// closed by the pool rather than reused.
	defer conn.Release()
	t := &Tx{conn: conn}
	t.Queue("begin", "BEGIN")
	if err = fn(t); err == nil {
		t.Queue("commit", "COMMIT")
		err = t.Flush(ctx)
	}
	if err != nil {
		lost := conn.Conn().IsClosed() || ctx.Err() != nil
		t.rollback(ctx)
		return lost, err
	}
	return false, nil
}

func (t *Tx) rollback(ctx context.Context) {
	t.pending, t.steps = nil, nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = t.conn.Exec(ctx, "ROLLBACK")
}

// Queue queues a statement whose result only matters if it fails; what
// names the step in that error.
func (t *Tx) Queue(what, sql string, args ...any) {
	if t.pending == nil {
		t.pending = &pgx.Batch{}
	}
	t.pending.Queue(sql, args...)
	t.steps = append(t.steps, step{what: what, owner: t.Owner})
}

// QueueScan queues a single-row read whose answer can wait for the next
// round trip: the row is scanned into dest when the statements queued
// with it reach Postgres (with a later read, Flush or the COMMIT). Scan
// into a pointer (**bool, say) to tell "not sent yet" from the answer.
func (t *Tx) QueueScan(what, sql string, args []any, dest ...any) {
	t.Queue(what, sql, args...)
	t.steps[len(t.steps)-1].dest = dest
}

// Send sends the queued statements plus those extra adds, checks the
// queued ones and returns the results positioned at extra's first. The
// caller closes the results.
func (t *Tx) Send(ctx context.Context, extra func(b *pgx.Batch)) (pgx.BatchResults, error) {
	b, steps := t.pending, t.steps
	t.pending, t.steps = nil, nil
	if b == nil {
		b = &pgx.Batch{}
	}
	if extra != nil {
		extra(b)
	}
	br := t.conn.SendBatch(ctx, b)
	for _, s := range steps {
		var err error
		if s.dest != nil {
			err = br.QueryRow().Scan(s.dest...)
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			_ = br.Close()
			return nil, &StepError{Owner: s.owner, Step: s.what, Err: err}
		}
	}
	return br, nil
}

// Flush sends whatever is queued.
func (t *Tx) Flush(ctx context.Context) error {
	if t.pending == nil {
		return nil
	}
	br, err := t.Send(ctx, nil)
	if err != nil {
		return err
	}
	return br.Close()
}

// Exec runs one statement after the queued ones and returns its tag.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := t.Send(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// QueryRow runs one single-row query after the queued ones; like pgx's,
// its errors surface from Scan.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return txRow{t: t, ctx: ctx, sql: sql, args: args}
}

type txRow struct {
	t    *Tx
	ctx  context.Context
	sql  string
	args []any
}

func (r txRow) Scan(dest ...any) error {
	br, err := r.t.Send(r.ctx, func(b *pgx.Batch) { b.Queue(r.sql, r.args...) })
	if err != nil {
		return err
	}
	err = br.QueryRow().Scan(dest...)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// Query runs one query after the queued ones. Close the rows before the
// next call on t.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	br, err := t.Send(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &txRows{Rows: rows, br: br}, nil
}

// txRows closes the batch with the rows (as pgx's rows close themselves
// once read), and reports the batch's failure as the rows' own.
type txRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

func (r *txRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *txRows) Close() {
	r.Rows.Close()
	if r.br != nil {
		r.err = r.br.Close()
		r.br = nil
	}
}

func (r *txRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}
