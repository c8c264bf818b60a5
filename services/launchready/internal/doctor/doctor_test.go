package doctor

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/services/ingress"
	"github.com/launchready/launchready/test/testkit/stripemock"
	"github.com/launchready/launchready/test/testkit/zendeskfake"
)

// newDoctor returns a doctor on env alone: nothing from the test process's
// own environment leaks in.
func newDoctor(env map[string]string) *Doctor {
	d := New(func(k string) string { return env[k] })
	d.Environ = func() []string {
		var out []string
		for k, v := range env {
			out = append(out, k+"="+v)
		}
		return out
	}
	d.CheckTimeout = 20 * time.Second
	return d
}

// run runs one group and returns its checks by name.
func run(t *testing.T, env map[string]string, group string) map[string]Check {
	t.Helper()
	r := newDoctor(env).Run(context.Background(), []string{group})
	out := map[string]Check{}
	for _, c := range r.Checks {
		out[c.Name] = c
	}
	if len(out) == 0 {
		t.Fatalf("%s: no checks ran (skipped: %+v)", group, r.Skipped)
	}
	return out
}

func expect(t *testing.T, checks map[string]Check, name string, want Status, detailHas string) {
	t.Helper()
	c, ok := checks[name]
	if !ok {
		t.Fatalf("no check %q among %v", name, keys(checks))
	}
	if c.Status != want || !strings.Contains(c.Detail, detailHas) {
		t.Fatalf("%s = %s %q; want %s with %q", name, c.Status, c.Detail, want, detailHas)
	}
	if want != Pass && c.Fix == "" {
		t.Fatalf("%s: %s without a fix", name, c.Status)
	}
}

func keys(m map[string]Check) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// fakeStripe serves the reads the doctor makes: webhook endpoints, and a
// one-item list of everything a key must be able to read. A restricted
// key is refused the resources in denied.
type fakeStripe struct {
	key       string
	endpoints []map[string]any
	denied    map[string]bool
	mu        sync.Mutex
	paths     []string
}

func (f *fakeStripe) start(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.paths = append(f.paths, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+f.key {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}`))
			return
		}
		res := strings.TrimPrefix(r.URL.Path, "/v1/")
		if f.denied[res] {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"The provided key does not have the required permissions for this endpoint"}}`))
			return
		}
		data := []map[string]any{}
		if res == "webhook_endpoints" {
			data = f.endpoints
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "url": r.URL.Path, "has_more": false, "data": data})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func endpoint(url string, events ...string) map[string]any {
	return map[string]any{"id": "we_" + strings.Repeat("1", 24), "object": "webhook_endpoint", "url": url,
		"status": "enabled", "enabled_events": events, "api_version": "2024-06-20"}
}

func TestStripeKeyModeAndPermissions(t *testing.T) {
	for _, tc := range []struct {
		name, key, mode string
		denied          map[string]bool
		check           string
		want            Status
		detail          string
	}{
		{"test key, test mode", "sk_test_" + randomHex(t, 12), "test", nil, "stripe/key-mode", Pass, "a test key"},
		{"live key, test mode", "sk_live_" + randomHex(t, 12), "test", nil, "stripe/key-mode", Fail, "a live key while STRIPE_LIVEMODE=test"},
		{"restricted key without events", "rk_test_" + randomHex(t, 12), "test", map[string]bool{"events": true}, "stripe/key-permissions", Fail, "events read (backfill)"},
		{"restricted key with every read", "rk_test_" + randomHex(t, 12), "test", nil, "stripe/key-permissions", Pass, "restricted key reads every resource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeStripe{key: tc.key, denied: tc.denied}
			env := map[string]string{"STRIPE_API_KEY": tc.key, "STRIPE_API_BASE": f.start(t), "STRIPE_LIVEMODE": tc.mode}
			expect(t, run(t, env, "stripe-key"), tc.check, tc.want, tc.detail)
		})
	}
}

