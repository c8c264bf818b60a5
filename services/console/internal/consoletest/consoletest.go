// Package consoletest builds what the console's tests show: dead letters
// written the way a consumer writes them, and billing-state's
// BillingAdminService in front of a Stripe that records its calls.
package consoletest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natstest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// PutDeadLetter stores ev as a dead letter of consumer, connected as that
// consumer's own NATS user (the only one allowed to), with the headers the
// bus writes and any extra ones (a traceparent the bus copies from the
// original message), and returns its sequence in BILLING_DLQ.
func PutDeadLetter(t testing.TB, ns *natstest.Server, consumer string, ev *billingv1.BillingEvent, reason string, extra ...nats.Header) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	nc, js, err := bus.Connect(ctx, ns.Conn(consumer), consumer+"-test", nil)
	if err != nil {
		t.Fatalf("connect as %s: %v", consumer, err)
	}
	defer nc.Close()
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	hdr := nats.Header{}
	hdr.Set(bus.HeaderConsumer, consumer)
	hdr.Set(bus.HeaderError, reason)
	hdr.Set(bus.HeaderDeliveryCount, "10")
	hdr.Set(bus.HeaderOriginalSubject, bus.EventSubject(ev.GetType()))
	hdr.Set(bus.HeaderEventID, ev.GetEventId())
	hdr.Set(bus.HeaderEventType, ev.GetType())
	hdr.Set(bus.HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	for _, h := range extra {
		for k, v := range h {
			hdr[k] = v
		}
	}
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: bus.DLQSubject(consumer), Data: data, Header: hdr})
	if err != nil {
		t.Fatalf("dead letter %s: %v", ev.GetEventId(), err)
	}
	t.Logf("dead letter %s of %s at %s", ev.GetEventId(), consumer, strconv.FormatUint(ack.Sequence, 10))
	return ack.Sequence
}
