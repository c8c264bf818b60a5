package web

import (
	"context"
	"io/fs"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/billingclient"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	billingstate "github.com/launchready/launchready/services/billing-state"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/consoletest"
	"github.com/launchready/launchready/services/console/internal/store"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	supportnotify "github.com/launchready/launchready/services/support-notify"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// statusServer is billing-state's status API for the console's tests: the
// customers it knows, found by id, email or user id, with the console's
// token required as billing-state requires it.
type statusServer struct {
	billingv1.UnimplementedBillingStatusServiceServer
	customers []*billingv1.CustomerStatus
	changes   map[string][]*billingv1.CustomerEvent
}

const consoleToken = "console-test-token-0123456789abcdef"

func (s *statusServer) GetCustomerStatus(ctx context.Context, req *billingv1.GetCustomerStatusRequest) (*billingv1.CustomerStatus, error) {
	if err := checkToken(ctx); err != nil {
		return nil, err
	}
	for _, c := range s.customers {
		if (req.GetCustomerId() != "" && c.GetCustomerId() == req.GetCustomerId()) ||
			(req.GetEmail() != "" && strings.EqualFold(c.GetEmail(), req.GetEmail())) ||
			(req.GetUserId() != "" && c.GetUserId() == req.GetUserId()) {
			return c, nil
		}
	}
	return nil, status.Error(codes.NotFound, "customer not found")
}

func (s *statusServer) ListCustomerEvents(ctx context.Context, req *billingv1.ListCustomerEventsRequest) (*billingv1.ListCustomerEventsResponse, error) {
	if err := checkToken(ctx); err != nil {
		return nil, err
	}
	return &billingv1.ListCustomerEventsResponse{Events: s.changes[req.GetCustomerId()]}, nil
}

func checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+consoleToken {
		return status.Error(codes.Unauthenticated, "bad token")
	}
	return nil
}

// readBundle is the console with what its read side reads: every
// service's schema on its database, the reader pool, a status API and the
// dead letters.
type readBundle struct {
	*dlqBundle
	owner *statusServer
}

