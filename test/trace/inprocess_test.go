// Package trace_test proves that one Stripe event leaves one trace across
// all four services: in process with OTel's in-memory exporter, and as
// separate processes exporting OTLP to a real Jaeger.
package trace_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	billingstate "github.com/launchready/launchready/services/billing-state"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	"github.com/launchready/launchready/services/ingress"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

var services = []string{"ingress", "billing-state", "crm-sync", "support-notify"}

// email is in the test payload so the test can prove it never reaches a span.
const email = "jane.doe.trace@example.com"

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// paymentFailed is a compact invoice.payment_failed event in the 2023-10-16
// shape (what stripe-go v76 pins).
func paymentFailed(evID, customer string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","api_version":"2023-10-16","created":%d,"livemode":false,`+
		`"pending_webhooks":1,"type":"invoice.payment_failed","data":{"object":{"id":"in_%s","object":"invoice",`+
		`"customer":%q,"customer_email":%q,"subscription":"sub_%s","status":"open","billing_reason":"subscription_cycle",`+
		`"amount_due":4900,"amount_paid":0,"amount_remaining":4900,"currency":"usd","attempt_count":2,"attempted":true,`+
		`"paid":false,"next_payment_attempt":%d}}}`,
		evID, time.Now().Unix(), evID[4:], customer, email, evID[4:], time.Now().Add(72*time.Hour).Unix()))
}

// postWebhook signs payload with secret and posts it to ingress's webhook URL.
func postWebhook(t testing.TB, url, secret string, payload []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(payload, secret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post webhook: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %s: %s", resp.Status, body)
	}
}

// keptExporter is an in-memory exporter shared by the four services. Each
// service shuts its provider down when it stops, and the SDK's in-memory
// exporter forgets its spans on Shutdown; this one keeps them.
type keptExporter struct{ *tracetest.InMemoryExporter }

func (keptExporter) Shutdown(context.Context) error { return nil }

// system is the four services running in this process.
type system struct {
	ingressURL string
	grpcAddr   string
	secret     string
	apiToken   string
	opsURLs    []string
}

func startSystem(t *testing.T, exp sdktrace.SpanExporter) *system {
	t.Helper()
	nats := natstest.Start(t)
	s := &system{secret: "whsec_" + randomHex(t, 24), apiToken: randomHex(t, 24)}
	env := config.Map(map[string]string{
		"DATABASE_URL":          pgtest.NewDatabase(t),
		"INGRESS_ADDR":          "127.0.0.1:0",
		"HTTP_ADDR":             "127.0.0.1:0",
		"GRPC_ADDR":             "127.0.0.1:0",
		"STRIPE_WEBHOOK_SECRET": s.secret,
		"STATUS_API_TOKENS":     "tracetest=" + s.apiToken + ":read",
		"CRM_PROVIDER":          "log",
		"SUPPORT_PROVIDER":      "log",
		"ALERT_PROVIDER":        "log",
	})
	// Each service connects as its own NATS user.
	as := func(user string) config.Getenv { return config.Overlay(env, nats.Env(user)) }
	tel := func(name string) telemetry.Config {
		return telemetry.Config{ServiceName: name, Exporter: exp, Syncer: true}
	}

	type service struct {
		name string
		run  func(ctx context.Context, ready func(map[string]string)) error
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ic, err := ingress.ConfigFromEnv(as(natsauth.Ingress))
	must(err)
	bc, err := billingstate.ConfigFromEnv(as(natsauth.BillingState))
	must(err)
	cc, err := crmsync.ConfigFromEnv(as(natsauth.CRMSync))
	must(err)
	sc, err := supportnotify.ConfigFromEnv(as(natsauth.SupportNotify))
	must(err)
	ic.Telemetry, bc.Telemetry, cc.Telemetry, sc.Telemetry = tel("ingress"), tel("billing-state"), tel("crm-sync"), tel("support-notify")
	svcs := []service{
		{"ingress", func(ctx context.Context, ready func(map[string]string)) error {
			ic.Ready = ready
			return ingress.Run(ctx, ic)
		}},
		{"billing-state", func(ctx context.Context, ready func(map[string]string)) error {
			bc.Ready = ready
			return billingstate.Run(ctx, bc)
		}},
		{"crm-sync", func(ctx context.Context, ready func(map[string]string)) error {
			cc.Ready = ready
			return crmsync.Run(ctx, cc)
		}},
		{"support-notify", func(ctx context.Context, ready func(map[string]string)) error {
			sc.Ready = ready
			return supportnotify.Run(ctx, sc)
		}},
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(svcs))
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("service stopped with: %v", err)
		}
	})
	for _, svc := range svcs {
		ready := make(chan map[string]string, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.run(ctx, func(a map[string]string) { ready <- a }); err != nil {
				errs <- fmt.Errorf("%s: %w", svc.name, err)
			}
		}()
		select {
		case addrs := <-ready:
			s.opsURLs = append(s.opsURLs, "http://"+addrs["http"])
			switch svc.name {
			case "ingress":
				s.ingressURL = "http://" + addrs["webhook"]
			case "billing-state":
				s.grpcAddr = addrs["grpc"]
			}
		case <-time.After(45 * time.Second):
			t.Fatalf("%s did not become ready within 45s", svc.name)
		}
	}
	return s
}

