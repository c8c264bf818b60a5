package tickets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/vendor"
	"github.com/launchready/launchready/services/support-notify/internal/zendesk"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

type bundle struct {
	h     *Handler
	desk  *fakes.Zendesk
	pool  *pgxpool.Pool
	trips *pgtest.RoundTrips
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	trips := &pgtest.RoundTrips{}
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithTracer(trips))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	token := randomHex(t)
	desk := fakes.NewZendesk("ops@example.com", token)
	t.Cleanup(desk.Close)
	m, _ := metrics.New(nil)
	client := zendesk.New(zendesk.Config{BaseURL: desk.URL(), Email: "ops@example.com", APIToken: config.Secret(token)},
		vendor.New(vendor.Config{Vendor: "zendesk", Timeout: 5 * time.Second, Metrics: m}))
	h := &Handler{Consumer: "support-notify", Pool: pool, Rules: rules.Defaults(), Desk: client, Metrics: m, Log: logging.Discard()}
	return &bundle{h: h, desk: desk, pool: pool, trips: trips}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (b *bundle) handle(t *testing.T, ev *billingv1.BillingEvent) error {
	t.Helper()
	return b.handleAt(t, ev, 0)
}

// handleAt delivers ev as the message at seq in the stream (0: unknown).
func (b *bundle) handleAt(t *testing.T, ev *billingv1.BillingEvent, seq uint64) error {
	t.Helper()
	return b.h.OpenOrResolveTicket(context.Background(), &bus.Delivery{Event: ev, Subject: "billing.events." + ev.GetType(), Delivered: 1, StreamSeq: seq})
}

func (b *bundle) outcome(t *testing.T, ev *billingv1.BillingEvent) string {
	t.Helper()
	var o string
	err := b.pool.QueryRow(context.Background(), `SELECT outcome FROM support.processed_events WHERE event_id = $1`, ev.GetEventId()).Scan(&o)
	if err != nil {
		t.Fatalf("outcome of %s: %v", ev.GetEventId(), err)
	}
	return o
}

func (b *bundle) mustHandle(t *testing.T, ev *billingv1.BillingEvent) {
	t.Helper()
	if err := b.handle(t, ev); err != nil {
		t.Fatalf("handle %s: %v", ev.GetType(), err)
	}
}

// crashAfterDeskCall handles ev with a desk that opens the ticket and then
// loses the answer, as when the process dies between the Zendesk call and
// the commit: the transaction rolls back with the ticket already open in
// Zendesk. The handler gets its own desk back afterwards.
func (b *bundle) crashAfterDeskCall(t *testing.T, ev *billingv1.BillingEvent) {
	t.Helper()
	desk := b.h.Desk
	b.h.Desk = lostAnswerDesk{desk}
	defer func() { b.h.Desk = desk }()
	if err := b.handle(t, ev); err == nil {
		t.Fatal("the staged crash did not surface")
	}
}

// lostAnswerDesk forwards ticket creations to the desk and then fails.
type lostAnswerDesk struct{ Desk }

func (d lostAnswerDesk) CreateTicket(ctx context.Context, nt zendesk.NewTicket, key string) (int64, error) {
	if _, err := d.Desk.CreateTicket(ctx, nt, key); err != nil {
		return 0, err
	}
	return 0, errors.New("process killed before commit")
}

func (b *bundle) ticketRows(t *testing.T) (open, solved int) {
	t.Helper()
	err := b.pool.QueryRow(context.Background(),
		`SELECT count(*) FILTER (WHERE status = 'open'), count(*) FILTER (WHERE status = 'solved') FROM support.tickets`).Scan(&open, &solved)
	if err != nil {
		t.Fatal(err)
	}
	return open, solved
}

func TestFailedPaymentOpensOneTicketOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	ev := c.InvoiceFailed(journey.ID("in"), 1, time.Now().Add(-3*time.Second))
	b.mustHandle(t, ev)
	b.mustHandle(t, ev) // redelivery

	ts := b.desk.Tickets()
	if len(ts) != 1 {
		t.Fatalf("want 1 ticket, got %d", len(ts))
	}
	tk := ts[0]
	if tk.ExternalID != ev.GetEventId() || tk.Requester.Email != c.Email || tk.Priority != "normal" {
		t.Fatalf("ticket fields: %+v", tk)
	}
	if !slices.Contains(tk.Tags, "invoice_payment_failed") {
		t.Fatalf("tags %v", tk.Tags)
	}
	if tk.Comments[0].Public {
		t.Fatal("the description must be an internal note, not an email to the customer")
	}
	for _, want := range []string{"49.00 USD", "Attempt: 1", "Next retry:", "dashboard.stripe.com/test/invoices/" + ev.GetInvoiceId()} {
		if !strings.Contains(tk.Comments[0].Body, want) {
			t.Errorf("ticket body lacks %q:\n%s", want, tk.Comments[0].Body)
		}
	}
	if posts, _, _ := b.desk.Counts(); posts != 1 {
		t.Fatalf("a redelivery reached Zendesk: %d POSTs", posts)
	}
	if open, _ := b.ticketRows(t); open != 1 {
		t.Fatalf("want 1 open ticket row, got %d", open)
	}
}

