package state

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// With asynchronous commits (pg.WithAsyncCommit) a status is visible as
// soon as its transaction commits, without waiting for the disk. Postgres
// writes the WAL out a moment later; a crash of Postgres before then loses
// the last commits. Two things leave billing-state and must not get ahead
// of the disk:
//
//   - the JetStream ack: a lost commit whose message was acked would never
//     be applied again. Held back, the message is redelivered after the
//     crash and applied again (its processed_events row was lost with it).
//   - the outbox publish: watchers and the CRM would act on a change the
//     database no longer has.
//
// A FlushGate holds both until the WAL is flushed past every commit made
// before they were handed over. By default each round forces a flush: a
// one-row update committed synchronously, which flushes everything written
// before it. With ForceAfter set, a round first reads the WAL position and
// waits that long for Postgres's own flush (the WAL writer, or any
// synchronous commit). One flush serves every commit waiting, like
// Postgres's group commit, but nothing on the status path waits for it.

// FlushGateOptions tune a FlushGate.
type FlushGateOptions struct {
	// ForceAfter is how long the oldest held item waits for Postgres to
	// flush on its own before the gate forces a flush: 0 forces at once,
	// negative never forces (the WAL writer flushes within about three
	// wal_writer_delay, 600 ms by default).
	ForceAfter time.Duration
	// Poll is the pause between reads of the flush position while held
	// items wait for Postgres's own flush (5ms).
	Poll time.Duration
	// Slot is the row of billing.wal_flush that this gate's forced flushes
	// update, 1 to FlushSlots; 0 picks one at random, so that replicas
	// rarely share a row and seldom wait on each other's row lock.
	Slot     int
	Registry prometheus.Registerer
}

// FlushSlots is how many rows billing.wal_flush allows (migration 0003).
const FlushSlots = 64

// FlushGate releases callbacks once every commit made before they were
// handed over is on disk. Run must be running.
type FlushGate struct {
	pool *pgxpool.Pool
	opts FlushGateOptions
	wake chan struct{}
	// forceSQL is the forced flush, on this gate's slot.
	forceSQL string

	mu sync.Mutex
	// fresh were handed over since the gate last read the WAL position
	// (the first at freshSince); held know the position they wait for,
	// oldest first.
	fresh      []func()
	freshSince time.Time
	held       []heldGroup

	holdSeconds prometheus.Histogram
	forced      prometheus.Counter
	failures    prometheus.Counter
}

type heldGroup struct {
	target uint64 // WAL insert position read after the group was handed over
	since  time.Time
	fns    []func()
}

// NewFlushGate returns a gate over pool's server.
func NewFlushGate(pool *pgxpool.Pool, o FlushGateOptions) *FlushGate {
	if o.Poll <= 0 {
		o.Poll = 5 * time.Millisecond
	}
	if o.Slot < 1 || o.Slot > FlushSlots {
		o.Slot = 1 + rand.IntN(FlushSlots) // #nosec G404 -- spreads replicas over flush slots; nothing depends on it being unpredictable
	}
	g := &FlushGate{pool: pool, opts: o, wake: make(chan struct{}, 1)}
	// One simple-protocol round trip, so the slot is a literal (an int).
	g.forceSQL = fmt.Sprintf(`BEGIN;
		SET LOCAL synchronous_commit TO on;
		INSERT INTO billing.wal_flush AS f (id, flushes, flushed_at) VALUES (%d, 1, now())
			ON CONFLICT (id) DO UPDATE SET flushes = f.flushes + 1, flushed_at = now();
		COMMIT`, o.Slot)
	g.holdSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lr_billing_state_flush_hold_seconds",
		Help:    "Time an ack or outbox publish waited for its commit to reach disk.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	})
	g.forced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lr_billing_state_wal_flushes_forced_total", Help: "WAL flushes the gate forced with a synchronous commit.",
	})
	g.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lr_billing_state_flush_gate_failures_total", Help: "Gate rounds that could not reach Postgres.",
	})
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{g.holdSeconds, g.forced, g.failures} {
			_ = o.Registry.Register(c)
		}
	}
	return g
}

