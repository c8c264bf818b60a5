package tickets

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/test/testkit/journey"
)

// A staff resync of a customer replays the ticket creation a crash left
// pending (Zendesk answers with the ticket it opened: no second ticket)
// and re-posts the state of the open ticket as an internal note. The same
// request id again is answered from support.resync_log and reaches the
// desk no more; a new request id posts again; a customer with nothing
// open answers "nothing held".
func TestResyncResendsTicketsOncePerRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now()
	c := journey.NewCustomer()
	b.mustHandle(t, c.InvoiceFailed(journey.ID("in"), 1, now.Add(-2*time.Hour)))
	crashed := c.InvoiceFailed(journey.ID("in"), 1, now.Add(-time.Hour))
	b.crashAfterDeskCall(t, crashed)
	if open, _ := b.ticketRows(t); open != 1 || len(b.desk.Tickets()) != 2 {
		t.Fatalf("before the resync: %d open tickets recorded, %d in the desk; want 1 and 2", open, len(b.desk.Tickets()))
	}
	var processed int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM support.processed_events`).Scan(&processed); err != nil {
		t.Fatal(err)
	}

	handle := resync.Log{DB: b.pool, Schema: store.Schema, StaleAfter: time.Minute}.Once(b.h.Resync)
	req := resync.Request{RequestID: "rsy_tickets_1", CustomerID: c.ID, Actor: "support@example.com", Reason: "desk lost an update"}
	rep := handle(ctx, req)
	if rep.Outcome != resync.OutcomeResent || rep.Repeated || rep.Detail != "1 pending ticket replayed; 1 open ticket re-posted" {
		t.Fatalf("resync: %+v", rep)
	}
	ts := b.desk.Tickets()
	if len(ts) != 2 {
		t.Fatalf("%d tickets in the desk after the resync, want 2", len(ts))
	}
	if _, _, hits := b.desk.Counts(); hits != 1 {
		t.Fatalf("the pending creation was answered from the desk's idempotency store %d times, want 1", hits)
	}
	notes := func() (first, second int) { ts := b.desk.Tickets(); return len(ts[0].Comments), len(ts[1].Comments) }
	if n1, n2 := notes(); n1 != 2 || n2 != 1 {
		t.Fatalf("comments: %d and %d, want the description and the state note on the first ticket, the description on the replayed one", n1, n2)
	}
	note := b.desk.Tickets()[0].Comments[1]
	if note.Public || !strings.Contains(note.Body, "is open") || strings.Contains(note.Body, req.Actor) {
		t.Fatalf("state note (public %v): %s", note.Public, note.Body)
	}
	if open, _ := b.ticketRows(t); open != 2 {
		t.Fatalf("%d open tickets recorded after the resync, want 2", open)
	}
	var pending, after int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM support.ticket_intents WHERE ticket_id IS NULL AND abandoned_at IS NULL`).Scan(&pending); err != nil || pending != 0 {
		t.Fatalf("%d intents pending (%v)", pending, err)
	}
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM support.processed_events`).Scan(&after); err != nil || after != processed {
		t.Fatalf("processed_events: %d rows, %d before (%v): a resync is no event", after, processed, err)
	}
	var outcome, actor string
	if err := b.pool.QueryRow(ctx, `SELECT outcome, actor FROM support.resync_log WHERE request_id = $1 AND done_at IS NOT NULL`, req.RequestID).
		Scan(&outcome, &actor); err != nil || outcome != resync.OutcomeResent || actor != req.Actor {
		t.Fatalf("resync_log: %s %s (%v)", outcome, actor, err)
	}

	posts, puts, _ := b.desk.Counts()
	again := handle(ctx, req)
	if !again.Repeated || again.Outcome != resync.OutcomeResent || again.Detail != rep.Detail {
		t.Fatalf("repeated request: %+v", again)
	}
	if p, u, _ := b.desk.Counts(); p != posts || u != puts {
		t.Fatalf("the repeated request reached the desk: %d POSTs and %d PUTs more", p-posts, u-puts)
	}

	next := handle(ctx, resync.Request{RequestID: "rsy_tickets_2", CustomerID: c.ID, Actor: req.Actor, Reason: "once more"})
	if next.Outcome != resync.OutcomeResent || next.Detail != "2 open tickets re-posted" {
		t.Fatalf("second request: %+v", next)
	}
	if n1, n2 := notes(); n1 != 3 || n2 != 2 {
		t.Fatalf("comments after a second request: %d and %d, want 3 and 2", n1, n2)
	}

	none := handle(ctx, resync.Request{RequestID: "rsy_tickets_none", CustomerID: journey.NewCustomer().ID, Actor: req.Actor, Reason: "check"})
	if none.Outcome != resync.OutcomeNothingHeld {
		t.Fatalf("customer without tickets: %+v", none)
	}
}
