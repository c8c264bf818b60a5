package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A transaction here is pipelined: statements whose results nothing reads
// (the writes) are queued and travel with the next statement that needs an
// answer, BEGIN rides with the first read and COMMIT with the last writes.
// An event costs three round trips instead of a dozen, which is what lets
// one Postgres keep up with thousands of events a second: at that rate the
// time is in round trips and commits, not in the statements.

// inTx runs fn in one transaction on one connection: committed when fn
// returns nil, rolled back otherwise.
func (s *Store) inTx(ctx context.Context, fn func(t *txn) error) error {
	_, err := s.runTx(ctx, fn)
	return err
}

// runTx is inTx that also reports, on failure, whether the connection was
// lost (as opposed to Postgres refusing a statement, or fn failing).
func (s *Store) runTx(ctx context.Context, fn func(t *txn) error) (connLost bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return true, fmt.Errorf("acquire connection: %w", err)
	}
	// A connection released inside a transaction (a failed rollback) is
	// closed by the pool rather than reused.
	defer conn.Release()
	t := &txn{s: s, ctx: ctx, conn: conn}
	t.queueAs("begin", "BEGIN")
	if err = fn(t); err == nil {
		t.queueAs("commit", "COMMIT")
		err = t.flush()
	}
	if err != nil {
		lost := conn.Conn().IsClosed() || ctx.Err() != nil
		t.rollback()
		return lost, err
	}
	return false, nil
}

// step is a queued statement: what it does, and which event of a shared
// transaction queued it.
type step struct {
	what  string
	owner int
}

// stepError is a queued statement's failure, reported by whichever later
// statement carried it to Postgres; owner says whose it was.
type stepError struct {
	owner int
	err   error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func (t *txn) rollback() {
	t.pending, t.what = nil, nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), 5*time.Second)
	defer cancel()
	_, _ = t.conn.Exec(ctx, "ROLLBACK")
}

// queueAs queues a statement whose result only matters if it fails; what
// names the step in that error.
func (t *txn) queueAs(what, sql string, args ...any) {
	if t.pending == nil {
		t.pending = &pgx.Batch{}
	}
	t.pending.Queue(sql, args...)
	t.what = append(t.what, step{what: what, owner: t.owner})
}

// send sends the queued statements plus those extra adds, checks the
// queued ones and returns the results positioned at extra's first.
func (t *txn) send(extra func(b *pgx.Batch)) (pgx.BatchResults, error) {
	b, what := t.pending, t.what
	t.pending, t.what = nil, nil
	if b == nil {
		b = &pgx.Batch{}
	}
	if extra != nil {
		extra(b)
	}
	br := t.conn.SendBatch(t.ctx, b)
	for _, w := range what {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, &stepError{owner: w.owner, err: fmt.Errorf("%s: %w", w.what, err)}
		}
	}
	return br, nil
}

// flush sends whatever is queued.
func (t *txn) flush() error {
	if t.pending == nil {
		return nil
	}
	br, err := t.send(nil)
	if err != nil {
		return err
	}
	return br.Close()
}

// exec runs one statement (after the queued ones) and returns its tag.
func (t *txn) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := t.send(func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// queryRow runs one single-row query (after the queued ones) into dest.
func (t *txn) queryRow(sql string, args []any, dest ...any) error {
	br, err := t.send(func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return err
	}
	err = br.QueryRow().Scan(dest...)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