// After runs fn, on the gate's goroutine, once every commit made before
// the call is durable. fn must not block. If Postgres never answers again,
// fn never runs; a held JetStream ack then expires into a redelivery.
func (g *FlushGate) After(fn func()) {
	g.mu.Lock()
	if len(g.fresh) == 0 {
		g.freshSince = time.Now()
	}
	g.fresh = append(g.fresh, fn)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Wait returns once every commit made before the call is durable, or with
// ctx's error.
func (g *FlushGate) Wait(ctx context.Context) error {
	done := make(chan struct{})
	g.After(func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run releases held callbacks until ctx ends, then makes a last attempt
// (bounded by 5 s) to release what is still held, so that a clean stop
// sends its acks.
func (g *FlushGate) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		if !g.pending() {
			select {
			case <-ctx.Done():
				g.last(ctx)
				return nil
			case <-g.wake:
			}
			continue
		}
		waiting, err := g.round(ctx, g.opts.ForceAfter)
		pause := time.Duration(0)
		switch {
		case err != nil && ctx.Err() == nil:
			g.failures.Inc()
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			pause = backoff
		case err == nil:
			backoff = 0
			if waiting {
				pause = g.opts.Poll
			}
		}
		if ctx.Err() != nil {
			g.last(ctx)
			return nil
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// last releases what it can within 5 s of the stop.
func (g *FlushGate) last(ctx context.Context) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for g.pending() && lctx.Err() == nil {
		if _, err := g.round(lctx, 0); err != nil {
			return
		}
	}
}

func (g *FlushGate) pending() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.fresh) > 0 || len(g.held) > 0
}

// round releases what the WAL flush has passed, and reports whether
// anything is still held. Forcing at once (forceAfter 0), it forces a
// flush, which passes everything handed over before it: one round trip.
// Otherwise it reads the WAL position first, and forces only when the
// oldest held group has waited forceAfter (never when negative).
func (g *FlushGate) round(ctx context.Context, forceAfter time.Duration) (bool, error) {
	g.mu.Lock()
	fresh, since := g.fresh, g.freshSince
	g.fresh = nil
	g.mu.Unlock()
	restore := func() { // ahead of what came meanwhile
		g.mu.Lock()
		if len(fresh) > 0 {
			g.freshSince = since
		}
		g.fresh = append(fresh, g.fresh...)
		g.mu.Unlock()
	}
	if forceAfter == 0 {
		if err := g.force(ctx); err != nil {
			restore()
			return true, err
		}
		g.mu.Lock()
		if len(fresh) > 0 {
			g.held = append(g.held, heldGroup{since: since, fns: fresh})
		}
		g.mu.Unlock()
		return g.release(math.MaxUint64), nil
	}
	insert, flushed, err := g.positions(ctx)
	if err != nil {
		restore()
		return true, err
	}
	now := time.Now()
	g.mu.Lock()
	if len(fresh) > 0 {
		g.held = append(g.held, heldGroup{target: insert, since: since, fns: fresh})
	}
	if len(g.held) == 0 {
		g.mu.Unlock()
		return false, nil
	}
	oldest := g.held[0]
	g.mu.Unlock()
	if oldest.target > flushed && forceAfter >= 0 && now.Sub(oldest.since) >= forceAfter {
		if err := g.force(ctx); err != nil {
			return true, err
		}
		// The forced commit came after the position was read: everything
		// inserted before it is on disk now.
		flushed = insert
	}
	return g.release(flushed), nil
}

// release runs the groups whose target the flush passed; targets only
// grow, so they are a prefix.
func (g *FlushGate) release(flushed uint64) bool {
	g.mu.Lock()
	n := 0
	for n < len(g.held) && g.held[n].target <= flushed {
		n++
	}
	done := g.held[:n:n]
	g.held = g.held[n:]
	waiting := len(g.held) > 0
	g.mu.Unlock()
	now := time.Now()
	for _, grp := range done {
		held := now.Sub(grp.since).Seconds()
		for _, fn := range grp.fns {
			g.holdSeconds.Observe(held)
			fn()
		}
	}
	return waiting
}

// positions reads where the WAL is inserted up to and flushed up to.
func (g *FlushGate) positions(ctx context.Context) (insert, flushed uint64, err error) {
	err = g.pool.QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint,
		(pg_current_wal_flush_lsn() - '0/0')::bigint`).Scan(&insert, &flushed)
	if err != nil {
		return 0, 0, fmt.Errorf("read WAL position: %w", err)
	}
	return insert, flushed, nil
}

// force commits a one-row update synchronously: its commit waits for the
// WAL to be flushed up to itself, and so past every earlier commit.
// (A transaction that writes nothing commits without a flush.)
func (g *FlushGate) force(ctx context.Context) error {
	_, err := g.pool.Exec(ctx, g.forceSQL)
	if err != nil {
		return fmt.Errorf("force WAL flush: %w", err)
	}
	g.forced.Inc()
	return nil
}
