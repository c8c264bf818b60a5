package alerts

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/slack"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/vendor"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestBurstFoldsIntoDigestsWithinSLOAndOnceAcrossCrash sends 50 failed
// payments in 5 s to a Slack webhook that takes one message a second.
// Alone, the last alert would leave 50 s after the first; folded into
// digests every one is accepted within the SLO, set here to 15 s to show
// the difference. Midway the consumer's process dies after recording a
// digest and before acking it (its NATS connection closes), and a fresh
// process takes over the redeliveries: no event reaches Slack twice, none
// is missing, and no 429 goes unanswered.
func TestBurstFoldsIntoDigestsWithinSLOAndOnceAcrossCrash(t *testing.T) {
	t.Parallel()
	const total, slo = 50, 15 * time.Second
	ctx := context.Background()
	ns := natstest.Start(t)
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	hook := fakes.NewSlack("/services/" + journey.ID("T") + "/" + journey.ID("B") + "/" + journey.ID("x"))
	t.Cleanup(hook.Close)
	hook.SetPace(time.Second)
	handler := func() *Handler {
		m, err := metrics.New(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		ch := slack.New(config.Secret(hook.URL()), vendor.New(vendor.Config{Vendor: "slack", Timeout: 5 * time.Second, Metrics: m}))
		return &Handler{Pool: pool, Rules: rules.Defaults(), Channel: ch, Metrics: m, Log: logging.Discard(), SLO: slo, Window: time.Second}
	}
	cfg := bus.ConsumerConfig{
		Durable:        "support-notify-alerts",
		FilterSubjects: bus.TypeFilterSubjects("support-notify-alerts", rules.Defaults().Types(rules.Alert)),
		Concurrency:    4, BatchSize: 100, AckWait: time.Second,
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}

	// Process A dies once it has recorded a digest of at least five
	// alerts: no ack leaves for them.
	ncA, jsA, err := bus.Connect(ctx, ns.Conn(natsauth.SupportNotify), "alerts-crashing", nil)
	if err != nil {
		t.Fatal(err)
	}
	hA := handler()
	crashed := make(chan struct{})
	var once sync.Once
	consumerA := bus.NewBatchConsumer(jsA, cfg, func(ctx context.Context, ds []*bus.Delivery) []error {
		errs := hA.PostAlerts(ctx, ds)
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM support.alerts_sent WHERE digest_size >= 5`).Scan(&n); err == nil && n > 0 {
			once.Do(func() { ncA.Close(); close(crashed) })
		}
		return errs
	}, bus.ConsumerOptions{DrainTimeout: time.Second})
	ctxA, cancelA := context.WithCancel(ctx)
	doneA := make(chan struct{})
	go func() { defer close(doneA); _ = consumerA.Run(ctxA) }()

	inc, ingress, err := bus.Connect(ctx, ns.Conn(natsauth.Ingress), "alerts-ingress", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inc.Close)
	pub := bus.NewPublisher(ingress, nil)
	ids := map[string]bool{}
	published := make(chan error, 1)
	evs := make([]string, 0, total)
	start := time.Now()
	go func() {
		tick := time.NewTicker(5 * time.Second / total)
		defer tick.Stop()
		for i := range total {
			ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), int64(1+i%3), time.Now())
			evs = append(evs, ev.GetEventId())
			if _, err := pub.PublishEvent(ctx, ev); err != nil {
				published <- err
				return
			}
			<-tick.C
		}
		published <- nil
	}()

	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("process A never recorded a digest")
	}
	cancelA()
	<-doneA

	// Process B takes over what A left unacked.
	ncB, jsB, err := bus.Connect(ctx, ns.Conn(natsauth.SupportNotify), "alerts-restarted", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncB.Close)
	hB := handler()
	var redelivered atomic.Int64
	consumerB := bus.NewBatchConsumer(jsB, cfg, func(ctx context.Context, ds []*bus.Delivery) []error {
		for _, d := range ds {
			if d.Delivered > 1 {
				redelivered.Add(1)
			}
		}
		return hB.PostAlerts(ctx, ds)
	}, bus.ConsumerOptions{})
	ctxB, cancelB := context.WithCancel(ctx)
	doneB := make(chan struct{})
	go func() { defer close(doneB); _ = consumerB.Run(ctxB) }()
	t.Cleanup(func() { cancelB(); <-doneB })

	if err := <-published; err != nil {
		t.Fatal(err)
	}
	for _, id := range evs {
		ids[id] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM support.alerts_sent`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d alerts recorded after 60s", n, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every redelivery of what A recorded has been settled before the
	// counts below mean anything.
	waitSettled(t, jsB, cfg.Durable)

	seen := map[string]int{}
	msgs := hook.Messages()
	for _, m := range msgs {
		for _, id := range m.EventIDs {
			seen[id]++
		}
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("event %s reached Slack %d times", id, seen[id])
		}
	}
	if len(seen) != total {
		t.Errorf("Slack names %d events, want %d", len(seen), total)
	}
	if redelivered.Load() == 0 {
		t.Error("nothing was redelivered after the crash; the test proved nothing")
	}
	if s := hook.Pace.Stats(); s.Unanswered != 0 {
		t.Errorf("%d requests ignored a Retry-After (%+v)", s.Unanswered, s)
	}
	if len(msgs) > total/3 {
		t.Errorf("%d messages for %d alerts: the burst was not folded", len(msgs), total)
	}
	var worst float64
	var late int
	if err := pool.QueryRow(ctx, `SELECT max(latency_seconds), count(*) FILTER (WHERE late) FROM support.alerts_sent`).Scan(&worst, &late); err != nil {
		t.Fatal(err)
	}
	if worst > slo.Seconds() || late > 0 {
		t.Errorf("slowest alert %.1fs, %d late; SLO %s", worst, late, slo)
	}
	t.Logf("%d alerts in %d messages, slowest %.2fs after its event, %d redeliveries after the crash, burst lasted %s",
		total, len(msgs), worst, redelivered.Load(), time.Since(start).Round(time.Millisecond))
}

// waitSettled waits until the durable has nothing pending or unacked.
func waitSettled(t *testing.T, js jetstream.JetStream, durable string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := js.Consumer(context.Background(), bus.StreamEvents, durable)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s not settled after 30s: %d pending, %d unacked", durable, info.NumPending, info.NumAckPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
