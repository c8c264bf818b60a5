package state

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/launchready/launchready/pkg/pg"
)

// A transaction here is a pg.Tx: statements whose results nothing reads
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
	return pg.RunTx(ctx, s.pool, func(tx *pg.Tx) error {
		return fn(&txn{s: s, ctx: ctx, tx: tx})
	})
}

// queueAs queues a statement whose result only matters if it fails; what
// names the step in that error.
func (t *txn) queueAs(what, sql string, args ...any) { t.tx.Queue(what, sql, args...) }

// send sends the queued statements plus those extra adds, checks the
// queued ones and returns the results positioned at extra's first.
func (t *txn) send(extra func(b *pgx.Batch)) (pgx.BatchResults, error) {
	return t.tx.Send(t.ctx, extra)
}

// exec runs one statement (after the queued ones) and returns its tag.
func (t *txn) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	return t.tx.Exec(t.ctx, sql, args...)
}

// queryRow runs one single-row query (after the queued ones) into dest.
func (t *txn) queryRow(sql string, args []any, dest ...any) error {
	return t.tx.QueryRow(t.ctx, sql, args...).Scan(dest...)
}