// spanIndex answers questions about exported spans.
type spanIndex struct {
	spans tracetest.SpanStubs
	byID  map[trace.SpanID]*tracetest.SpanStub
}

func index(spans tracetest.SpanStubs) *spanIndex {
	ix := &spanIndex{spans: spans, byID: map[trace.SpanID]*tracetest.SpanStub{}}
	for i := range spans {
		ix.byID[spans[i].SpanContext.SpanID()] = &spans[i]
	}
	return ix
}

func serviceOf(s *tracetest.SpanStub) string {
	for _, kv := range s.Resource.Attributes() {
		if kv.Key == "service.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

func attr(s *tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// descends reports whether s has ancestor among the exported spans.
func (ix *spanIndex) descends(s *tracetest.SpanStub, ancestor trace.SpanID) bool {
	for p := s.Parent.SpanID(); p.IsValid(); {
		if p == ancestor {
			return true
		}
		ps, ok := ix.byID[p]
		if !ok {
			return false
		}
		p = ps.Parent.SpanID()
	}
	return false
}

// eventTrace returns the spans of the trace that carries evID once every
// service's consumer span for it has ended.
func eventTrace(spans tracetest.SpanStubs, evID string) (tracetest.SpanStubs, bool) {
	var tid trace.TraceID
	for i := range spans {
		if attr(&spans[i], string(telemetry.AttrEventID)) == evID {
			tid = spans[i].SpanContext.TraceID()
			break
		}
	}
	if !tid.IsValid() {
		return nil, false
	}
	var out tracetest.SpanStubs
	consumers := map[string]int{}
	for i := range spans {
		if spans[i].SpanContext.TraceID() != tid {
			continue
		}
		out = append(out, spans[i])
		if spans[i].SpanKind == trace.SpanKindConsumer {
			consumers[serviceOf(&spans[i])]++
		}
	}
	for svc, n := range consumerSpans {
		if consumers[svc] < n {
			return out, false
		}
	}
	return out, true
}

// pgxTraced are the services whose Postgres pool carries telemetry's pgx
// tracer (pg.WithTracer(tel.PgxTracer())); their statements must appear
// under their consumer span.
var pgxTraced = []string{"billing-state", "crm-sync", "support-notify"}

// consumerSpans is how many consumer spans each service starts per event:
// support-notify runs two durables (tickets and alerts).
var consumerSpans = map[string]int{"billing-state": 1, "crm-sync": 1, "support-notify": 2}

func TestOneWebhookOneTraceInProcess(t *testing.T) {
	exp := keptExporter{tracetest.NewInMemoryExporter()}
	sys := startSystem(t, exp)

	// Probes and scrapes before the event: none of them may be traced.
	for _, base := range sys.opsURLs {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}

	evID := "evt_" + randomHex(t, 12)
	customer := "cus_" + randomHex(t, 7)
	postWebhook(t, sys.ingressURL+"/webhooks/stripe", sys.secret, paymentFailed(evID, customer))

	var spans tracetest.SpanStubs
	deadline := time.Now().Add(30 * time.Second)
	for {
		var done bool
		if spans, done = eventTrace(exp.GetSpans(), evID); done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace with the consumer spans of all four durables within 30s; have %d spans:\n%s", len(exp.GetSpans()), describe(exp.GetSpans()))
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	ix := index(spans)

	// Every span that names the event is in this one trace.
	for _, s := range exp.GetSpans() {
		if attr(&s, string(telemetry.AttrEventID)) == evID && s.SpanContext.TraceID() != spans[0].SpanContext.TraceID() {
			t.Errorf("span %q of %s names the event but is in another trace", s.Name, serviceOf(&s))
		}
	}

	seen := map[string]int{}
	var server, producer *tracetest.SpanStub
	for i := range spans {
		s := &spans[i]
		seen[serviceOf(s)]++
		switch {
		case s.SpanKind == trace.SpanKindServer && serviceOf(s) == "ingress":
			server = s
		case s.SpanKind == trace.SpanKindProducer && serviceOf(s) == "ingress":
			producer = s
		}
	}
	for _, svc := range services {
		if seen[svc] == 0 {
			t.Errorf("no span from %s in the event's trace", svc)
		}
	}
	if server == nil || producer == nil {
		t.Fatalf("ingress server span %v / producer span %v missing:\n%s", server != nil, producer != nil, describe(spans))
	}
	if server.Parent.IsValid() {
		t.Errorf("ingress server span has a parent %v; Stripe sends none, it must be the root", server.Parent.SpanID())
	}
	if !ix.descends(producer, server.SpanContext.SpanID()) {
		t.Errorf("producer span %q does not descend from the ingress server span", producer.Name)
	}
	if got := attr(producer, string(telemetry.AttrEventID)); got != evID {
		t.Errorf("producer span stripe.event_id = %q, want %q", got, evID)
	}

	consumers := map[string][]*tracetest.SpanStub{}
	for i := range spans {
		s := &spans[i]
		if s.SpanKind != trace.SpanKindConsumer {
			continue
		}
		consumers[serviceOf(s)] = append(consumers[serviceOf(s)], s)
		if s.Parent.SpanID() != producer.SpanContext.SpanID() {
			t.Errorf("%s consumer span %q: parent %v, want the ingress producer span %v",
				serviceOf(s), s.Name, s.Parent.SpanID(), producer.SpanContext.SpanID())
		}
		if got := attr(s, string(telemetry.AttrEventID)); got != evID {
			t.Errorf("%s consumer span stripe.event_id = %q, want %q", serviceOf(s), got, evID)
		}
		if got := attr(s, string(telemetry.AttrCustomerID)); got != customer {
			t.Errorf("%s consumer span %s = %q, want %q", serviceOf(s), telemetry.AttrCustomerID, got, customer)
		}
	}
	for svc, want := range consumerSpans {
		if len(consumers[svc]) != want {
			t.Errorf("%s: %d consumer spans, want %d", svc, len(consumers[svc]), want)
		}
	}

	// Postgres statements hang under the consumer that ran them.
	dbSpans := map[string]int{}
	for i := range spans {
		s := &spans[i]
		if attr(s, "db.system") != "postgresql" {
			continue
		}
		dbSpans[serviceOf(s)]++
		under := false
		for _, c := range consumers[serviceOf(s)] {
			under = under || ix.descends(s, c.SpanContext.SpanID())
		}
		if !under {
			t.Errorf("%s statement span %q is not under its consumer span", serviceOf(s), s.Name)
		}
		if st := attr(s, "db.statement"); strings.Contains(st, customer) || strings.Contains(st, evID) {
			t.Errorf("db.statement carries a parameter value: %q", st)
		}
	}
	for _, svc := range pgxTraced {
		if dbSpans[svc] == 0 {
			t.Errorf("%s: no Postgres statement spans in the event's trace (pool opened without telemetry's pgx tracer?)", svc)
		}
	}

	noSecrets(t, exp.GetSpans(), sys.secret, sys.apiToken, email)
	noOpsSpans(t, exp.GetSpans())

	t.Run("grpc", func(t *testing.T) { checkGRPC(t, sys, exp, customer) })
}

// checkGRPC calls GetCustomerStatus as the mobile backend would, with its
// own traced client, and a health check, which must stay untraced.
func checkGRPC(t *testing.T, sys *system, exp keptExporter, customer string) {
	client, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "mobile-backend", Exporter: exp, Syncer: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Shutdown(context.Background())
	conn, err := grpc.NewClient(sys.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(telemetry.GRPCClientHandler(client.TracerProvider())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
	ctx, root := client.Tracer("mobile").Start(ctx, "load account screen")
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+sys.apiToken)
	_, callErr := billingv1.NewBillingStatusServiceClient(conn).GetCustomerStatus(actx,
		&billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: customer}})
	root.End()
	if callErr != nil {
		t.Fatalf("GetCustomerStatus: %v", callErr)
	}
	tid := root.SpanContext().TraceID()
	var tr tracetest.SpanStubs
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == tid {
			tr = append(tr, s)
		}
	}
	ix := index(tr)
	var srv *tracetest.SpanStub
	for i := range tr {
		if tr[i].SpanKind == trace.SpanKindServer && serviceOf(&tr[i]) == "billing-state" {
			srv = &tr[i]
		}
	}
	if srv == nil {
		t.Fatalf("no billing-state gRPC server span in the caller's trace:\n%s", describe(tr))
	}
	if !strings.HasSuffix(srv.Name, "BillingStatusService/GetCustomerStatus") {
		t.Errorf("server span name %q", srv.Name)
	}
	if !ix.descends(srv, root.SpanContext().SpanID()) {
		t.Error("gRPC server span is not a descendant of the caller's span")
	}
	var db bool
	for i := range tr {
		if attr(&tr[i], "db.system") == "postgresql" && ix.descends(&tr[i], srv.SpanContext.SpanID()) {
			db = true
		}
	}
	if !db {
		t.Error("no Postgres span under the GetCustomerStatus server span")
	}
	for _, s := range exp.GetSpans() {
		if strings.Contains(s.Name, "grpc.health.v1.Health") && s.SpanKind == trace.SpanKindServer {
			t.Errorf("gRPC health check traced: %q", s.Name)
		}
	}
	noSecrets(t, tr, sys.apiToken)
}

// noSecrets fails when any span attribute, event or status carries one of
// the given values.
func noSecrets(t *testing.T, spans tracetest.SpanStubs, secrets ...string) {
	t.Helper()
	for _, s := range spans {
		var text []string
		text = append(text, s.Name, s.Status.Description)
		for _, kv := range s.Attributes {
			text = append(text, kv.Value.String())
		}
		for _, ev := range s.Events {
			for _, kv := range ev.Attributes {
				text = append(text, kv.Value.String())
			}
		}
		joined := strings.Join(text, "\x00")
		for _, sec := range secrets {
			if strings.Contains(joined, sec) {
				t.Errorf("%s span %q carries a secret or an email", serviceOf(&s), s.Name)
			}
		}
	}
}

func noOpsSpans(t *testing.T, spans tracetest.SpanStubs) {
	t.Helper()
	for _, s := range spans {
		for _, key := range []string{"url.path", "http.target", "http.route"} {
			if telemetry.IsOpsPath(attr(&s, key)) {
				t.Errorf("%s traced an ops request: %q %s=%s", serviceOf(&s), s.Name, key, attr(&s, key))
			}
		}
	}
}

func describe(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %-15s %-9s %s trace=%s span=%s parent=%s\n", serviceOf(&s), s.SpanKind, s.Name,
			s.SpanContext.TraceID(), s.SpanContext.SpanID(), s.Parent.SpanID())
	}
	return b.String()
}
