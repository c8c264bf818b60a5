package pg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
)

func openCounted(t *testing.T) (*pgxpool.Pool, *pgtest.RoundTrips) {
	t.Helper()
	rt := &pgtest.RoundTrips{}
	pool, err := pg.Open(context.Background(), pgtest.NewDatabase(t), pg.WithTracer(rt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE t (v int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return pool, rt
}

func sum(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(sum(v), 0) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInTxSendsQueuedStatementsWithTheNextAnswer(t *testing.T) {
	ctx := context.Background()
	pool, rt := openCounted(t)
	before := rt.Count()
	var seen, rowsRead int
	err := pg.InTx(ctx, pool, func(tx *pg.Tx) error {
		tx.Queue("lock", `SELECT pg_advisory_xact_lock(42)`)
		tx.Queue("first", `INSERT INTO t VALUES (1)`)
		// The read sees the queued write: same transaction, sent first.
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&seen); err != nil {
			return err
		}
		tx.Queue("second", `INSERT INTO t VALUES (2)`)
		rows, err := tx.Query(ctx, `SELECT v FROM t ORDER BY v`)
		if err != nil {
			return err
		}
		// Read to the end without Close: the next call must still work.
		for rows.Next() {
			rowsRead++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		tx.Queue("third", `INSERT INTO t VALUES (4)`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != 1 || rowsRead != 2 {
		t.Fatalf("inside the transaction: count %d, rows %d; want 1 and 2", seen, rowsRead)
	}
	// BEGIN+lock+insert+count, insert+select, insert+COMMIT.
	if got := rt.Count() - before; got != 3 {
		t.Fatalf("%d round trips, want 3", got)
	}
	if got := sum(t, pool); got != 7 {
		t.Fatalf("committed sum %d, want 7", got)
	}
}

// A read queued with QueueScan travels with the COMMIT: its answer is
// there once the transaction has committed, at no extra round trip.
func TestQueueScanAnswersWithTheNextRoundTrip(t *testing.T) {
	ctx := context.Background()
	pool, rt := openCounted(t)
	before := rt.Count()
	var early, late *int
	var beforeSend bool
	err := pg.InTx(ctx, pool, func(tx *pg.Tx) error {
		tx.Queue("first", `INSERT INTO t VALUES (3)`)
		tx.QueueScan("count early", `SELECT count(*)::int FROM t`, nil, &early)
		var n int
		if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&n); err != nil {
			return err
		}
		tx.Queue("second", `INSERT INTO t VALUES (5)`)
		tx.QueueScan("sum late", `SELECT sum(v)::int FROM t WHERE v > $1`, []any{0}, &late)
		beforeSend = late == nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if early == nil || *early != 1 || late == nil || *late != 8 || !beforeSend {
		t.Fatalf("early %v late %v (unset before sending: %v); want 1 and 8", early, late, beforeSend)
	}
	// BEGIN+insert+count+select, insert+sum+COMMIT.
	if got := rt.Count() - before; got != 2 {
		t.Fatalf("%d round trips, want 2", got)
	}
}

func TestInTxRollsBackOnError(t *testing.T) {
	ctx := context.Background()
	pool, _ := openCounted(t)
	boom := errors.New("boom")
	err := pg.InTx(ctx, pool, func(tx *pg.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
			return err
		}
		tx.Queue("queued", `INSERT INTO t VALUES (8)`)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if err := pg.InTx(ctx, pool, func(tx *pg.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO t VALUES (2)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := sum(t, pool); got != 2 {
		t.Fatalf("sum = %d, want 2 (first transaction rolled back)", got)
	}
}

func TestInTxNamesTheQueuedStepThatFailed(t *testing.T) {
	ctx := context.Background()
	pool, _ := openCounted(t)
	var scanErr error
	_, err := pg.RunTx(ctx, pool, func(tx *pg.Tx) error {
		tx.Queue("one", `INSERT INTO t VALUES (1)`)
		tx.Owner = 3
		tx.Queue("duplicate", `INSERT INTO t VALUES (1)`)
		tx.Owner = 4
		tx.Queue("after", `INSERT INTO t VALUES (5)`)
		var n int
		scanErr = tx.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n)
		return scanErr
	})
	var se *pg.StepError
	if !errors.As(err, &se) || se.Step != "duplicate" || se.Owner != 3 {
		t.Fatalf("err = %#v, want the StepError of step duplicate, owner 3", err)
	}
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) || pgErr.SQLState() != "23505" {
		t.Fatalf("err = %v, want the unique violation inside", err)
	}
	if got := sum(t, pool); got != 0 {
		t.Fatalf("sum = %d after a failed transaction, want 0", got)
	}
	// The failed step failed the commit too: a queued COMMIT must not
	// have run on an aborted transaction's connection, which goes back
	// to the pool clean.
	if err := pg.InTx(ctx, pool, func(tx *pg.Tx) error {
		tx.Queue("ok", `INSERT INTO t VALUES (6)`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := sum(t, pool); got != 6 {
		t.Fatalf("sum = %d, want 6", got)
	}
}

func TestRunTxReportsALostConnection(t *testing.T) {
	pool, _ := openCounted(t)
	ctx, cancel := context.WithCancel(context.Background())
	lost, err := pg.RunTx(ctx, pool, func(tx *pg.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&n); err != nil {
			return err
		}
		cancel()
		_, err := tx.Exec(ctx, `SELECT pg_sleep(5)`)
		return err
	})
	if err == nil || !lost {
		t.Fatalf("lost %v, err %v; want a lost connection", lost, err)
	}
	lost, err = pg.RunTx(context.Background(), pool, func(tx *pg.Tx) error {
		_, err := tx.Exec(context.Background(), `SELECT no_such_column FROM t`)
		return err
	})
	if err == nil || lost {
		t.Fatalf("lost %v, err %v; want a refused statement on a live connection", lost, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
