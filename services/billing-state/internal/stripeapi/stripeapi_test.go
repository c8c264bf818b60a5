package stripeapi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/services/billing-state/internal/stripeapi"
)

// fakeStripe answers like the Stripe API (shapes from stripe-mock's
// fixtures) and records the requests.
func fakeStripe(t *testing.T, hits *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer sk_test_") {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/subscriptions/sub_basil":
			_, _ = w.Write([]byte(`{"id":"sub_basil","object":"subscription","status":"past_due","cancel_at_period_end":true,
				"customer":"cus_1","items":{"object":"list","data":[{"id":"si_1","object":"subscription_item",
				"current_period_end":1746090000,"price":{"id":"price_basil","object":"price"}}]}}`))
		case "/v1/charges/ch_1":
			_, _ = w.Write([]byte(`{"id":"ch_1","object":"charge","amount":2000,"customer":"cus_1","payment_intent":"pi_1","invoice":null,"status":"succeeded"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such object: 'x'"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSubscriptionReadsBasilShape(t *testing.T) {
	var hits atomic.Int64
	srv := fakeStripe(t, &hits)
	c := stripeapi.New(testKey(), srv.URL, 100)
	s, err := c.Subscription(context.Background(), "sub_basil")
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != "past_due" || !s.CancelAtPeriodEnd || s.PriceID != "price_basil" || !s.CurrentPeriodEnd.Equal(time.Unix(1746090000, 0)) {
		t.Fatalf("subscription %+v", s)
	}
}

func TestChargeCustomer(t *testing.T) {
	var hits atomic.Int64
	srv := fakeStripe(t, &hits)
	c := stripeapi.New(testKey(), srv.URL, 100)
	ch, err := c.Charge(context.Background(), "ch_1")
	if err != nil || ch.CustomerID != "cus_1" || ch.PaymentIntentID != "pi_1" {
		t.Fatalf("charge %+v %v", ch, err)
	}
	_, err = c.Charge(context.Background(), "ch_missing")
	if err == nil || !strings.Contains(err.Error(), "resource_missing") || strings.Contains(err.Error(), "No such object") {
		t.Fatalf("missing charge error %v: want the code, not the message", err)
	}
}

func TestRateLimited(t *testing.T) {
	var hits atomic.Int64
	srv := fakeStripe(t, &hits)
	c := stripeapi.New(testKey(), srv.URL, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var n int
	for ctx.Err() == nil {
		if _, err := c.Charge(ctx, "ch_1"); err != nil {
			break
		}
		n++
	}
	// 5/s with a burst of 1 allows at most 1 + 5*0.5 requests in 500 ms.
	if n > 4 || hits.Load() > 4 {
		t.Fatalf("%d requests in 500ms at 5/s", n)
	}
	if n == 0 {
		t.Fatal("no request went through")
	}
}

// testKey is a fresh, random test-mode key shape for each test.
func testKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "sk_test_" + hex.EncodeToString(b)
}
