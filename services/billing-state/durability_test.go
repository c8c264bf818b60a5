package billingstate

import (
	"fmt"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestPostgresCrashLosesNoAckedEvent crashes Postgres itself while
// billing-state's last commits are visible but not yet on disk, which
// asynchronous commits allow. The crash loses them; their acks were held,
// so JetStream redelivers them and they are applied after the restart,
// each exactly once.
//
// The server is the test's own: its WAL writer flushes only every 10 s,
// and the gate is told never to force a flush, so the window is wide open.
func TestPostgresCrashLosesNoAckedEvent(t *testing.T) {
	srv := pgtest.StartServer(t, map[string]string{
		"wal_writer_delay": "10s",
		// Nothing else may flush the WAL meanwhile.
		"autovacuum": "off", "wal_level": "minimal", "max_wal_senders": "0",
		"bgwriter_lru_maxpages": "0", "checkpoint_timeout": "1h",
	})
	h := start(t, func(c *Config) {
		c.DatabaseURL = srv.URL("postgres")
		c.FlushForceAfter = -1
	})
	// A round applies a batch, checks that nothing left the service, and
	// crashes Postgres. Whether the crash catches commits still in the WAL
	// buffers depends on when the WAL writer last wrote: a round that lost
	// none is repeated with a new batch.
	const batch = 40
	stop := h.stop
	n, lost := 0, 0
	for round := 1; lost == 0; round++ {
		if round > 3 {
			t.Fatal("three crashes lost no commit: the test never opened the window it is about")
		}
		var evs []*billingv1.BillingEvent
		for i := range batch {
			cus := fmt.Sprintf("cus_Flush%d_%02d", round, i)
			jb := journey.New(t, cus, base)
			evs = append(evs, jb.Subscription("customer.subscription.created", 0, "sub_"+cus[4:], "active", false, nil))
		}
		n += batch
		h.publish(evs...)
		h.eventually(20*time.Second, "every event applied (visible)", func() bool { return h.rows(`SELECT count(*) FROM billing.processed_events`) == n })
		held := h.ackPending()
		if held == 0 {
			t.Fatal("every ack was sent although the WAL writer had not flushed: the gate did not hold them")
		}
		if got := h.statusMessages(); got != 0 {
			t.Fatalf("%d status changes published before their commits were on disk", got)
		}

		srv.Crash()
		stop()
		srv.Start()
		survived := -1
		h.eventually(20*time.Second, "Postgres back", func() bool {
			survived = h.rows(`SELECT count(*) FROM billing.processed_events`)
			return survived >= 0
		})
		lost = n - survived
		t.Logf("round %d: %d of %d applied events survived the crash; %d acks were held", round, survived, n, held)
		if lost > held {
			t.Fatalf("the crash lost %d applied events but only %d acks were held: an acked event is lost", lost, held)
		}
		if lost == 0 {
			stop = h.rerun(func(c *Config) { c.FlushForceAfter = -1 })
		}
	}

	// The restarted service gets the lost events again and applies them.
	h.rerun(func(c *Config) { c.FlushForceAfter = 0 })
	h.eventually(30*time.Second, "every event applied and acked", func() bool {
		return h.rows(`SELECT count(*) FROM billing.processed_events`) == n && h.drained()
	})
	if got := h.rows(`SELECT count(*) FROM billing.audit_log`); got != n {
		t.Fatalf("%d audit rows for %d events: an event was applied twice or not at all", got, n)
	}
	if got := h.rows(`SELECT count(*) FROM billing.customers WHERE status = 'active'`); got != n {
		t.Fatalf("%d active customers, want %d", got, n)
	}
	h.eventually(10*time.Second, "each status change published once", func() bool { return h.statusMessages() == n })
}

// statusMessages is how many status changes the relay has published.
func (h *harness) statusMessages() int {
	h.t.Helper()
	st, err := h.js.Stream(h.ctx, bus.StreamStatus)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := st.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return int(info.State.Msgs)
}

// rows runs a count query against the service's database; -1 while it is
// unreachable.
func (h *harness) rows(sql string) int {
	var n int
	if err := h.db.QueryRow(h.ctx, sql).Scan(&n); err != nil {
		return -1
	}
	return n
}

// ackPending is how many deliveries JetStream still waits to hear about.
func (h *harness) ackPending() int {
	h.t.Helper()
	c, err := h.js.Consumer(h.ctx, bus.StreamEvents, Durable)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := c.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return info.NumAckPending
}

// rerun starts the service again, after h.stop, with the same settings
// changed by mods, and returns the function that stops it.
func (h *harness) rerun(mods ...func(*Config)) (stop func()) {
	h.t.Helper()
	cfg := h.cfg
	cfg.Registry = httpserver.NewRegistry()
	for _, m := range mods {
		m(&cfg)
	}
	_, stop = h.launch(cfg)
	return stop
}
