package web

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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	billingstate "github.com/launchready/launchready/services/billing-state"
)

// stripeCall is one request Stripe got.
type stripeCall struct {
	Method, Path, IdempotencyKey string
	Form                         url.Values
}

// stripeRecorder stands in for Stripe's API: it records every request and
// either answers itself (a refund, or the refusal a payment id asks for)
// or passes the request on to upstream (stripe-mock), which checks its
// shape against Stripe's specification.
type stripeRecorder struct {
	mu    sync.Mutex
	calls []stripeCall
	srv   *httptest.Server
}

// Payments whose refunds Stripe refuses, and how.
var stripeRefusals = map[string]struct {
	status int
	body   string
}{
	"pi_declined":       {402, `{"error":{"type":"card_error","code":"card_declined","message":"Your card was declined."}}`},
	"pi_refundedbefore": {400, `{"error":{"type":"invalid_request_error","code":"charge_already_refunded","message":"Charge ch_1 has already been refunded."}}`},
}

func newStripeRecorder(t *testing.T, upstream string) *stripeRecorder {
	rec := &stripeRecorder{}
	var proxy *httputil.ReverseProxy
	if upstream != "" {
		u, err := url.Parse(upstream)
		if err != nil {
			t.Fatal(err)
		}
		proxy = httputil.NewSingleHostReverseProxy(u)
	}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		rec.mu.Lock()
		rec.calls = append(rec.calls, stripeCall{Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: form})
		n := len(rec.calls)
		rec.mu.Unlock()
		if proxy != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodPost || r.URL.Path != "/v1/refunds" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such route."}}`)
			return
		}
		if refusal, ok := stripeRefusals[form.Get("payment_intent")]; ok {
			w.WriteHeader(refusal.status)
			_, _ = io.WriteString(w, refusal.body)
			return
		}
		_, _ = fmt.Fprintf(w, `{"id":"re_test%d","object":"refund","amount":%s,"status":"succeeded","payment_intent":%q,"metadata":{"launchready_action_id":%q}}`,
			n, form.Get("amount"), form.Get("payment_intent"), form.Get("metadata[launchready_action_id]"))
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (s *stripeRecorder) Calls() []stripeCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stripeCall(nil), s.calls...)
}

func testToken(t *testing.T) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startBillingState runs billing-state, whose BillingAdminService the
// console acts through, against stripeBase, and returns its client with
// an admin token, as the console holds one.
func startBillingState(t *testing.T, stripeBase string) billingv1.BillingAdminServiceClient {
	t.Helper()
	ns := natstest.Start(t)
	env := ns.Env(natsauth.BillingState)
	token := testToken(t)
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
	var addrs map[string]string
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("billing-state did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("billing-state did not start within 60s")
	}
	conn, err := grpc.NewClient(addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return billingv1.NewBillingAdminServiceClient(conn)
}

// actionIDOf reads the action id of a drawn form.
func actionIDOf(t *testing.T, body string) string {
	t.Helper()
	const mark = `name="action_id" value="`
	i := strings.Index(body, mark)
	if i < 0 {
		t.Fatalf("no action id on the form: %s", body)
	}
	rest := body[i+len(mark):]
	return rest[:strings.IndexByte(rest, '"')]
}
