package consoletest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingstate "github.com/launchready/launchready/services/billing-state"
)

// StripeCall is one request Stripe got.
type StripeCall struct {
	Method, Path, IdempotencyKey string
	Form                         url.Values
}

// StripeRecorder stands in for Stripe's API: it records every request and
// either answers itself (a refund, or the refusal a payment id asks for;
// a subscription's read, update or cancellation) or passes the request on to upstream (stripe-mock), which checks its
// shape against Stripe's specification.
type StripeRecorder struct {
	mu     sync.Mutex
	calls  []StripeCall
	Server *httptest.Server
}

// StripeRefusals are the payments whose refunds the recorder refuses,
// and how.
var StripeRefusals = map[string]struct {
	status int
	body   string
}{
	"pi_declined":       {402, `{"error":{"type":"card_error","code":"card_declined","message":"Your card was declined."}}`},
	"pi_refundedbefore": {400, `{"error":{"type":"invalid_request_error","code":"charge_already_refunded","message":"Charge ch_1 has already been refunded."}}`},
}

// NewStripeRecorder starts the recorder until the test ends; upstream,
// when set, is stripe-mock's base URL.
func NewStripeRecorder(t testing.TB, upstream string) *StripeRecorder {
	rec := &StripeRecorder{}
	var proxy *httputil.ReverseProxy
	if upstream != "" {
		u, err := url.Parse(upstream)
		if err != nil {
			t.Fatal(err)
		}
		proxy = httputil.NewSingleHostReverseProxy(u)
	}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		rec.mu.Lock()
		rec.calls = append(rec.calls, StripeCall{Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: form})
		n := len(rec.calls)
		rec.mu.Unlock()
		if proxy != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if sub, ok := strings.CutPrefix(r.URL.Path, "/v1/subscriptions/"); ok && sub != "" && !strings.Contains(sub, "/") {
			answerSubscription(w, r.Method, sub, form)
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v1/refunds" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such route."}}`)
			return
		}
		if refusal, ok := StripeRefusals[form.Get("payment_intent")]; ok {
			w.WriteHeader(refusal.status)
			_, _ = io.WriteString(w, refusal.body)
			return
		}
		_, _ = fmt.Fprintf(w, `{"id":"re_test%d","object":"refund","amount":%s,"status":"succeeded","payment_intent":%q,"metadata":{"launchready_action_id":%q}}`,
			n, form.Get("amount"), form.Get("payment_intent"), form.Get("metadata[launchready_action_id]"))
	}))
	t.Cleanup(rec.Server.Close)
	return rec
}

// answerSubscription answers a subscription's read, update or
// cancellation as Stripe would: one item si_<sub> on price_Current, which
// an update of items[0] changes; a DELETE cancels it; an update of
// cancel_at_period_end sets that.
func answerSubscription(w http.ResponseWriter, method, sub string, form url.Values) {
	status, price, atEnd := "active", "price_Current", form.Get("cancel_at_period_end") == "true"
	switch method {
	case http.MethodGet:
	case http.MethodPost:
		if p := form.Get("items[0][price]"); p != "" {
			if form.Get("items[0][id]") != "si_"+sub {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such subscription item."}}`)
				return
			}
			price = p
		}
	case http.MethodDelete:
		status = "canceled"
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// #nosec G705 -- a fake Stripe's JSON answer to the test's own client, never HTML.
	_, _ = fmt.Fprintf(w, `{"id":%q,"object":"subscription","status":%q,"cancel_at_period_end":%t,`+
		`"items":{"object":"list","data":[{"id":"si_%s","object":"subscription_item","price":{"id":%q,"object":"price"}}]},"metadata":{"launchready_action_id":%q}}`,
		sub, status, atEnd, sub, price, form.Get("metadata[launchready_action_id]"))
}

// Calls returns every request so far.
func (s *StripeRecorder) Calls() []StripeCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StripeCall(nil), s.calls...)
}

func testToken(t testing.TB) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// StartBillingState runs billing-state, whose BillingAdminService the
// console acts through, with its Stripe API at stripeBase, until the test
// ends, and returns its gRPC address and an admin token for it, as the
// console holds one.
func StartBillingState(t testing.TB, stripeBase string) (addr, token string) {
	t.Helper()
	ns := natstest.Start(t)
	env := ns.Env(natsauth.BillingState)
	token = testToken(t)
	for k, v := range map[string]string{
		"DATABASE_URL": pgtest.NewDatabase(t), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"STATUS_API_TOKENS": "console=" + token + ":read+admin", "STRIPE_API_KEY": "sk_test_" + testToken(t),
		"STRIPE_API_BASE": stripeBase, "DRIFT_CHECK_INTERVAL": "0",
	} {
		env[k] = v
	}
	cfg, err := billingstate.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan map[string]string, 1)
	cfg.Logger, cfg.Ready = logging.Discard(), func(a map[string]string) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- billingstate.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("billing-state stopped with %v", err)
		}
	})
	select {
	case addrs := <-ready:
		return addrs["grpc"], token
	case err := <-done:
		t.Fatalf("billing-state did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("billing-state did not start within 60s")
	}
	return "", ""
}
