package crmsync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/resync"
)

// The console's resync reaches the running service through the NATS
// server with the production permissions (the console's user asks,
// crm-sync's answers on its own subject), and the reply comes back: the
// customer's documents are pushed to HubSpot again without a new record.
// Once the service stops, the console hears that nobody answered.
func TestResyncThroughNATS(t *testing.T) {
	e := newEnv(t, nil)
	in := e.start(nil)
	js, all := journeys(t, "race")
	j := js[0]
	e.publish(all...)
	e.waitProcessed(len(all), 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, _, err := bus.Connect(ctx, e.nats.Conn(natsauth.Console), "crm-sync-test-console", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	contacts, writes := len(e.fake.Contacts()), e.fake.Writes()
	req := resync.Request{RequestID: "rsy_through_nats", CustomerID: j.CustomerID, Actor: "support@example.com", Reason: "CRM is stale"}
	rep, err := resync.Ask(ctx, nc, Durable, req)
	if err != nil {
		t.Fatalf("ask crm-sync: %v", err)
	}
	if rep.Outcome != resync.OutcomeResent || rep.Consumer != Durable || rep.RequestID != req.RequestID {
		t.Fatalf("reply %+v", rep)
	}
	if e.fake.Writes() <= writes || len(e.fake.Contacts()) != contacts {
		t.Fatalf("HubSpot: %d writes before, %d after; %d contacts, want %d", writes, e.fake.Writes(), len(e.fake.Contacts()), contacts)
	}
	in.stop(t)
	if _, err := resync.Ask(ctx, nc, Durable, req); !errors.Is(err, resync.ErrNoResponder) {
		t.Fatalf("ask a stopped crm-sync: %v, want %v", err, resync.ErrNoResponder)
	}
}