// Each pass of the handler is three round trips (see attempt): opening a
// ticket takes two passes (the intent, then the ticket), a comment or a
// resolution one.
func TestTicketActionsCostThreeRoundTripsAPass(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	inv := journey.ID("in")
	for _, step := range []struct {
		name string
		ev   *billingv1.BillingEvent
		want int64
	}{
		{"open", c.InvoiceFailed(inv, 1, time.Now().Add(-3*time.Second)), 6},
		{"comment", c.InvoiceFailed(inv, 2, time.Now().Add(-2*time.Second)), 3},
		{"resolve", c.InvoicePaid("invoice.paid", inv, time.Now().Add(-time.Second)), 3},
	} {
		n := b.trips.Count()
		b.mustHandle(t, step.ev)
		if got := b.trips.Count() - n; got != step.want {
			t.Errorf("%s: %d round trips, want %d", step.name, got, step.want)
		}
	}
	ts := b.desk.Tickets()
	if len(ts) != 1 || len(ts[0].Comments) != 3 || ts[0].Status != "solved" {
		t.Fatalf("want one ticket with its description, a comment and the resolution, solved; got %+v", ts)
	}
	if open, solved := b.ticketRows(t); open != 0 || solved != 1 {
		t.Fatalf("ticket rows: %d open, %d solved; want 0 and 1", open, solved)
	}
}

func TestSuccessfulPurchaseOpensNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	b.mustHandle(t, c.CheckoutPaid(time.Now()))
	b.mustHandle(t, c.InvoicePaid("invoice.paid", journey.ID("in"), time.Now()))
	if posts, puts, _ := b.desk.Counts(); posts+puts != 0 {
		t.Fatalf("a success reached Zendesk: %d POSTs %d PUTs", posts, puts)
	}
}

// A crash after Zendesk opened the ticket but before our commit: the
// transaction rolls back, the event comes again, and the repeated
// Idempotency-Key gets the first ticket back instead of a second one.
func TestCrashBetweenZendeskCallAndCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	b.crashAfterDeskCall(t, ev)
	if open, _ := b.ticketRows(t); open != 0 {
		t.Fatalf("the rolled-back transaction left %d ticket rows", open)
	}
	b.mustHandle(t, ev)

	posts, _, hits := b.desk.Counts()
	if posts != 2 || hits != 1 {
		t.Fatalf("want 2 POSTs with 1 idempotent replay, got %d POSTs %d replays", posts, hits)
	}
	if n := len(b.desk.Tickets()); n != 1 {
		t.Fatalf("want exactly 1 ticket in Zendesk, got %d", n)
	}
	if open, _ := b.ticketRows(t); open != 1 {
		t.Fatalf("want the ticket recorded once, got %d rows", open)
	}
}

func TestFailedThenPaidResolvesWithoutNewTicket(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	in := journey.ID("in")
	now := time.Now()
	b.mustHandle(t, c.InvoiceFailed(in, 1, now.Add(-2*time.Hour)))
	b.mustHandle(t, c.InvoiceFailed(in, 2, now.Add(-time.Hour)))
	b.mustHandle(t, c.InvoicePaid("invoice.paid", in, now))
	b.mustHandle(t, c.InvoicePaid("invoice.payment_succeeded", in, now))

	ts := b.desk.Tickets()
	if len(ts) != 1 {
		t.Fatalf("want 1 ticket, got %d", len(ts))
	}
	tk := ts[0]
	if tk.Status != "solved" {
		t.Fatalf("ticket status %q, want solved", tk.Status)
	}
	if len(tk.Comments) != 3 {
		t.Fatalf("want description + retry comment + resolved comment, got %d comments", len(tk.Comments))
	}
	if !strings.Contains(tk.Comments[1].Body, "Attempt: 2") {
		t.Errorf("second failure comment: %s", tk.Comments[1].Body)
	}
	if !strings.HasPrefix(tk.Comments[2].Body, "Resolved: the invoice is paid.") {
		t.Errorf("resolved comment: %s", tk.Comments[2].Body)
	}
	if open, solved := b.ticketRows(t); open != 0 || solved != 1 {
		t.Fatalf("rows open=%d solved=%d", open, solved)
	}
}

