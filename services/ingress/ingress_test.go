package ingress_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/ingress"
	"github.com/launchready/launchready/test/testkit"
)

// bundle is one running ingress with its own NATS server and a separate
// client connection for looking at the stream.
type bundle struct {
	t       testing.TB
	base    string // http://127.0.0.1:port, the webhook listener
	ops     string // http://127.0.0.1:port, the ops listener
	secrets []string
	nats    *natstest.Server
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
	client  *http.Client
}

func newSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + hex.EncodeToString(b)
}

// setup starts NATS and ingress. env overrides the defaults; a key mapped
// to "" is unset.
func setup(t testing.TB, env map[string]string) *bundle {
	t.Helper()
	return setupWith(t, env, nil)
}

// setupWith is setup with a last change to the Config before Run.
func setupWith(t testing.TB, env map[string]string, change func(*ingress.Config)) *bundle {
	t.Helper()
	ns := natstest.Start(t)
	secret := newSecret(t)
	vars := ns.Env(natsauth.Ingress)
	vars["INGRESS_ADDR"] = "127.0.0.1:0"
	vars["HTTP_ADDR"] = "127.0.0.1:0"
	vars["STRIPE_WEBHOOK_SECRET"] = secret
	vars["PUBLISH_TIMEOUT"] = "2s"
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := ingress.ConfigFromEnv(config.Map(vars))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	b := &bundle{t: t, nats: ns, reg: httpserver.NewRegistry(), done: make(chan error, 1)}
	for _, s := range cfg.Secrets {
		b.secrets = append(b.secrets, s.Reveal())
	}
	cfg.Registry = b.reg
	if change != nil {
		change(&cfg)
	}
	ready := make(chan map[string]string, 1)
	cfg.Ready = func(addrs map[string]string) { ready <- addrs }
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() { b.done <- ingress.Run(ctx, cfg) }()
	select {
	case addrs := <-ready:
		b.base = "http://" + addrs["webhook"]
		b.ops = "http://" + addrs["http"]
	case err := <-b.done:
		cancel()
		t.Fatalf("ingress stopped before it was ready: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("ingress not ready within 20s")
	}
	tr := &http.Transport{}
	b.client = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		b.stop()
	})
	return b
}

// stop cancels Run and waits for it; it returns Run's error.
func (b *bundle) stop() error {
	b.t.Helper()
	b.cancel()
	select {
	case err := <-b.done:
		b.done <- err // keep it for a second stop
		return err
	case <-time.After(30 * time.Second):
		b.t.Fatal("ingress did not stop within 30s")
		return nil
	}
}

type answer struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (b *bundle) do(method, path string, body []byte, header http.Header) answer {
	b.t.Helper()
	return b.doAt(b.base, method, path, body, header)
}

// opsGet asks the ops listener.
func (b *bundle) opsGet(path string) answer {
	b.t.Helper()
	return b.doAt(b.ops, http.MethodGet, path, nil, nil)
}

func (b *bundle) doAt(base, method, path string, body []byte, header http.Header) answer {
	b.t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			b.t.Fatalf("%s %s: answer %q is not JSON: %v", method, path, raw, err)
		}
	}
	return a
}

// post sends payload signed with the first configured secret, now.
func (b *bundle) post(payload []byte) answer {
	b.t.Helper()
	return b.postSigned(payload, stripeevent.Sign(payload, b.secrets[0], time.Now()))
}

func (b *bundle) postSigned(payload []byte, sig string) answer {
	b.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	if sig != "" {
		h["Stripe-Signature"] = []string{sig}
	}
	return b.do(http.MethodPost, "/webhooks/stripe", payload, h)
}

// js is a fresh client connection to the test's NATS server, as the
// test's observer: it reads what ingress stored.
func (b *bundle) js() jetstream.JetStream {
	b.t.Helper()
	opts, err := b.nats.Conn(natstest.Observer).Options()
	if err != nil {
		b.t.Fatal(err)
	}
	nc, err := nats.Connect(b.nats.URL(), opts...)
	if err != nil {
		b.t.Fatalf("nats connect: %v", err)
	}
	b.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.t.Fatal(err)
	}
	return js
}

