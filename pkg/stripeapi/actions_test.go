package stripeapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// recorded is one request the recording Stripe received.
type recorded struct {
	Method, Path, IdempotencyKey string
	Form                         map[string]string
}

// recordingStripe answers like Stripe: the first request with an
// idempotency key is served by answer, and a later one with the same key
// gets the same response without answer being called again.
type recordingStripe struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []recorded
	served   map[string]fakeAnswer
	answer   func(r recorded) fakeAnswer
}

type fakeAnswer struct {
	Status int
	Body   string
}

func newRecordingStripe(t *testing.T, answer func(recorded) fakeAnswer) *recordingStripe {
	rs := &recordingStripe{served: map[string]fakeAnswer{}, answer: answer}
	rs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec := recorded{Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: map[string]string{}}
		for k := range r.PostForm {
			rec.Form[k] = r.PostForm.Get(k)
		}
		rs.mu.Lock()
		rs.requests = append(rs.requests, rec)
		a, seen := rs.served[rec.IdempotencyKey]
		if !seen || rec.IdempotencyKey == "" {
			a = rs.answer(rec)
			if rec.IdempotencyKey != "" && a.Status < 500 {
				rs.served[rec.IdempotencyKey] = a
			}
		}
		rs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_recorded")
		if a.Status >= 500 {
			// As Stripe does for a failure a retry may cure.
			w.Header().Set("Stripe-Should-Retry", "true")
		}
		w.WriteHeader(a.Status)
		_, _ = fmt.Fprint(w, a.Body)
	}))
	t.Cleanup(rs.srv.Close)
	return rs
}

func (rs *recordingStripe) calls() []recorded {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]recorded(nil), rs.requests...)
}