// Stripe does not order events: a failure delivered after the payment that
// settled its invoice must not open a ticket.
func TestFailureAfterItsResolutionOpensNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	in := journey.ID("in")
	now := time.Now()
	b.mustHandle(t, c.InvoicePaid("invoice.paid", in, now))
	b.mustHandle(t, c.InvoiceFailed(in, 1, now.Add(-time.Hour)))
	if n := len(b.desk.Tickets()); n != 0 {
		t.Fatalf("stale failure opened %d tickets", n)
	}
}

// A failure that came earlier in the stream than the payment settling its
// invoice, but was handled after it (its worker was held up), opens its
// ticket, and the payment's resolution then solves it: the desk ends as in
// stream order. A failure later in the stream than the payment is
// overtaken and opens nothing.
func TestFailureHandledAfterALaterResolutionOpensAndSolvesItsTicket(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	now := time.Now()
	in := journey.ID("in")
	failed, paid := c.InvoiceFailed(in, 1, now.Add(-time.Hour)), c.InvoicePaid("invoice.paid", in, now)
	for _, step := range []struct {
		ev  *billingv1.BillingEvent
		seq uint64
	}{{paid, 2}, {failed, 1}, {failed, 1}, {c.InvoicePaid("invoice.payment_succeeded", in, now), 3}} {
		if err := b.handleAt(t, step.ev, step.seq); err != nil {
			t.Fatalf("handle %s at %d: %v", step.ev.GetType(), step.seq, err)
		}
	}
	ts := b.desk.Tickets()
	if len(ts) != 1 || ts[0].ExternalID != failed.GetEventId() || ts[0].Status != "solved" || len(ts[0].Comments) != 2 {
		t.Fatalf("want one ticket opened by the failure and solved, with its description and the resolution; got %+v", ts)
	}
	if body := ts[0].Comments[1].Body; !strings.HasPrefix(body, "Resolved: the invoice is paid.") || !strings.Contains(body, paid.GetEventId()) {
		t.Errorf("resolution comment is not the payment's:\n%s", body)
	}
	if open, solved := b.ticketRows(t); open != 0 || solved != 1 {
		t.Fatalf("ticket rows: %d open, %d solved; want 0 and 1", open, solved)
	}
	if got := b.outcome(t, failed); got != "created" {
		t.Errorf("the held-up failure's outcome %q, want created", got)
	}

	// Later in the stream than the payment: overtaken.
	other := journey.ID("in")
	otherPaid, otherFailed := c.InvoicePaid("invoice.paid", other, now), c.InvoiceFailed(other, 1, now.Add(-time.Hour))
	if err := b.handleAt(t, otherPaid, 5); err != nil {
		t.Fatal(err)
	}
	if err := b.handleAt(t, otherFailed, 6); err != nil {
		t.Fatal(err)
	}
	if n := len(b.desk.Tickets()); n != 1 {
		t.Fatalf("a failure after its invoice's payment in the stream opened a ticket: %d tickets", n)
	}
	if got := b.outcome(t, otherFailed); got != "already_resolved" {
		t.Errorf("the overtaken failure's outcome %q, want already_resolved", got)
	}
}

func TestDisputeTicketIsUrgent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := journey.NewCustomer().Dispute(12_050, "fraudulent", time.Now())
	b.mustHandle(t, ev)
	ts := b.desk.Tickets()
	if len(ts) != 1 || ts[0].Priority != "urgent" {
		t.Fatalf("want 1 urgent ticket, got %+v", ts)
	}
	body := ts[0].Comments[0].Body
	for _, want := range []string{"Amount: 120.50 EUR", "Dispute reason: fraudulent"} {
		if !strings.Contains(body, want) {
			t.Errorf("dispute ticket lacks %q:\n%s", want, body)
		}
	}
}

