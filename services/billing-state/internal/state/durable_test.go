package state_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// TestFlushGateHoldsUntilTheWALIsOnDisk runs on a server of its own whose
// WAL writer flushes only every 10 s: a gate that may not force a flush
// keeps holding, one that may releases after forcing one, and by then the
// WAL is flushed past the commit.
func TestFlushGateHoldsUntilTheWALIsOnDisk(t *testing.T) {
	srv := pgtest.StartServer(t, map[string]string{"wal_writer_delay": "10s", "autovacuum": "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, srv.URL("postgres"), pg.WithAsyncCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	commit := func() uint64 {
		t.Helper()
		if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS scratch (n int); INSERT INTO scratch VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		return walPosition(t, pool, "pg_current_wal_insert_lsn()")
	}

	// Never forcing: Postgres does not flush within the wait.
	never := state.NewFlushGate(pool, state.FlushGateOptions{ForceAfter: -1})
	stopNever := runGate(t, never)
	commit()
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = never.Wait(wctx)
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v with the commit not on disk; want it to hold until the deadline", err)
	}
	stopNever()

	// Forcing at once: released, and the commit is on disk. The gate's
	// round is one statement, the forced commit, on a pool of its own here
	// so that its statements can be counted.
	statements := &pgtest.RoundTrips{}
	gatePool, err := pg.Open(ctx, srv.URL("postgres"), pg.WithTracer(statements))
	if err != nil {
		t.Fatal(err)
	}
	defer gatePool.Close()
	reg := prometheus.NewRegistry()
	gate := state.NewFlushGate(gatePool, state.FlushGateOptions{ForceAfter: 0, Registry: reg})
	stop := runGate(t, gate)
	defer stop()
	committed := commit()
	if flushed := walPosition(t, pool, "pg_current_wal_flush_lsn()"); flushed >= committed {
		t.Fatalf("the WAL was flushed to %d before the gate ran (commit at %d): the server does not hold async commits back", flushed, committed)
	}
	start := time.Now()
	if err := gate.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if n := statements.Count(); n != 1 {
		t.Fatalf("the gate sent %d statements for one round, want 1 (the forced commit)", n)
	}
	if flushed := walPosition(t, pool, "pg_current_wal_flush_lsn()"); flushed < committed {
		t.Fatalf("released with the WAL flushed to %d, before the commit at %d", flushed, committed)
	}
	if n := metricValue(t, reg, "lr_billing_state_wal_flushes_forced_total"); n < 1 {
		t.Fatalf("forced flushes = %v, want >= 1", n)
	}
	if took > 2*time.Second {
		t.Fatalf("forced release took %s", took)
	}

	// After also runs once per callback, in order.
	var got []int
	done := make(chan struct{})
	commit()
	for i := range 3 {
		gate.After(func() {
			got = append(got, i)
			if i == 2 {
				close(done)
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("After callbacks never ran")
	}
	if len(got) != 3 || got[0] != 0 || got[2] != 2 {
		t.Fatalf("callbacks ran as %v, want [0 1 2]", got)
	}
}

// TestFlushGatesOfReplicasDoNotWaitOnEachOther: while a transaction holds
// one gate's row of billing.wal_flush (as a replica's forced flush does
// while its commit waits for the disk), a gate on another slot still
// releases, and the gate on the held slot waits for it.
func TestFlushGatesOfReplicasDoNotWaitOnEachOther(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithAsyncCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx) //nolint:errcheck
	if _, err := holder.Exec(ctx, `INSERT INTO billing.wal_flush AS f (id, flushes, flushed_at) VALUES (7, 1, now())
		ON CONFLICT (id) DO UPDATE SET flushes = f.flushes + 1`); err != nil {
		t.Fatal(err)
	}
	other := state.NewFlushGate(pool, state.FlushGateOptions{Slot: 8})
	runGate(t, other)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := other.Wait(wctx); err != nil {
		t.Fatalf("a gate on slot 8 did not release while slot 7 was held: %v", err)
	}
	same := state.NewFlushGate(pool, state.FlushGateOptions{Slot: 7})
	runGate(t, same)
	released := make(chan struct{})
	same.After(func() { close(released) })
	select {
	case <-released:
		t.Fatal("the gate on the held slot released: the test's lock is not what a replica's flush holds")
	case <-time.After(300 * time.Millisecond):
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	case <-ctx.Done():
		t.Fatal("the gate on slot 7 never released after the lock went")
	}
}

// TestFlushGateKeepsWhatItCannotRelease: with Postgres unreachable nothing
// is released, the failure is counted, and Run still stops.
func TestFlushGateKeepsWhatItCannotRelease(t *testing.T) {
	ctx := context.Background()
	pool, err := pg.Open(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	gate := state.NewFlushGate(pool, state.FlushGateOptions{Registry: reg})
	stop := runGate(t, gate)
	released := make(chan struct{})
	gate.After(func() { close(released) })
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, reg, "lr_billing_state_flush_gate_failures_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no failed round counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	select {
	case <-released:
		t.Fatal("released although Postgres was never reached")
	default:
	}
}

func runGate(t *testing.T, g *state.FlushGate) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gate did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func walPosition(t *testing.T, pool *pgxpool.Pool, fn string) uint64 {
	t.Helper()
	var pos uint64
	if err := pool.QueryRow(context.Background(), `SELECT (`+fn+` - '0/0')::bigint`).Scan(&pos); err != nil {
		t.Fatal(err)
	}
	return pos
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
