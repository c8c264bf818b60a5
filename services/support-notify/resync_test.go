package supportnotify_test

import (
	"context"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/test/testkit/journey"
)

// The console's resync reaches the running service's tickets durable
// through the NATS server with the production permissions, and its reply
// comes back: the open ticket gets one note, and the same request again is
// answered from the record without a second.
func TestTicketResyncThroughNATS(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	c := journey.NewCustomer()
	b.publish(t, c.InvoiceFailed(journey.ID("in"), 1, time.Now().Add(-time.Minute)))
	b.drained(t)
	if n := len(b.zendesk.Tickets()); n != 1 {
		t.Fatalf("%d tickets before the resync, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, _, err := bus.Connect(ctx, b.ns.Conn(natsauth.Console), "support-notify-test-console", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := resync.Request{RequestID: "rsy_ticket_through_nats", CustomerID: c.ID, Actor: "support@example.com", Reason: "desk lost an update"}
	for i, repeated := range []bool{false, true} {
		rep, err := resync.Ask(ctx, nc, natsauth.SupportNotify, req)
		if err != nil {
			t.Fatalf("ask %d: %v", i, err)
		}
		if rep.Outcome != resync.OutcomeResent || rep.Repeated != repeated || rep.Detail != "1 open ticket re-posted" {
			t.Fatalf("reply %d: %+v", i, rep)
		}
		if n := len(b.zendesk.Tickets()[0].Comments); n != 2 {
			t.Fatalf("after ask %d the ticket has %d comments, want its description and one state note", i, n)
		}
	}
}
