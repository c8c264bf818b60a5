package grpcapi

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// fakeStripe records every request and gives each the same answer.
type fakeStripe struct {
	mu   sync.Mutex
	keys []string
	srv  *httptest.Server
}

func newFakeStripe(t *testing.T, status int, body string) *fakeStripe {
	f := &fakeStripe{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.keys = append(f.keys, r.Method+" "+r.URL.Path+" "+r.Header.Get("Idempotency-Key"))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeStripe) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...)
}

func stripeClient(t *testing.T, base string) *stripeapi.Client {
	t.Helper()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	c, err := stripeapi.New(stripeapi.Config{Key: config.Secret("sk_test_" + hex.EncodeToString(b)), Base: base, Rate: 100, MaxNetworkRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (b *bundle) adminClient() billingv1.BillingAdminServiceClient {
	return billingv1.NewBillingAdminServiceClient(b.conn(grpc.WithTransportCredentials(insecure.NewCredentials())))
}

func refund(actionID string) *billingv1.RefundPaymentRequest {
	return &billingv1.RefundPaymentRequest{ActionId: actionID, CustomerId: "cus_Admin1", ChargeId: "ch_Admin1", Amount: 500,
		Reason: "double charged, ticket 4711", StripeReason: "duplicate",
		Actor: &billingv1.Actor{Email: "ana@example.com", Role: "billing_admin"}}
}

func (b *bundle) actionRow(t *testing.T, id string) (state, code string, audits int) {
	t.Helper()
	ctx := testContext(t)
	if err := b.pool.QueryRow(ctx, `SELECT state, error_code FROM billing.admin_actions WHERE action_id = $1`, id).Scan(&state, &code); err != nil {
		t.Fatalf("admin_actions row %s: %v", id, err)
	}
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM billing.audit_log WHERE action LIKE 'admin.%' AND after->>'state' = $1 AND actor = 'staff:ana@example.com'`, state).Scan(&audits); err != nil {
		t.Fatal(err)
	}
	return state, code, audits
}

// The same action submitted twice makes one Stripe call, with the key
// derived from the action id; the second answer is the recorded one.
func TestAdminDoubleSubmitIsOneStripeCall(t *testing.T) {
	fake := newFakeStripe(t, http.StatusOK, `{"id":"re_Admin1","object":"refund","amount":500,"status":"succeeded","created":1800000000}`)
	b := setup(t, setupOptions{stripe: stripeClient(t, fake.srv.URL)})
	c := b.adminClient()
	ctx := as(testContext(t), b.admin)
	first, err := c.RefundPayment(ctx, refund("act_double1"))
	if err != nil {
		t.Fatal(err)
	}
	// The refund's webhook, as billing-state's consumer links it.
	if _, err := b.pool.Exec(ctx, `UPDATE billing.admin_actions SET event_ids = '{evt_Refunded1}' WHERE action_id = 'act_double1'`); err != nil {
		t.Fatal(err)
	}
	second, err := c.RefundPayment(ctx, refund("act_double1"))
	if err != nil {
		t.Fatal(err)
	}
	if ids := second.GetEventIds(); len(ids) != 1 || ids[0] != "evt_Refunded1" {
		t.Fatalf("second submit shows events %v, want the linked webhook", ids)
	}
	if first.GetState() != billingv1.AdminAction_STATE_SUCCEEDED || first.GetStripeObjectId() != "re_Admin1" || first.GetReplayed() {
		t.Fatalf("first submit: %v", first)
	}
	if second.GetState() != billingv1.AdminAction_STATE_SUCCEEDED || second.GetStripeObjectId() != "re_Admin1" || !second.GetReplayed() {
		t.Fatalf("second submit: %v, want the recorded result", second)
	}
	reqs := fake.requests()
	if want := "POST /v1/refunds " + stripeapi.IdempotencyKey("act_double1"); len(reqs) != 1 || reqs[0] != want {
		t.Fatalf("Stripe got %q, want one %q", reqs, want)
	}
	if st, _, audits := b.actionRow(t, "act_double1"); st != "succeeded" || audits != 1 {
		t.Fatalf("recorded %s with %d audit rows, want succeeded with 1", st, audits)
	}
	// The same id for another request is refused, not replayed.
	other := refund("act_double1")
	other.Amount = 900
	if _, err := c.RefundPayment(ctx, other); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("reused action id: %v, want InvalidArgument", err)
	}
	if n := len(fake.requests()); n != 1 {
		t.Fatalf("Stripe got %d requests, want still 1", n)
	}
}

// Stripe's refusal is shown in plain words with its code, and the action is
// recorded as failed, never as done.
func TestAdminStripeRefusalIsShownAndNothingDone(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   codes.Code
	}{
		{http.StatusPaymentRequired, "card_declined", codes.FailedPrecondition},
		{http.StatusBadRequest, "charge_already_refunded", codes.FailedPrecondition},
		{http.StatusBadRequest, "amount_too_large", codes.InvalidArgument},
	} {
		t.Run(tc.code, func(t *testing.T) {
			fake := newFakeStripe(t, tc.status, `{"error":{"type":"invalid_request_error","code":"`+tc.code+`","message":"refused"}}`)
			b := setup(t, setupOptions{stripe: stripeClient(t, fake.srv.URL)})
			c := b.adminClient()
			ctx := as(testContext(t), b.admin)
			for attempt := range 2 {
				_, err := c.RefundPayment(ctx, refund("act_refused"))
				st := status.Convert(err)
				if st.Code() != tc.want {
					t.Fatalf("attempt %d: %v, want %s", attempt, err, tc.want)
				}
				var reason string
				for _, d := range st.Details() {
					if info, ok := d.(*errdetails.ErrorInfo); ok {
						reason = info.GetReason()
					}
				}
				if reason != tc.code || st.Message() == "" {
					t.Fatalf("attempt %d: reason %q message %q, want reason %s and plain words", attempt, reason, st.Message(), tc.code)
				}
			}
			if n := len(fake.requests()); n != 1 {
				t.Fatalf("Stripe got %d requests for one refused action, want 1", n)
			}
			if st, code, audits := b.actionRow(t, "act_refused"); st != "failed" || code != tc.code || audits != 1 {
				t.Fatalf("recorded %s (%s) with %d audit rows, want failed (%s) with 1", st, code, audits, tc.code)
			}
		})
	}
}

// A read token may not act, and nothing is recorded or sent.
func TestAdminReadTokenRefused(t *testing.T) {
	fake := newFakeStripe(t, http.StatusOK, `{"id":"re_x","object":"refund","created":1800000000}`)
	b := setup(t, setupOptions{stripe: stripeClient(t, fake.srv.URL)})
	c := b.adminClient()
	ctx := as(testContext(t), b.read)
	if _, err := c.RefundPayment(ctx, refund("act_read1")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("refund with a read token: %v, want PermissionDenied", err)
	}
	if _, err := c.CancelSubscription(ctx, &billingv1.CancelSubscriptionRequest{ActionId: "act_read2", SubscriptionId: "sub_x",
		Reason: "r", Actor: &billingv1.Actor{Email: "ana@example.com"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("cancel with a read token: %v, want PermissionDenied", err)
	}
	if _, err := c.RefundPayment(testContext(t), refund("act_read3")); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("refund without a token: %v, want Unauthenticated", err)
	}
	var n int
	if err := b.pool.QueryRow(testContext(t), `SELECT count(*) FROM billing.admin_actions`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d actions recorded (%v), want none", n, err)
	}
	if reqs := fake.requests(); len(reqs) != 0 {
		t.Fatalf("Stripe got %q", reqs)
	}
}

// Every action's request, through the service, is one Stripe accepts.
func TestAdminActionsAgainstStripeMock(t *testing.T) {
	b := setup(t, setupOptions{stripe: stripeClient(t, stripemock.Start(t))})
	c := b.adminClient()
	ctx := as(testContext(t), b.admin)
	actor := &billingv1.Actor{Email: "ana@example.com", Role: "billing_admin"}
	if a, err := c.RefundPayment(ctx, refund("act_mock1")); err != nil || a.GetState() != billingv1.AdminAction_STATE_SUCCEEDED {
		t.Fatalf("partial refund: %v %v", a, err)
	}
	if a, err := c.CancelSubscription(ctx, &billingv1.CancelSubscriptionRequest{ActionId: "act_mock2", Actor: actor, CustomerId: "cus_LRmock1",
		SubscriptionId: "sub_LRmock1", AtPeriodEnd: true, Reason: "asked to stop"}); err != nil || a.GetState() != billingv1.AdminAction_STATE_SUCCEEDED {
		t.Fatalf("cancel at period end: %v %v", a, err)
	}
	if a, err := c.ChangeSubscriptionPlan(ctx, &billingv1.ChangeSubscriptionPlanRequest{ActionId: "act_mock3", Actor: actor, CustomerId: "cus_LRmock1",
		SubscriptionId: "sub_LRmock1", PriceId: "price_LRmock2", ProrationBehavior: "create_prorations", Reason: "upgrade"}); err != nil ||
		a.GetState() != billingv1.AdminAction_STATE_SUCCEEDED {
		t.Fatalf("plan change: %v %v", a, err)
	}
}
