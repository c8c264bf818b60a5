package alerts

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// takeOver is what crashThenTakeOver leaves running: the second process's
// JetStream, and how many redeliveries it saw.
type takeOver struct {
	js          jetstream.JetStream
	redelivered atomic.Int64
}

// crashThenTakeOver publishes evs over spread through a consumer in
// process A, which dies (its NATS connection closes, no ack leaves) after
// the first handler call for which crashed reports true. Process B, a
// fresh handler on the same durable, then takes over what A left unacked.
// It returns once every event is published, with B still running until
// the test ends.
func crashThenTakeOver(t *testing.T, ns *natstest.Server, cfg bus.ConsumerConfig, newHandler func() *Handler,
	crashed func(context.Context) bool, evs []*billingv1.BillingEvent, spread time.Duration) *takeOver {
	t.Helper()
	ctx := context.Background()
	ncA, jsA, err := bus.Connect(ctx, ns.Conn(natsauth.SupportNotify), "alerts-crashing", nil)
	if err != nil {
		t.Fatal(err)
	}
	hA := newHandler()
	died := make(chan struct{})
	var once sync.Once
	consumerA := bus.NewBatchConsumer(jsA, cfg, func(ctx context.Context, ds []*bus.Delivery) []error {
		errs := hA.PostAlerts(ctx, ds)
		if crashed(ctx) {
			once.Do(func() { ncA.Close(); close(died) })
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
	published := make(chan error, 1)
	go func() {
		tick := time.NewTicker(spread / time.Duration(len(evs)))
		defer tick.Stop()
		for _, ev := range evs {
			if _, err := pub.PublishEvent(ctx, ev); err != nil {
				published <- err
				return
			}
			<-tick.C
		}
		published <- nil
	}()

	select {
	case <-died:
	case <-time.After(30 * time.Second):
		t.Fatal("process A never reached its crash point")
	}
	cancelA()
	<-doneA

	ncB, jsB, err := bus.Connect(ctx, ns.Conn(natsauth.SupportNotify), "alerts-restarted", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncB.Close)
	hB := newHandler()
	out := &takeOver{js: jsB}
	consumerB := bus.NewBatchConsumer(jsB, cfg, func(ctx context.Context, ds []*bus.Delivery) []error {
		for _, d := range ds {
			if d.Delivered > 1 {
				out.redelivered.Add(1)
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
	return out
}

// waitRecorded polls until support.alerts_sent holds want rows.
func waitRecorded(t *testing.T, pool *pgPool, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM support.alerts_sent`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d alerts recorded after 60s", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
