package tickets

import (
	"context"
	"strings"
	"testing"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/test/testkit/journey"
)

// A crash after Zendesk opened the ticket and before our commit, then a
// different event about the same invoice handled first: a second failed
// attempt must comment on the ticket already opened, and the payment must
// solve it, instead of a second ticket and an orphan nobody resolves.
func TestCrashThenAnotherEventAboutTheObjectReusesTheTicket(t *testing.T) {
	t.Parallel()
	now := time.Now()
	cases := []struct {
		name       string
		next       func(c journey.Customer, in string) *billingv1.BillingEvent
		wantStatus string
		wantNotes  int // description + later comments
	}{
		{"second failure", func(c journey.Customer, in string) *billingv1.BillingEvent { return c.InvoiceFailed(in, 2, now) }, "new", 2},
		{"payment", func(c journey.Customer, in string) *billingv1.BillingEvent {
			return c.InvoicePaid("invoice.paid", in, now)
		}, "solved", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			c := journey.NewCustomer()
			in := journey.ID("in")
			first := c.InvoiceFailed(in, 1, now.Add(-time.Hour))

			b.crashAfterDeskCall(t, first)
			if n := len(b.desk.Tickets()); n != 1 {
				t.Fatalf("the crashed attempt should have reached Zendesk once, got %d tickets", n)
			}

			b.mustHandle(t, tc.next(c, in))
			b.mustHandle(t, first) // the interrupted delivery comes back last

			ts := b.desk.Tickets()
			if len(ts) != 1 {
				t.Fatalf("want exactly 1 ticket in Zendesk, got %d", len(ts))
			}
			if ts[0].ExternalID != first.GetEventId() {
				t.Fatalf("ticket external id %q, want the first failure %q", ts[0].ExternalID, first.GetEventId())
			}
			if ts[0].Status != tc.wantStatus {
				t.Fatalf("ticket status %q, want %q", ts[0].Status, tc.wantStatus)
			}
			if len(ts[0].Comments) != tc.wantNotes {
				t.Fatalf("want %d notes on the ticket, got %d", tc.wantNotes, len(ts[0].Comments))
			}
			if tc.wantStatus == "solved" && !strings.HasPrefix(ts[0].Comments[1].Body, "Resolved:") {
				t.Fatalf("resolved note: %s", ts[0].Comments[1].Body)
			}
			if _, _, hits := b.desk.Counts(); hits != 1 {
				t.Fatalf("want the crashed creation replayed once by its Idempotency-Key, got %d replays", hits)
			}
			var rows int
			var ticketID int64
			err := b.pool.QueryRow(context.Background(),
				`SELECT count(*), max(ticket_id) FROM support.tickets WHERE object_key = $1`, "invoice:"+in).Scan(&rows, &ticketID)
			if err != nil {
				t.Fatal(err)
			}
			if rows != 1 || ticketID != ts[0].ID {
				t.Fatalf("want ticket %d recorded once for the invoice, got %d rows (ticket %d)", ts[0].ID, rows, ticketID)
			}
			var pending int
			if err := b.pool.QueryRow(context.Background(),
				`SELECT count(*) FROM support.ticket_intents WHERE ticket_id IS NULL`).Scan(&pending); err != nil {
				t.Fatal(err)
			}
			if pending != 0 {
				t.Fatalf("%d ticket intents left pending", pending)
			}
		})
	}
}