func TestCancellationAfterFailuresJoinsTheInvoiceTicket(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	in := journey.ID("in")
	b.mustHandle(t, c.InvoiceFailed(in, 4, time.Now().Add(-time.Minute)))
	b.mustHandle(t, c.SubscriptionDeleted("payment_failed", in, time.Now()))
	b.mustHandle(t, journey.NewCustomer().SubscriptionDeleted("cancellation_requested", "", time.Now()))
	ts := b.desk.Tickets()
	if len(ts) != 1 || len(ts[0].Comments) != 2 || !strings.Contains(ts[0].Comments[1].Body, "Subscription canceled") {
		t.Fatalf("want the cancellation as a comment on the invoice ticket: %+v", ts)
	}
}

func TestClosedTicketGetsAFollowUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	in := journey.ID("in")
	b.mustHandle(t, c.InvoiceFailed(in, 1, time.Now().Add(-time.Hour)))
	b.desk.Desk.Close(b.desk.Tickets()[0].ID)
	b.mustHandle(t, c.InvoiceFailed(in, 2, time.Now()))
	ts := b.desk.Tickets()
	if len(ts) != 2 || ts[1].Status == "closed" {
		t.Fatalf("want a follow-up ticket after the first was closed: %+v", ts)
	}
	if open, solved := b.ticketRows(t); open != 1 || solved != 1 {
		t.Fatalf("rows open=%d solved=%d", open, solved)
	}
}

func TestZendeskFailuresAreClassified(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())

	b.desk.FailNext(http.StatusServiceUnavailable)
	err := b.handle(t, ev)
	if err == nil || bus.IsPermanent(err) {
		t.Fatalf("5xx should be a retryable error, got %v", err)
	}
	b.desk.RateLimitNext(1, "7")
	err = b.handle(t, ev)
	if err == nil || bus.IsPermanent(err) || !strings.Contains(err.Error(), "HTTP 429") {
		t.Fatalf("429 should be retryable, got %v", err)
	}
	b.desk.FailNext(http.StatusForbidden)
	err = b.handle(t, ev)
	if !bus.IsPermanent(err) {
		t.Fatalf("403 should be permanent, got %v", err)
	}
	if strings.Contains(err.Error(), "fake-secret-value") {
		t.Fatalf("vendor body not redacted: %v", err)
	}
	if open, _ := b.ticketRows(t); open != 0 {
		t.Fatal("a failed call left a ticket row")
	}
	b.mustHandle(t, ev)
	if n := len(b.desk.Tickets()); n != 1 {
		t.Fatalf("want 1 ticket after recovery, got %d", n)
	}
}

// Two failures of one invoice handled at once must still open one ticket:
// the advisory lock serialises them.
func TestConcurrentFailuresOfOneInvoiceOpenOneTicket(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	in := journey.ID("in")
	b.desk.Hang(300 * time.Millisecond) // widen the race window
	errs := make(chan error, 2)
	for attempt := int64(1); attempt <= 2; attempt++ {
		ev := c.InvoiceFailed(in, attempt, time.Now())
		go func() { errs <- b.handle(t, ev) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ts := b.desk.Tickets()
	if len(ts) != 1 || len(ts[0].Comments) != 2 {
		t.Fatalf("want 1 ticket with 2 comments, got %+v", ts)
	}
}

func TestEventsOlderThanMaxAgeOpenNothingUnlessReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.h.MaxAge = 96 * time.Hour
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now().Add(-10*24*time.Hour))
	b.mustHandle(t, ev)
	if n := len(b.desk.Tickets()); n != 0 {
		t.Fatalf("a 10-day-old failure opened %d tickets", n)
	}
	if err := b.h.OpenOrResolveTicket(context.Background(), &bus.Delivery{Event: ev, Delivered: 1, Replay: true}); err != nil {
		t.Fatal(err)
	}
	if n := len(b.desk.Tickets()); n != 1 {
		t.Fatalf("a replayed old failure should open a ticket, got %d", n)
	}
}

func TestSnapshotsOpenNoTicket(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	snap := c.InvoiceFailed(journey.ID("in"), 1, time.Now().Add(-time.Minute))
	snap.Source = billingv1.EventSource_EVENT_SOURCE_SNAPSHOT
	b.mustHandle(t, snap)
	if n := len(b.desk.Tickets()); n != 0 {
		t.Fatalf("a snapshot opened %d tickets", n)
	}
	// A backfilled event of a minute ago is news like a webhook.
	in := journey.ID("in")
	failed := c.InvoiceFailed(in, 1, time.Now().Add(-2*time.Minute))
	failed.Source = billingv1.EventSource_EVENT_SOURCE_API
	b.mustHandle(t, failed)
	if n := len(b.desk.Tickets()); n != 1 {
		t.Fatalf("a backfilled failure opened %d tickets, want 1", n)
	}
}