func (b *bundle) streamMsgs() uint64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js().Stream(ctx, "BILLING_EVENTS")
	if err != nil {
		b.t.Fatalf("stream BILLING_EVENTS: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	return info.State.Msgs
}

// counter reads a counter from the service's registry; label may be empty.
func (b *bundle) counter(name, label, value string) float64 {
	b.t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || hasLabel(m, label, value) {
				return m.GetCounter().GetValue()
			}
		}
	}
	b.t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// ---- payloads

// fixture returns a real Stripe envelope with its event id replaced by id,
// every other byte as Stripe wrote it.
func fixture(t testing.TB, name, id string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testkit.FixturesDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.ID == "" {
		t.Fatalf("%s: no event id (%v)", name, err)
	}
	old := []byte(`"` + env.ID + `"`)
	i := bytes.Index(raw, old)
	if i < 0 {
		t.Fatalf("%s: id %s not found verbatim", name, env.ID)
	}
	out := append([]byte(nil), raw[:i]...)
	out = append(out, `"`+id+`"`...)
	return append(out, raw[i+len(old):]...)
}

const subscriptionFixture = "stripe-sync-engine/subscription_created.json"

// event is a minimal valid envelope.
func event(id, typ string, livemode bool) []byte {
	return fmt.Appendf(nil, `{"id":%q,"object":"event","api_version":"2025-03-31.basil","created":1735689600,"livemode":%t,"type":%q,"data":{"object":{"id":"cus_T1","object":"customer","email":"t@example.com"}}}`, id, livemode, typ)
}

// ---- tests

func TestAcceptedEventIsPublishedWithMsgID(t *testing.T) {
	b := setup(t, nil)
	payload := fixture(t, subscriptionFixture, "evt_ingress_accept_1")

	a := b.post(payload)
	if a.code != http.StatusOK || a.raw != "{\"received\":true,\"duplicate\":false}\n" {
		t.Fatalf("got %d %q, want 200 {\"received\":true,\"duplicate\":false}", a.code, a.raw)
	}
	if n := b.streamMsgs(); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js().Stream(ctx, "BILLING_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "billing.events.customer.subscription.created")
	if err != nil {
		t.Fatalf("no message on billing.events.customer.subscription.created: %v", err)
	}
	if got := msg.Header.Get("Nats-Msg-Id"); got != "evt_ingress_accept_1" {
		t.Fatalf("Nats-Msg-Id = %q, want the event id", got)
	}
	var ev billingv1.BillingEvent
	if err := proto.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatalf("payload is not a BillingEvent: %v", err)
	}
	if ev.GetEventId() != "evt_ingress_accept_1" || ev.GetType() != "customer.subscription.created" {
		t.Fatalf("event %q type %q", ev.GetEventId(), ev.GetType())
	}
	if !bytes.Equal(ev.GetRawJson(), payload) {
		t.Fatal("raw_json differs from the bytes posted")
	}
	if ev.GetReceivedAt() == nil || ev.GetCustomerId() == "" {
		t.Fatalf("received_at %v customer %q: want both set", ev.GetReceivedAt(), ev.GetCustomerId())
	}
	if got := b.counter("lr_webhook_requests_total", "outcome", "accepted"); got != 1 {
		t.Fatalf("accepted counter = %v, want 1", got)
	}
}

func TestSameEventTwiceIsStoredOnce(t *testing.T) {
	b := setup(t, nil)
	payload := fixture(t, subscriptionFixture, "evt_ingress_dup_1")

	first := b.post(payload)
	second := b.post(payload) // re-signed: a Stripe retry carries a new timestamp
	if first.code != http.StatusOK || first.body["duplicate"] != false {
		t.Fatalf("first: %d %s", first.code, first.raw)
	}
	if second.code != http.StatusOK || second.body["received"] != true || second.body["duplicate"] != true {
		t.Fatalf("second: %d %s, want 200 with duplicate true", second.code, second.raw)
	}
	if n := b.streamMsgs(); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
	if got := b.counter("lr_webhook_duplicates_total", "", ""); got != 1 {
		t.Fatalf("duplicates counter = %v, want 1", got)
	}
}

