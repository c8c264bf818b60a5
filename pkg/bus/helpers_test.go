package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/goleak"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natstest"
)

func TestMain(m *testing.M) {
	// What telemetry.Setup installs in the services.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	goleak.VerifyTestMain(m,
		// A stream that sources another (BILLING_EVENTS sources the
		// standby) waits in nats-server for its source consumer's answer
		// for a bounded time; the server's shutdown does not cut it short.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"))
}

type bundle struct {
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	pub *bus.Publisher
}

func setup(t *testing.T) *bundle {
	t.Helper()
	// The library's own tests use consumers no user of the model has: an
	// open server, where EnsureStreams provisions. pkg/natsauth's tests run
	// the same library under each user's permissions.
	srv := natstest.StartOpen(t)
	ctx := testCtx(t)
	nc, js, err := bus.Connect(ctx, bus.ConnConfig{URL: srv.URL()}, "bus-test", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := bus.EnsureStreams(ctx, js, bus.StreamConfig{Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	return &bundle{srv: srv, nc: nc, js: js, pub: bus.NewPublisher(js, nil)}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func event(id, typ, customer string) *billingv1.BillingEvent {
	return &billingv1.BillingEvent{EventId: id, Type: typ, CustomerId: customer}
}

func (b *bundle) publish(t *testing.T, ev *billingv1.BillingEvent) bus.PubResult {
	t.Helper()
	res, err := b.pub.PublishEvent(testCtx(t), ev)
	if err != nil {
		t.Fatalf("publish %s: %v", ev.EventId, err)
	}
	return res
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	st, err := js.Stream(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.Msgs
}