func TestStripeEndpoint(t *testing.T) {
	const public = "https://hooks.shop.test/webhooks/stripe"
	key := "sk_test_" + randomHex(t, 12)
	all := slices.Clone(HandledEventTypes)
	withoutFailed := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == "invoice.payment_failed" })
	for _, tc := range []struct {
		name      string
		endpoints []map[string]any
		check     string
		want      Status
		detail    string
	}{
		{"every type", []map[string]any{endpoint(public, all...)}, "stripe/endpoint we_111111111111111111111111 events", Pass, "every one of the"},
		{"wildcard", []map[string]any{endpoint(public, "*")}, "stripe/endpoint we_111111111111111111111111 events", Pass, "every one of the"},
		{"missing invoice.payment_failed", []map[string]any{endpoint(public, withoutFailed...)}, "stripe/endpoint we_111111111111111111111111 events", Fail, "does not subscribe to: invoice.payment_failed"},
		{"other url only", []map[string]any{endpoint("https://old.shop.test/hook", all...)}, "stripe/endpoint", Fail, "no webhook endpoint points at " + public},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeStripe{key: key, endpoints: tc.endpoints}
			env := map[string]string{"STRIPE_API_KEY": key, "STRIPE_API_BASE": f.start(t), "PUBLIC_WEBHOOK_URL": public}
			expect(t, run(t, env, "stripe-endpoint"), tc.check, tc.want, tc.detail)
		})
	}
	t.Run("disabled", func(t *testing.T) {
		ep := endpoint(public, all...)
		ep["status"] = "disabled"
		f := &fakeStripe{key: key, endpoints: []map[string]any{ep}}
		env := map[string]string{"STRIPE_API_KEY": key, "STRIPE_API_BASE": f.start(t), "PUBLIC_WEBHOOK_URL": public}
		expect(t, run(t, env, "stripe-endpoint"), "stripe/endpoint we_111111111111111111111111", Fail, "is disabled")
	})
}

// startIngress runs the real ingress on an embedded, authenticated NATS
// and returns its webhook URL.
func startIngress(t *testing.T, secret string) string {
	t.Helper()
	srv := natstest.Start(t)
	env := srv.Env(natsauth.Ingress)
	env["STRIPE_WEBHOOK_SECRET"] = secret
	env["STRIPE_LIVEMODE"] = "test"
	env["INGRESS_ADDR"] = "127.0.0.1:0"
	env["HTTP_ADDR"] = "127.0.0.1:0"
	cfg, err := ingress.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	addrs := make(chan map[string]string, 1)
	cfg.Ready = func(a map[string]string) { addrs <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ingress.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case a := <-addrs:
		return "http://" + a["webhook"] + "/webhooks/stripe"
	case err := <-done:
		t.Fatalf("ingress stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("ingress not ready in 30s")
	}
	return ""
}

func TestPublicRoute(t *testing.T) {
	secret := "whsec_" + randomHex(t, 24)
	good := startIngress(t, secret)
	other := startIngress(t, "whsec_"+randomHex(t, 24))
	redirect := httptest.NewServer(http.RedirectHandler(good, http.StatusMovedPermanently))
	t.Cleanup(redirect.Close)
	for _, tc := range []struct {
		name, url string
		want      Status
		detail    string
	}{
		{"real ingress, same secret", good, Pass, "accepted with 200"},
		{"redirect", redirect.URL + "/webhooks/stripe", Fail, "answered 301"},
		{"secret differs", other, Fail, "answered 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"PUBLIC_WEBHOOK_URL": tc.url, "STRIPE_WEBHOOK_SECRET": secret, "STRIPE_LIVEMODE": "test"}
			expect(t, run(t, env, "public-route"), "public-route", tc.want, tc.detail)
		})
	}
}