func TestRefusalsWriteNothing(t *testing.T) {
	b := setup(t, map[string]string{"WEBHOOK_MAX_BODY": "4096"})
	payload := event("evt_ingress_refused", "customer.created", false)
	good := b.secrets[0]
	big := append(event("evt_ingress_big", "customer.created", false), bytes.Repeat([]byte(" "), 5000)...)
	notJSON := []byte("{not json")
	noID := []byte(`{"type":"customer.created","data":{"object":{}}}`)
	// Signatures are made when each request is sent: Stripe timestamps have
	// one-second resolution, so the future case keeps two seconds of margin.
	signed := func(body []byte, secret string, skew time.Duration) func() string {
		return func() string { return stripeevent.Sign(body, secret, time.Now().Add(skew)) }
	}
	fixed := func(h string) func() string { return func() string { return h } }

	cases := []struct {
		name    string
		method  string
		body    []byte
		sig     func() string
		chunked bool
		code    int
		errText string
		outcome string
	}{
		{"missing header", "POST", payload, fixed(""), false, 400, "missing Stripe-Signature header", "bad_signature"},
		{"malformed header", "POST", payload, fixed("v1=abc"), false, 400, "malformed Stripe-Signature header", "bad_signature"},
		{"no v1 signature", "POST", payload, fixed(fmt.Sprintf("t=%d,v0=abc", time.Now().Unix())), false, 400, "no v1 signature", "bad_signature"},
		{"wrong secret", "POST", payload, signed(payload, newSecret(t), 0), false, 400, "signature does not match any configured secret", "bad_signature"},
		{"tampered body", "POST", bytes.Replace(payload, []byte("t@example.com"), []byte("x@example.com"), 1), signed(payload, good, 0), false, 400, "signature does not match", "bad_signature"},
		{"stale", "POST", payload, signed(payload, good, -301*time.Second), false, 400, "timestamp outside tolerance", "stale"},
		{"future", "POST", payload, signed(payload, good, 302*time.Second), false, 400, "timestamp outside tolerance", "stale"},
		{"not JSON", "POST", notJSON, signed(notJSON, good, 0), false, 400, "malformed event", "malformed"},
		{"no id", "POST", noID, signed(noID, good, 0), false, 400, "malformed event", "malformed"},
		{"too large", "POST", big, signed(big, good, 0), false, 413, "body larger than 4096 bytes", "too_large"},
		{"too large, chunked", "POST", big, signed(big, good, 0), true, 413, "body larger than 4096 bytes", "too_large"},
		{"GET", "GET", nil, fixed(""), false, 405, "method not allowed", "method"},
		{"PUT signed", "PUT", payload, signed(payload, good, 0), false, 405, "method not allowed", "method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := b.counter("lr_webhook_requests_total", "outcome", tc.outcome)
			var body io.Reader = bytes.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: no Content-Length, the read limit must catch it
			}
			req, err := http.NewRequest(tc.method, b.base+"/webhooks/stripe", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if sig := tc.sig(); sig != "" {
				req.Header.Set("Stripe-Signature", sig)
			}
			resp, err := b.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, raw, tc.code)
			}
			var got struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(raw, &got); err != nil || !strings.Contains(got.Error, tc.errText) {
				t.Fatalf("answer %s: want a JSON error containing %q", raw, tc.errText)
			}
			if strings.Contains(string(raw), good) {
				t.Fatal("answer echoes the secret")
			}
			if tc.code == 405 && resp.Header.Get("Allow") != "POST" {
				t.Fatalf("Allow = %q, want POST", resp.Header.Get("Allow"))
			}
			if after := b.counter("lr_webhook_requests_total", "outcome", tc.outcome); after != before+1 {
				t.Fatalf("outcome %s counted %v -> %v, want +1", tc.outcome, before, after)
			}
		})
	}
	if n := b.streamMsgs(); n != 0 {
		t.Fatalf("refusals left %d messages in the stream", n)
	}
	if got := b.counter("lr_webhook_signature_failures_total", "reason", "mismatch"); got != 2 {
		t.Fatalf("signature mismatches counted %v, want 2", got)
	}
}

