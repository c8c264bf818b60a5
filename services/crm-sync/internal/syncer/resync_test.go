package syncer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/services/crm-sync/internal/store"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
)

// A staff resync pushes the customer's current documents again through the
// ordinary push: the same contact and deal are written again (no second
// record), the sync log shows the call, no event is recorded as processed,
// and the outcome is in crm.resync_log. The same request id again is
// answered from the log and writes nothing; a customer crm-sync never saw
// answers "nothing held"; a failed push may be retried with the same id.
func TestResyncPushesOncePerRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	j := journeys(t, "race")[0]
	for _, x := range journeys(t, "race") {
		if x.Name == "trial" {
			j = x
		}
	}
	for _, ev := range j.Events {
		if _, err := b.sy.SyncEvent(ctx, ev, 1); err != nil {
			t.Fatalf("%s: %v", ev.GetEventId(), err)
		}
	}
	checkCRM(t, b, j, j.Events)
	contacts, deals, writes := len(b.fake.Contacts()), len(b.fake.Deals()), b.fake.Writes()
	var processed int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM crm.processed_events`).Scan(&processed); err != nil {
		t.Fatal(err)
	}

	log := resync.Log{DB: b.pool, Schema: store.Schema, StaleAfter: time.Minute}
	handle := log.Once(b.sy.Resync)
	req := resync.Request{RequestID: "rsy_crm_first", CustomerID: j.CustomerID, Actor: "support@example.com", Reason: "CRM shows an old plan"}

	rep := handle(ctx, req)
	if rep.Outcome != resync.OutcomeResent || rep.Repeated {
		t.Fatalf("first resync: %+v", rep)
	}
	if got := b.fake.Writes(); got <= writes {
		t.Fatalf("the resync wrote nothing to HubSpot (%d writes before, %d after)", writes, got)
	}
	if len(b.fake.Contacts()) != contacts || len(b.fake.Deals()) != deals {
		t.Fatalf("the resync made records: %d contacts, %d deals; want %d and %d", len(b.fake.Contacts()), len(b.fake.Deals()), contacts, deals)
	}
	checkCRM(t, b, j, j.Events)
	var after, logged int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM crm.processed_events`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != processed {
		t.Errorf("processed_events went from %d to %d rows: a resync is no event", processed, after)
	}
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM crm.sync_log WHERE customer_id = $1 AND event_type = 'resync'`, j.CustomerID).Scan(&logged); err != nil || logged == 0 {
		t.Errorf("the sync log has %d resync calls (%v)", logged, err)
	}
	var outcome, actor, reason string
	if err := b.pool.QueryRow(ctx, `SELECT outcome, actor, reason FROM crm.resync_log WHERE request_id = $1 AND done_at IS NOT NULL`, req.RequestID).
		Scan(&outcome, &actor, &reason); err != nil || outcome != resync.OutcomeResent || actor != req.Actor || reason != req.Reason {
		t.Errorf("resync_log: %s %s %q (%v)", outcome, actor, reason, err)
	}

	writes = b.fake.Writes()
	again := handle(ctx, req)
	if again.Outcome != resync.OutcomeResent || !again.Repeated || again.Detail != rep.Detail {
		t.Fatalf("repeated request: %+v, want the first answer marked repeated", again)
	}
	if got := b.fake.Writes(); got != writes {
		t.Fatalf("the repeated request id wrote %d times to HubSpot", got-writes)
	}

	unknown := handle(ctx, resync.Request{RequestID: "rsy_crm_unknown", CustomerID: "cus_NeverSeen", Actor: req.Actor, Reason: req.Reason})
	if unknown.Outcome != resync.OutcomeNothingHeld || !strings.Contains(unknown.Detail, "cus_NeverSeen") {
		t.Fatalf("unknown customer: %+v", unknown)
	}
	if got := b.fake.Writes(); got != writes {
		t.Fatalf("a resync of an unknown customer wrote to HubSpot")
	}

	// HubSpot refuses the write: failed, recorded, and the same id may
	// try again once it is back.
	b.fake.Inject(hubspotfake.Fault{Status: 400, Count: 1000})
	failing := resync.Request{RequestID: "rsy_crm_failing", CustomerID: j.CustomerID, Actor: req.Actor, Reason: req.Reason}
	if rep := handle(ctx, failing); rep.Outcome != resync.OutcomeFailed || rep.Detail == "" {
		t.Fatalf("refused push: %+v", rep)
	}
	b.fake.ClearFaults()
	if rep := handle(ctx, failing); rep.Outcome != resync.OutcomeResent || rep.Repeated {
		t.Fatalf("retry of a failed request id: %+v", rep)
	}
	if len(b.fake.Contacts()) != contacts {
		t.Fatalf("%d contacts after the retried resync, want %d", len(b.fake.Contacts()), contacts)
	}
}