// The probe must pass every check ingress makes of a signed event, and be
// signed as Stripe signs.
func TestProbeEventIsAPlausibleStripeEvent(t *testing.T) {
	id, body, err := ProbeEvent(false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stripeevent.Normalize(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := stripeevent.CheckPlausible(ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetEventId() != id || ev.GetLivemode() {
		t.Fatalf("probe normalised to %s livemode=%v", ev.GetEventId(), ev.GetLivemode())
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1 that expires
// after validFor; it returns the CA's PEM file and the server's TLS config.
func testCA(t *testing.T, validFor time.Duration) (caFile string, cfg *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "doctor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

func TestPublicTLSExpiry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		validFor time.Duration
		want     Status
	}{
		{"5 days left", 5 * 24 * time.Hour, Fail},
		{"14 days left", 14 * 24 * time.Hour, Warn},
		{"90 days left", 90 * 24 * time.Hour, Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caFile, cfg := testCA(t, tc.validFor)
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.TLS = cfg
			srv.StartTLS()
			t.Cleanup(srv.Close)
			env := map[string]string{"PUBLIC_WEBHOOK_URL": srv.URL + "/webhooks/stripe", "DOCTOR_CA_FILE": caFile}
			expect(t, run(t, env, "tls"), "tls 127.0.0.1", tc.want, "expires")
		})
	}
	t.Run("unknown CA", func(t *testing.T) {
		_, cfg := testCA(t, 90*24*time.Hour)
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.TLS = cfg
		srv.StartTLS()
		t.Cleanup(srv.Close)
		expect(t, run(t, map[string]string{"PUBLIC_WEBHOOK_URL": srv.URL}, "tls"), "tls 127.0.0.1", Fail, "does not verify")
	})
}

// dnsServer answers TXT queries from records (name → values) on a UDP
// port of its own.
func dnsServer(t *testing.T, records map[string][]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		vals, ok := records[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, v := range vals {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}})
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestMailDNS(t *testing.T) {
	good := map[string][]string{
		"shop.test.":                    {"v=spf1 include:relay.test -all", "google-site-verification=abc"},
		"lr1._domainkey.shop.test.":     {"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"},
		"_dmarc.shop.test.":             {"v=DMARC1; p=quarantine; rua=mailto:dmarc@shop.test"},
		"revoked._domainkey.shop.test.": {"v=DKIM1; p="},
	}
	env := func(server string) map[string]string {
		return map[string]string{"ALERT_EMAIL_FROM": "Launch Ready <alerts@shop.test>", "DOCTOR_DNS_RESOLVER": server, "DOCTOR_DKIM_SELECTOR": "lr1"}
	}
	checks := run(t, env(dnsServer(t, good)), "mail-dns")
	expect(t, checks, "mail/spf shop.test", Pass, `"v=spf1 include:relay.test -all"`)
	expect(t, checks, "mail/dkim shop.test", Pass, "lr1._domainkey.shop.test")
	expect(t, checks, "mail/dmarc shop.test", Pass, "p=quarantine")

	noDMARC := map[string][]string{}
	for k, v := range good {
		if k != "_dmarc.shop.test." {
			noDMARC[k] = v
		}
	}
	checks = run(t, env(dnsServer(t, noDMARC)), "mail-dns")
	expect(t, checks, "mail/dmarc shop.test", Fail, "no DMARC record at _dmarc.shop.test")
	expect(t, checks, "mail/spf shop.test", Pass, "v=spf1")

	e := env(dnsServer(t, good))
	e["DOCTOR_DKIM_SELECTOR"] = "revoked"
	expect(t, run(t, e, "mail-dns"), "mail/dkim shop.test", Fail, "revoked")
}

func TestZendeskCredentials(t *testing.T) {
	token := randomHex(t, 16)
	desk := httptest.NewServer(zendeskfake.New("ops@shop.test", token))
	t.Cleanup(desk.Close)
	env := map[string]string{"SUPPORT_PROVIDER": "zendesk", "ZENDESK_BASE_URL": desk.URL, "ZENDESK_EMAIL": "ops@shop.test", "ZENDESK_API_TOKEN": token}
	expect(t, run(t, env, "vendors"), "vendor/zendesk", Pass, "accepts the credentials")
	env["ZENDESK_API_TOKEN"] = randomHex(t, 16)
	checks := run(t, env, "vendors")
	expect(t, checks, "vendor/zendesk", Fail, "refused the credentials (401)")
	if strings.Contains(checks["vendor/zendesk"].Detail, env["ZENDESK_API_TOKEN"]) {
		t.Fatal("the token appears in the report")
	}
}

func TestStreamReplicas(t *testing.T) {
	srv := natstest.Start(t)
	// Each service makes its own durable; no other user may.
	for user, names := range map[string][]string{
		natsauth.BillingState:  {durables[0]},
		natsauth.CRMSync:       {durables[1]},
		natsauth.SupportNotify: {durables[2], durables[3]},
	} {
		nc, js, err := bus.Connect(context.Background(), srv.Conn(user), "doctor-test", logging.Discard())
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range names {
			if _, err := js.CreateOrUpdateConsumer(context.Background(), bus.StreamEvents, jetstream.ConsumerConfig{Durable: d, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				t.Fatalf("%s creates %s: %v", user, d, err)
			}
		}
		nc.Close()
	}
	env := srv.Env(natsauth.Reader)
	env["NATS_STREAM_REPLICAS"] = "1"
	checks := run(t, env, "nats")
	expect(t, checks, "nats/stream "+bus.StreamEvents, Pass, "1 replica(s)")
	expect(t, checks, "nats/consumer "+durables[0], Pass, "0 waiting")

	env["NATS_STREAM_REPLICAS"] = "3"
	expect(t, run(t, env, "nats"), "nats/stream "+bus.StreamEvents, Fail, "1 replica(s) where NATS_STREAM_REPLICAS asks for 3")
}

func TestPlaceholdersAndRequired(t *testing.T) {
	env := map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_replace_me", "DATABASE_URL": "postgres://u:p@db.internal/launchready"}
	checks := run(t, env, "config")
	expect(t, checks, "config/placeholders", Fail, "STRIPE_WEBHOOK_SECRET")
	expect(t, checks, "config/required", Fail, "NATS_URL")
	if strings.Contains(checks["config/required"].Detail, "DATABASE_URL") {
		t.Fatal("a set DATABASE_URL reported missing")
	}
}

func TestMigrations(t *testing.T) {
	url := pgtest.NewDatabase(t)
	env := map[string]string{"DATABASE_URL": url}
	expect(t, run(t, env, "migrations"), "migrations billing", Fail, "not applied: 0001_")

	ctx := context.Background()
	pool, err := pg.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, s := range schemas {
		name, files := s()
		if err := pg.Migrate(ctx, pool, name, files); err != nil {
			t.Fatal(err)
		}
	}
	checks := run(t, env, "migrations")
	for _, s := range []string{"billing", "crm", "support"} {
		expect(t, checks, "migrations "+s, Pass, "every migration")
	}
}

func TestBuildsDiffer(t *testing.T) {
	replica := func(rev string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("# HELP lr_build_info The build this process runs; always 1.\n# TYPE lr_build_info gauge\n" +
				`lr_build_info{go_version="go1.26.8",modified="false",revision="` + rev + `",service="crm-sync"} 1` + "\n"))
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	a, b, c := replica("aaaaaaaaaaaaaaaa"), replica("aaaaaaaaaaaaaaaa"), replica("bbbbbbbbbbbbbbbb")
	expect(t, run(t, map[string]string{"DOCTOR_OPS_TARGETS": a + "," + b}, "builds"), "builds crm-sync", Pass, "2 replica(s), all on aaaaaaaaaaaa")
	expect(t, run(t, map[string]string{"DOCTOR_OPS_TARGETS": a + "," + c}, "builds"), "builds crm-sync", Fail, "replicas run different builds")
}

func TestClockSkew(t *testing.T) {
	key := "sk_test_" + randomHex(t, 12)
	f := &fakeStripe{key: key}
	env := map[string]string{"STRIPE_API_KEY": key, "STRIPE_API_BASE": f.start(t)}
	d := newDoctor(env)
	r := d.Run(context.Background(), []string{"clock"})
	if len(r.Checks) != 1 || r.Checks[0].Status != Pass {
		t.Fatalf("in-sync clock: %+v", r.Checks)
	}
	d.Now = func() time.Time { return time.Now().Add(3 * time.Minute) }
	r = d.Run(context.Background(), []string{"clock"})
	if len(r.Checks) != 1 || r.Checks[0].Status != Fail || !strings.Contains(r.Checks[0].Detail, "ahead of") {
		t.Fatalf("a clock 3 minutes ahead: %+v", r.Checks)
	}
}

func TestMainJSON(t *testing.T) {
	env := map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_replace_me"}
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"--json", "--only", "config"}, func(k string) string { return env[k] }, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (a failed check); stderr: %s", code, stderr.String())
	}
	var r struct {
		Checks []map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	if len(r.Checks) == 0 {
		t.Fatal("no checks")
	}
	for _, c := range r.Checks {
		for _, k := range []string{"name", "status", "detail", "fix"} {
			if _, ok := c[k]; !ok {
				t.Fatalf("check %v has no %q", c, k)
			}
		}
		if s := c["status"]; s != "pass" && s != "warn" && s != "fail" {
			t.Fatalf("status %q", s)
		}
	}
	if code := Main(context.Background(), []string{"--only", "nosuch"}, func(string) string { return "" }, &stdout, &stderr); code != 2 {
		t.Fatalf("unknown check: exit %d, want 2", code)
	}
}

// The doctor's Stripe reads, as stripe-go sends them, are requests Stripe's
// own mock accepts: the key's reads, the endpoint list and the Date header.
func TestStripeRequestShapes(t *testing.T) {
	base := stripemock.Start(t)
	env := map[string]string{"STRIPE_API_KEY": "sk_test_" + randomHex(t, 12), "STRIPE_API_BASE": base,
		"STRIPE_LIVEMODE": "test", "PUBLIC_WEBHOOK_URL": "https://hooks.shop.test/webhooks/stripe"}
	checks := run(t, env, "stripe-key")
	expect(t, checks, "stripe/key-mode", Pass, "a test key")
	expect(t, checks, "stripe/key-permissions", Pass, "reads every resource")
	// stripe-mock's endpoint points elsewhere: the list was read and named.
	expect(t, run(t, env, "stripe-endpoint"), "stripe/endpoint", Fail, "endpoints at ")
	c := run(t, env, "clock")["clock"]
	if c.Status == Fail && strings.Contains(c.Detail, "Date") {
		t.Fatalf("clock: %+v", c)
	}
}

func TestMainStoresTheReportWithADatabase(t *testing.T) {
	url := pgtest.NewDatabase(t)
	env := map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_replace_me", "DATABASE_URL": url}
	for range 2 {
		var stdout, stderr strings.Builder
		if code := Main(context.Background(), []string{"--json", "--only", "config"}, func(k string) string { return env[k] }, &stdout, &stderr); code != 1 {
			t.Fatalf("exit %d, want 1; stderr: %s", code, stderr.String())
		}
		if strings.Contains(stderr.String(), "not stored") {
			t.Fatalf("report not stored: %s", stderr.String())
		}
	}
	pool, err := pg.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int
	var failed bool
	err = pool.QueryRow(context.Background(), `SELECT count(*), bool_or(r.report->'checks' @> '[{"status":"fail"}]')
		FROM readiness.doctor_reports r`).Scan(&n, &failed)
	if err != nil || n != 2 || !failed {
		t.Fatalf("readiness.doctor_reports: %d reports, a failed check stored %v (%v)", n, failed, err)
	}
}