func setupRead(t *testing.T, st *statusServer) *readBundle {
	t.Helper()
	b := setupDLQ(t)
	url := b.pool.Config().ConnString()
	for _, s := range []func() (string, fs.FS){billingstate.Schema, crmsync.Schema, supportnotify.Schema} {
		name, files := s()
		if err := pg.MigrateShared(b.ctx, b.pool, name, files); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Migrate(b.ctx, b.pool); err != nil {
		t.Fatal(err)
	}
	reader, err := pg.Open(b.ctx, url, pg.WithMaxConns(2), pg.WithRole(pg.ConsoleReaderRole))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	billingv1.RegisterBillingStatusServiceServer(srv, st)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := billingclient.Dial(ln.Addr().String(), false, billingclient.Bearer(consoleToken))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	b.web.opts.Reader = reader
	b.web.opts.Billing = &Billing{Status: billingv1.NewBillingStatusServiceClient(conn)}
	return &readBundle{dlqBundle: b, owner: st}
}

// exec writes a service's rows as that service would (through the owner
// login, not the console's reader).
func (b *readBundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := b.pool.Exec(b.ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestSearchFindsACustomerByEachKey(t *testing.T) {
	st := &statusServer{customers: []*billingv1.CustomerStatus{{
		CustomerId: "cus_Search1", Email: "Pat@Example.com", UserId: "user-42", SubscriptionId: "sub_Search1",
		Status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, Entitled: true,
	}}}
	b := setupRead(t, st)
	b.exec(t, `INSERT INTO billing.customers (id) VALUES ('cus_Search1')`)
	b.exec(t, `INSERT INTO billing.subscriptions (id, customer_id, status) VALUES ('sub_Search1', 'cus_Search1', 'active')`)
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	for _, q := range []string{"cus_Search1", "pat@example.com", "user-42", "sub_Search1"} {
		p := br.get("/customers?q=" + url.QueryEscape(q))
		if p.status != 303 || p.location != "/customers/cus_Search1" {
			t.Errorf("search %q: %d to %q, want 303 to the customer: %s", q, p.status, p.location, p.body)
		}
	}
	p := br.get("/customers?q=" + url.QueryEscape("nobody@example.com"))
	if p.status != 404 || !strings.Contains(p.body, "No customer has the email nobody@example.com") {
		t.Errorf("unknown email: %d %s", p.status, p.body)
	}
	p = br.get("/customers?q=sub_Unknown")
	if p.status != 404 || !strings.Contains(p.body, "the subscription id") {
		t.Errorf("unknown subscription: %d %s", p.status, p.body)
	}
}

func TestCustomerPageShowsEverySystemAndMasksForAViewer(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	st := &statusServer{
		customers: []*billingv1.CustomerStatus{{
			CustomerId: "cus_Page1", Email: "jane.doe@example.com", UserId: "user-7", SubscriptionId: "sub_Page1", Plan: "price_pro",
			Status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE, Entitled: true, LastEventId: "evt_fail1",
		}},
		changes: map[string][]*billingv1.CustomerEvent{"cus_Page1": {{
			EventId: "evt_fail1", EventType: "invoice.payment_failed", Actor: "stripe", Action: "applied", RecordedAt: timestamppb.New(now),
			Before: &billingv1.CustomerStatus{Status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE},
			After:  &billingv1.CustomerStatus{Status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE},
		}}},
	}
	b := setupRead(t, st)
	// What each consumer recorded for the customer's two events.
	b.exec(t, `INSERT INTO billing.processed_events (event_id, event_type, customer_id, outcome) VALUES
		('evt_sub1', 'customer.subscription.created', 'cus_Page1', 'applied'),
		('evt_fail1', 'invoice.payment_failed', 'cus_Page1', 'applied')`)
	b.exec(t, `INSERT INTO crm.processed_events (event_id, event_type, customer_id, outcome) VALUES
		('evt_sub1', 'customer.subscription.created', 'cus_Page1', 'synced')`)
	b.exec(t, `INSERT INTO crm.customers (customer_id, email, name) VALUES ('cus_Page1', 'jane.doe@example.com', 'Jane Doe')`)
	b.exec(t, `INSERT INTO crm.contacts (provider, customer_id, crm_id, synced_at) VALUES ('hubspot', 'cus_Page1', '9001', $1)`, now)
	b.exec(t, `INSERT INTO support.processed_events (consumer, event_id, event_type, outcome) VALUES
		('support-notify', 'evt_fail1', 'invoice.payment_failed', 'created'),
		('support-notify-alerts', 'evt_fail1', 'invoice.payment_failed', 'alerted')`)
	b.exec(t, `INSERT INTO support.tickets (object_key, ticket_id, status, priority, customer_id, opened_by_event, last_event_id)
		VALUES ('invoice:in_1', 4242, 'open', 'high', 'cus_Page1', 'evt_fail1', 'evt_fail1')`)
	// crm-sync gave up on the failed payment.
	seq := consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{
		EventId: "evt_fail1", Type: "invoice.payment_failed", CustomerId: "cus_Page1"}, "hubspot: 503")
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	b.addStaff(t, "support@example.com", auth.Support, goodPassword, false)
	if err := store.Audit(b.ctx, b.pool, store.AuditEntry{Actor: "support@example.com", Action: "dlq_replay", Outcome: "ok", CustomerID: "cus_Page1", Reason: "HubSpot is back"}); err != nil {
		t.Fatal(err)
	}

	viewer := b.browser(t)
	viewer.signIn("viewer@example.com", goodPassword)
	p := viewer.get("/customers/cus_Page1")
	if p.status != 200 {
		t.Fatalf("customer page: %d %s", p.status, p.body)
	}
	for _, want := range []string{
		`id="status">past_due<`, // canonical status, through gRPC
		"active → past_due",     // billing-state's change
		`9001`,                  // the CRM contact
		`#4242`,                 // the open ticket
		`<td class="outcome billing-state">applied</td>`,
		`<td class="outcome crm-sync">synced</td>`,
		`<td class="outcome support-notify">created</td>`,
		`<td class="outcome support-notify-alerts">alerted</td>`,
		`/dead-letters/` + strconv.FormatUint(seq, 10) + `" class="bad">crm-sync: dead-lettered`,
		"HubSpot is back", // the audit row
		"j•••@example.com",
		"Not fetched: the console has no STRIPE_API_KEY.",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the customer page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "jane.doe@example.com") || strings.Contains(p.body, "Jane Doe") {
		t.Error("a viewer sees the customer's email or name")
	}
	if p.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", p.header.Get("Cache-Control"))
	}

	sup := b.browser(t)
	sup.signIn("support@example.com", goodPassword)
	if p := sup.get("/customers/cus_Page1"); !strings.Contains(p.body, "jane.doe@example.com") {
		t.Error("support does not see the email")
	}
	if p := sup.get("/customers/cus_Nobody"); !strings.Contains(p.body, "billing-state has no record of this customer.") {
		t.Errorf("unknown customer: %s", p.body)
	}
}

// With a key, the page shows the subscription as Stripe has it now
// (stripe-mock answers every id with its fixture subscription, status
// active), and says where it differs from the canonical status.
func TestCustomerPageShowsStripesLiveView(t *testing.T) {
	st := &statusServer{customers: []*billingv1.CustomerStatus{{
		CustomerId: "cus_Live1", SubscriptionId: "sub_Live1", Status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE,
	}}}
	b := setupRead(t, st)
	client, err := stripeapi.New(stripeapi.Config{Key: config.Secret("sk_test_" + strings.Repeat("0", 24)), Base: stripemock.Start(t)})
	if err != nil {
		t.Fatal(err)
	}
	b.web.opts.Stripe = client
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)
	p := br.get("/customers/cus_Live1")
	if !strings.Contains(p.body, `id="stripe-status">active <span class="warn">(differs`) {
		t.Fatalf("no live view of the subscription: %s", p.body)
	}
	if client.Requests() == 0 {
		t.Fatal("no request reached Stripe")
	}
}