func TestRotationAcceptsSecondSecret(t *testing.T) {
	oldSecret, newer := newSecret(t), newSecret(t)
	b := setup(t, map[string]string{"STRIPE_WEBHOOK_SECRET": oldSecret + "," + newer})
	payload := event("evt_ingress_rotated", "customer.created", false)

	a := b.postSigned(payload, stripeevent.Sign(payload, newer, time.Now()))
	if a.code != http.StatusOK {
		t.Fatalf("signed with the second secret: %d %s", a.code, a.raw)
	}
	if n := b.streamMsgs(); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

func TestLivemodeMismatchIsRefusedAndCounted(t *testing.T) {
	b := setup(t, map[string]string{"STRIPE_LIVEMODE": "live"})

	a := b.post(event("evt_ingress_testmode", "customer.created", false))
	if a.code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(a.body["error"]), "live mode") {
		t.Fatalf("test-mode event on a live endpoint: %d %s", a.code, a.raw)
	}
	if got := b.counter("lr_webhook_requests_total", "outcome", "wrong_mode"); got != 1 {
		t.Fatalf("wrong_mode counted %v, want 1", got)
	}
	if n := b.streamMsgs(); n != 0 {
		t.Fatalf("refused event left %d messages", n)
	}
	if a := b.post(event("evt_ingress_livemode", "customer.created", true)); a.code != http.StatusOK {
		t.Fatalf("live event on a live endpoint: %d %s", a.code, a.raw)
	}
	if n := b.streamMsgs(); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

func TestNATSOutageAnswers503ThenTheRetryGoesThrough(t *testing.T) {
	b := setup(t, map[string]string{"PUBLISH_TIMEOUT": "1s"})
	if a := b.post(event("evt_ingress_before", "customer.created", false)); a.code != http.StatusOK {
		t.Fatalf("before the outage: %d %s", a.code, a.raw)
	}
	if a := b.opsGet("/readyz"); a.code != http.StatusOK {
		t.Fatalf("readyz while NATS is up: %d %s", a.code, a.raw)
	}

	b.nats.Shutdown()
	during := event("evt_ingress_outage", "invoice.payment_failed", false)
	a := b.post(during)
	if a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("during the outage: %d %s (Retry-After %q), want 503 with Retry-After", a.code, a.raw, a.header.Get("Retry-After"))
	}
	if a := b.opsGet("/readyz"); a.code != http.StatusServiceUnavailable {
		t.Fatalf("readyz while NATS is down: %d %s", a.code, a.raw)
	}
	if got := b.counter("lr_webhook_requests_total", "outcome", "unavailable"); got != 1 {
		t.Fatalf("unavailable counted %v, want 1", got)
	}

	b.nats.Restart()
	waitReady(t, b)
	// Stripe retries the same event; it must land exactly once whether or
	// not the publish made during the outage reached the server later.
	a = b.post(during)
	if a.code != http.StatusOK {
		t.Fatalf("retry after the restart: %d %s", a.code, a.raw)
	}
	if n := b.streamMsgs(); n != 2 {
		t.Fatalf("stream holds %d messages, want 2 (one before, the retried one once)", n)
	}
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, b *bundle) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		a := b.opsGet("/readyz")
		if a.code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 30s after NATS came back: %d %s", a.code, a.raw)
		}
		<-tick.C
	}
}

func TestShutdownFinishesRequestInFlight(t *testing.T) {
	b := setup(t, nil)
	payload := event("evt_ingress_inflight", "customer.created", false)
	sig := stripeevent.Sign(payload, b.secrets[0], time.Now())
	addr := strings.TrimPrefix(b.base, "http://")

	// Expect: 100-continue makes the server say when the handler starts
	// reading the body, so the request is provably in flight before the
	// shutdown begins, and its body arrives only after.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST /webhooks/stripe HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nStripe-Signature: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, sig, len(payload))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, "100 Continue") {
		t.Fatalf("want 100 Continue, got %q (%v)", status, err)
	}
	if _, err := br.ReadString('\n'); err != nil { // blank line after the interim answer
		t.Fatal(err)
	}

	b.cancel()
	// Shutdown has begun once the listener refuses new connections.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting 10s after cancel")
		}
	}

	if _, err := conn.Write(payload); err != nil {
		t.Fatalf("write body: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"received":true`) {
		t.Fatalf("in-flight request got %d %s, want 200", resp.StatusCode, body)
	}
	if err := b.stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if n := b.streamMsgs(); n != 1 {
		t.Fatalf("stream holds %d messages after shutdown, want the in-flight event", n)
	}
}