func actionClient(t *testing.T, base string) *stripeapi.Client {
	t.Helper()
	c, err := stripeapi.New(stripeapi.Config{Key: config.Secret(testKey()), Base: base, Rate: 100, Livemode: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A refund carries the action's idempotency key and its id in metadata;
// when Stripe fails once, stripe-go's retry is the same request, so Stripe
// makes one refund.
func TestRefundRetriesWithOneIdempotencyKey(t *testing.T) {
	failures := 1
	rs := newRecordingStripe(t, func(r recorded) fakeAnswer {
		if failures > 0 {
			failures--
			return fakeAnswer{500, `{"error":{"type":"api_error","message":"try again"}}`}
		}
		return fakeAnswer{200, `{"id":"re_1","object":"refund","amount":500,"status":"succeeded","created":1800000000}`}
	})
	c := actionClient(t, rs.srv.URL)
	o, err := c.Refund(context.Background(), stripeapi.RefundRequest{ActionID: "act_1", Charge: "ch_1", Amount: 500, Reason: "requested_by_customer"})
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "re_1" || o.Object != "refund" {
		t.Fatalf("refund answer read as %+v", o)
	}
	calls := rs.calls()
	if len(calls) != 2 {
		t.Fatalf("%d requests, want the failed one and its retry: %+v", len(calls), calls)
	}
	for _, r := range calls {
		if r.Method != http.MethodPost || r.Path != "/v1/refunds" {
			t.Errorf("request %s %s, want POST /v1/refunds", r.Method, r.Path)
		}
		if r.IdempotencyKey != stripeapi.IdempotencyKey("act_1") {
			t.Errorf("Idempotency-Key %q, want %q", r.IdempotencyKey, stripeapi.IdempotencyKey("act_1"))
		}
		want := map[string]string{"charge": "ch_1", "amount": "500", "reason": "requested_by_customer", "metadata[launchready_action_id]": "act_1"}
		for k, v := range want {
			if r.Form[k] != v {
				t.Errorf("form %s = %q, want %q (form %v)", k, r.Form[k], v, r.Form)
			}
		}
	}
}

// Stripe's refusal comes back with its code, and the same action id sent
// again is answered from Stripe's idempotency record, not acted on twice.
func TestRefundRefusedKeepsStripesCode(t *testing.T) {
	answered := 0
	rs := newRecordingStripe(t, func(r recorded) fakeAnswer {
		answered++
		return fakeAnswer{400, `{"error":{"type":"invalid_request_error","code":"charge_already_refunded","message":"Charge ch_2 has already been refunded."}}`}
	})
	c := actionClient(t, rs.srv.URL)
	for range 2 {
		_, err := c.Refund(context.Background(), stripeapi.RefundRequest{ActionID: "act_2", Charge: "ch_2"})
		var ae *stripeapi.APIError
		if !errors.As(err, &ae) || ae.Code != "charge_already_refunded" || ae.Status != http.StatusBadRequest {
			t.Fatalf("refund of a refunded charge: %v, want Stripe's charge_already_refunded", err)
		}
	}
	if answered != 1 {
		t.Fatalf("Stripe acted on %d requests for one action id, want 1", answered)
	}
	if _, err := c.Refund(context.Background(), stripeapi.RefundRequest{ActionID: "act_3"}); err == nil || len(rs.calls()) != 2 {
		t.Fatalf("a refund naming no payment: %v after %d requests, want refused before any request", err, len(rs.calls()))
	}
}

// Cancelling now tags the subscription with the action, then deletes it;
// at period end is one update. A plan change with no item named reads the
// subscription's only item.
func TestSubscriptionActionsRequests(t *testing.T) {
	rs := newRecordingStripe(t, func(r recorded) fakeAnswer {
		if r.Method == http.MethodGet {
			return fakeAnswer{200, `{"id":"sub_1","object":"subscription","created":1800000000,"items":{"object":"list","data":[{"id":"si_1","object":"subscription_item"}]}}`}
		}
		return fakeAnswer{200, `{"id":"sub_1","object":"subscription","created":1800000000}`}
	})
	c := actionClient(t, rs.srv.URL)
	ctx := context.Background()
	if _, err := c.CancelSubscription(ctx, "act_now", "sub_1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CancelSubscription(ctx, "act_end", "sub_1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChangeSubscriptionPlan(ctx, stripeapi.PlanChange{ActionID: "act_plan", Subscription: "sub_1", Price: "price_2", Proration: "always_invoice"}); err != nil {
		t.Fatal(err)
	}
	calls := rs.calls()
	want := []struct {
		method, key string
		form        map[string]string
	}{
		{http.MethodPost, stripeapi.IdempotencyKey("act_now") + "-tag", map[string]string{"metadata[launchready_action_id]": "act_now"}},
		{http.MethodDelete, stripeapi.IdempotencyKey("act_now"), map[string]string{}},
		{http.MethodPost, stripeapi.IdempotencyKey("act_end"), map[string]string{"cancel_at_period_end": "true", "metadata[launchready_action_id]": "act_end"}},
		{http.MethodGet, "", map[string]string{}},
		{http.MethodPost, stripeapi.IdempotencyKey("act_plan"), map[string]string{"items[0][id]": "si_1", "items[0][price]": "price_2",
			"proration_behavior": "always_invoice", "metadata[launchready_action_id]": "act_plan"}},
	}
	if len(calls) != len(want) {
		t.Fatalf("%d requests, want %d: %+v", len(calls), len(want), calls)
	}
	for i, w := range want {
		r := calls[i]
		if r.Method != w.method || r.Path != "/v1/subscriptions/sub_1" {
			t.Errorf("request %d: %s %s, want %s /v1/subscriptions/sub_1", i, r.Method, r.Path, w.method)
		}
		if w.key != "" && r.IdempotencyKey != w.key {
			t.Errorf("request %d: Idempotency-Key %q, want %q", i, r.IdempotencyKey, w.key)
		}
		if len(r.Form) != len(w.form) {
			t.Errorf("request %d: form %v, want %v", i, r.Form, w.form)
		}
		for k, v := range w.form {
			if r.Form[k] != v {
				t.Errorf("request %d: form %s = %q, want %q", i, k, r.Form[k], v)
			}
		}
	}
}

// stripe-mock validates each action's request against Stripe's OpenAPI
// specification.
func TestActionShapesAgainstStripeMock(t *testing.T) {
	c := actionClient(t, stripemock.Start(t))
	ctx := context.Background()
	if o, err := c.Refund(ctx, stripeapi.RefundRequest{ActionID: "act_m1", Charge: "ch_LRmock1", Amount: 100, Reason: "requested_by_customer"}); err != nil || o.Object != "refund" {
		t.Fatalf("partial refund of a charge: %+v %v", o, err)
	}
	if o, err := c.Refund(ctx, stripeapi.RefundRequest{ActionID: "act_m2", PaymentIntent: "pi_LRmock1"}); err != nil || o.Object != "refund" {
		t.Fatalf("full refund of a payment intent: %+v %v", o, err)
	}
	if o, err := c.CancelSubscription(ctx, "act_m3", "sub_LRmock1", true); err != nil || o.Object != "subscription" {
		t.Fatalf("cancel at period end: %+v %v", o, err)
	}
	if o, err := c.CancelSubscription(ctx, "act_m4", "sub_LRmock1", false); err != nil || o.Object != "subscription" {
		t.Fatalf("cancel now: %+v %v", o, err)
	}
	if o, err := c.ChangeSubscriptionPlan(ctx, stripeapi.PlanChange{ActionID: "act_m5", Subscription: "sub_LRmock1", Price: "price_LRmock2", Proration: "create_prorations"}); err != nil || o.Object != "subscription" {
		t.Fatalf("plan change: %+v %v", o, err)
	}
}

// The action's trace rides in the metadata, beside its id, so the webhook
// the change causes can link to it; without one, nothing is added.
func TestActionTraceRidesInTheMetadata(t *testing.T) {
	rs := newRecordingStripe(t, func(r recorded) fakeAnswer {
		return fakeAnswer{200, `{"id":"re_1","object":"refund","amount":500,"status":"succeeded","created":1800000000}`}
	})
	c := actionClient(t, rs.srv.URL)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := c.Refund(stripeapi.WithActionTrace(context.Background(), tp), stripeapi.RefundRequest{ActionID: "act_t", Charge: "ch_1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refund(context.Background(), stripeapi.RefundRequest{ActionID: "act_u", Charge: "ch_1"}); err != nil {
		t.Fatal(err)
	}
	calls := rs.calls()
	if len(calls) != 2 {
		t.Fatalf("%d requests", len(calls))
	}
	if got := calls[0].Form["metadata[launchready_traceparent]"]; got != tp {
		t.Errorf("traceparent %q, want %q", got, tp)
	}
	if got, ok := calls[1].Form["metadata[launchready_traceparent]"]; ok {
		t.Errorf("a traceparent without a trace: %q", got)
	}
}
