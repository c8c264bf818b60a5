package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/services/billing-state/internal/relay"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// lossyPublisher publishes, then reports a failure once for the chosen
// row: the publish happened but the relay never learns it, as when it
// crashes before marking the row.
type lossyPublisher struct {
	next relay.Publisher
	mu   sync.Mutex
	lose string
	dups int
	seen map[string]int
}

func (p *lossyPublisher) PublishAll(ctx context.Context, msgs []bus.Message) ([]bus.PubResult, error) {
	res, err := p.next.PublishAll(ctx, msgs)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range res {
		p.seen[msgs[i].MsgID]++
		if r.Duplicate {
			p.dups++
		}
	}
	for i := range res {
		if msgs[i].MsgID == p.lose {
			// Everything was stored, but the relay learns only of what
			// came before this one.
			p.lose = ""
			return res[:i], errors.New("connection lost before the ack was read")
		}
	}
	return res, err
}

// env is a migrated database, an embedded NATS with the streams, and a
// store, for one test. js is billing-state's, as the relay runs; observer
// is the test's own, to read what reached the stream.
func env(t *testing.T) (ctx context.Context, pool *pgxpool.Pool, js, observer jetstream.JetStream, store *state.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithIndexPlans())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	nc, js, err := bus.Connect(ctx, ns.Conn(natsauth.BillingState), "relay-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	onc, observer, err := bus.Connect(ctx, ns.Conn(natstest.Observer), "relay-test-observer", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(onc.Close)
	return ctx, pool, js, observer, state.New(pool, state.Options{Policy: canonical.DefaultPolicy()})
}

func TestRelayPublishesEachChangeOnceAcrossFailuresAndRestarts(t *testing.T) {
	ctx, pool, js, observer, store := env(t)
	applyJourney := func(cus string) {
		jb := journey.New(t, cus, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
		for _, ev := range journey.Events(journey.TrialToActive(jb)) {
			if _, err := store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	applyJourney("cus_Relay1")
	applyJourney("cus_Relay2")

	var firstID int64
	if err := pool.QueryRow(ctx, `SELECT min(id) FROM billing.outbox`).Scan(&firstID); err != nil {
		t.Fatal(err)
	}
	pub := &lossyPublisher{next: bus.NewPublisher(js, nil), lose: fmt.Sprintf("outbox-%d", firstID), seen: map[string]int{}}
	runRelay := func() (stop func()) {
		r := relay.New(store, pub, relay.Options{Poll: 10 * time.Millisecond})
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(rctx) }()
		return func() { rcancel(); <-done }
	}
	waitDrained := func() {
		deadline := time.Now().Add(15 * time.Second)
		for {
			n, _, err := store.OutboxPending(ctx)
			if err == nil && n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("outbox still has %d rows", n)
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	stop := runRelay()
	waitDrained()
	stop()
	// Restart with new changes: only those are published.
	applyJourney("cus_Relay3")
	stop = runRelay()
	waitDrained()
	stop()

	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM billing.outbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	st, err := observer.Stream(ctx, bus.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(info.State.Msgs) != rows {
		t.Fatalf("BILLING_STATUS holds %d messages for %d outbox rows", info.State.Msgs, rows)
	}
	// The row whose ack was lost went out again, with the rest of its
	// batch; every second publish was a duplicate JetStream dropped.
	sent := 0
	for _, n := range pub.seen {
		sent += n
	}
	if pub.seen[pub.lostID(firstID)] != 2 || pub.dups < 1 || sent != rows+pub.dups {
		t.Fatalf("the row whose ack was lost: published %d times; %d publishes, %d duplicates, %d rows",
			pub.seen[pub.lostID(firstID)], sent, pub.dups, rows)
	}
	// Each customer's changes arrive in commit order.
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.StatusSubject("cus_Relay1")}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range batch.Messages() {
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	}
	if len(ids) < 2 {
		t.Fatalf("cus_Relay1 changes: %v", ids)
	}
	for i := 1; i < len(ids); i++ {
		var a, b int
		fmt.Sscanf(ids[i-1], "outbox-%d", &a)
		fmt.Sscanf(ids[i], "outbox-%d", &b)
		if b <= a {
			t.Fatalf("out of order: %v", ids)
		}
	}
}

// TestRelayPrunesPublishedRowsPastTheRetention: published rows older than
// the retention go, in id order and at most limit at a time; unpublished
// rows stay however old; the relay prunes on its own.
func TestRelayPrunesPublishedRowsPastTheRetention(t *testing.T) {
	ctx, pool, js, _, store := env(t)
	jb := journey.New(t, "cus_Prune1", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	for _, ev := range journey.Events(journey.TrialToActive(jb)) {
		if _, err := store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(where string) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM billing.outbox WHERE `+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	age := func(set string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `UPDATE billing.outbox SET `+set); err != nil {
			t.Fatal(err)
		}
	}
	rows := count("true")
	if rows < 3 {
		t.Fatalf("the journey left %d outbox rows, want at least 3", rows)
	}
	// Unpublished, however old: kept.
	age(`created_at = now() - interval '30 days'`)
	if n, err := store.PruneOutbox(ctx, time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("pruned %d unpublished rows (err %v), want 0", n, err)
	}
	// Published two hours ago, but for the newest row an hour ago: with
	// a limit of 1 the oldest goes first, then the rest past 90 minutes.
	age(`published_at = now() - interval '2 hours'`)
	age(`published_at = now() - interval '1 hour' WHERE id = (SELECT max(id) FROM billing.outbox)`)
	minID := func() int64 {
		var id int64
		if err := pool.QueryRow(ctx, `SELECT min(id) FROM billing.outbox`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := minID()
	if n, err := store.PruneOutbox(ctx, 90*time.Minute, 1); err != nil || n != 1 || minID() == first {
		t.Fatalf("limit 1: pruned %d (err %v), oldest row %d left; want the oldest row gone", n, err, minID())
	}
	if n, err := store.PruneOutbox(ctx, 90*time.Minute, 100); err != nil || n != rows-2 {
		t.Fatalf("pruned %d (err %v), want %d", n, err, rows-2)
	}
	if left := count("true"); left != 1 {
		t.Fatalf("%d rows left, want the one published an hour ago", left)
	}

	// The relay publishes new changes and prunes what passes its
	// retention, here 30 minutes.
	jb2 := journey.New(t, "cus_Prune2", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	for _, ev := range journey.Events(journey.TrialToActive(jb2)) {
		if _, err := store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r := relay.New(store, bus.NewPublisher(js, nil), relay.Options{Poll: 10 * time.Millisecond, Retention: 30 * time.Minute, PruneEvery: 20 * time.Millisecond})
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	defer func() { rcancel(); <-done }()
	deadline := time.Now().Add(15 * time.Second)
	for count("published_at IS NULL") > 0 || count("published_at < now() - interval '30 minutes'") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("relay left %d unpublished and %d expired rows", count("published_at IS NULL"), count("published_at < now() - interval '30 minutes'"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if left := count("true"); left < 3 {
		t.Fatalf("%d rows left: the relay pruned rows inside the retention", left)
	}
}

func (p *lossyPublisher) lostID(id int64) string { return fmt.Sprintf("outbox-%d", id) }