func TestOpsEndpoints(t *testing.T) {
	b := setup(t, nil)
	if a := b.opsGet("/healthz"); a.code != http.StatusOK {
		t.Fatalf("healthz: %d %s", a.code, a.raw)
	}
	if a := b.opsGet("/readyz"); a.code != http.StatusOK {
		t.Fatalf("readyz: %d %s", a.code, a.raw)
	}
	a := b.opsGet("/metrics")
	for _, name := range []string{"lr_webhook_requests_total", "lr_webhook_signature_failures_total", "lr_webhook_duplicates_total", "lr_webhook_request_seconds", "lr_publish_seconds"} {
		if a.code != http.StatusOK || !strings.Contains(a.raw, name) {
			t.Fatalf("metrics: %d, missing %s", a.code, name)
		}
	}
	a = b.do("POST", "/webhooks/other", []byte("{}"), nil)
	if a.code != http.StatusNotFound || a.body["error"] == nil {
		t.Fatalf("unknown path: %d %s, want a JSON 404", a.code, a.raw)
	}
	// The public listener serves the webhook and a bare readiness verdict:
	// no metrics, no liveness, and no readiness details (they name NATS's
	// state) for whoever reaches it.
	for _, path := range []string{"/healthz", "/metrics"} {
		if a := b.do("GET", path, nil, nil); a.code != http.StatusNotFound || strings.Contains(a.raw, "nats") || strings.Contains(a.raw, "lr_") {
			t.Errorf("webhook listener GET %s: %d %s, want a plain 404", path, a.code, a.raw)
		}
	}
	if a := b.do("GET", "/readyz", nil, nil); a.code != http.StatusOK || a.body["status"] != "ready" || len(a.body) != 1 {
		t.Errorf("webhook listener GET /readyz: %d %s, want 200 and only {\"status\":\"ready\"}", a.code, a.raw)
	}
}

func TestRunFailsWithoutNATS(t *testing.T) {
	ns := natstest.Start(t)
	env := ns.Env(natsauth.Ingress)
	ns.Shutdown()
	env["INGRESS_ADDR"], env["HTTP_ADDR"], env["STRIPE_WEBHOOK_SECRET"] = "127.0.0.1:0", "127.0.0.1:0", newSecret(t)
	cfg, err := ingress.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StartTimeout = 300 * time.Millisecond
	cfg.Ready = func(map[string]string) { t.Error("ready without NATS") }
	err = ingress.Run(context.Background(), cfg)
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Run without NATS returned %v, want bus.ErrUnavailable", err)
	}
}

func TestReadyzNeedsTheEventsStream(t *testing.T) {
	b := setup(t, nil)
	if a := b.opsGet("/readyz"); a.code != http.StatusOK {
		t.Fatalf("readyz: %d %s", a.code, a.raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.js().DeleteStream(ctx, "BILLING_EVENTS"); err != nil {
		t.Fatal(err)
	}
	// A successful stream check is trusted for a moment; within a few
	// seconds readiness must notice.
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		a := b.opsGet("/readyz")
		if a.code == http.StatusServiceUnavailable {
			if !strings.Contains(a.raw, "BILLING_EVENTS") {
				t.Fatalf("readyz does not say what is missing: %s", a.raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d 10s after the stream was deleted", a.code)
		}
		<-tick.C
	}
	// The webhook listener gives the same verdict, without the details.
	if a := b.do("GET", "/readyz", nil, nil); a.code != http.StatusServiceUnavailable || a.body["status"] != "unavailable" ||
		strings.Contains(a.raw, "BILLING_EVENTS") || strings.Contains(a.raw, "stream") {
		t.Fatalf("webhook listener GET /readyz without the stream: %d %s, want a bare 503", a.code, a.raw)
	}
	if a := b.post(event("evt_ingress_nostream", "customer.created", false)); a.code != http.StatusServiceUnavailable {
		t.Fatalf("publish without a stream: %d %s, want 503", a.code, a.raw)
	}
}
