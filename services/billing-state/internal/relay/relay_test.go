package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/services/billing-state/internal/journeytest"
	"github.com/launchready/launchready/services/billing-state/internal/relay"
	"github.com/launchready/launchready/services/billing-state/internal/state"
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

func TestRelayPublishesEachChangeOnceAcrossFailuresAndRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithIndexPlans())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	nc, js, err := bus.Connect(ctx, ns.URL(), "relay-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	store := state.New(pool, state.Options{Policy: canonical.DefaultPolicy()})
	applyJourney := func(cus string) {
		jb := journeytest.New(t, cus, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
		for _, ev := range journeytest.Events(journeytest.TrialToActive(jb)) {
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
	st, err := js.Stream(ctx, bus.StreamStatus)
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

func (p *lossyPublisher) lostID(id int64) string { return fmt.Sprintf("outbox-%d", id) }
