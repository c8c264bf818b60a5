package trace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/test/harness"
)

// jaegerBinary builds Jaeger v1.76 with scripts/jaeger.sh, or reuses the
// binary it cached on an earlier run.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "jaeger.sh"), "build")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/jaeger.sh build: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	bin := lines[len(lines)-1]
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("scripts/jaeger.sh build printed %q, not an executable: %v", bin, err)
	}
	return bin
}

// jaeger is an all-in-one Jaeger (in-memory storage) on free ports.
type jaeger struct {
	otlp  string // OTLP/gRPC endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT
	query string // query API base URL
	proc  *harness.Proc
}

// jaegerConfig is Jaeger v2's all-in-one pipeline reduced to what the test
// needs: OTLP/gRPC in, memory storage, the query API; every port chosen by
// the test so runs never collide with a developer's Jaeger.
const jaegerConfig = `
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	queryPort, queryGRPCPort, otlpPort := harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(jaegerConfig, queryPort, queryGRPCPort, otlpPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	j := &jaeger{
		otlp:  fmt.Sprintf("http://127.0.0.1:%d", otlpPort),
		query: fmt.Sprintf("http://127.0.0.1:%d", queryPort),
	}
	j.proc = harness.Start(t, "jaeger", bin, nil, "--config", cfg)
	harness.WaitHTTP(t, j.query+"/api/services", 60*time.Second, j.proc)
	return j
}

// Jaeger's query API (/api/traces), the parts the test reads.
type jaegerTraces struct {
	Data []jaegerTrace `json:"data"`
}

type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	Tags          []jaegerKV  `json:"tags"`
	ProcessID     string      `json:"processID"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	SpanID  string `json:"spanID"`
}

type jaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

type jaegerProcess struct {
	ServiceName string `json:"serviceName"`
}

func (s jaegerSpan) tag(key string) string {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// findTraces asks Jaeger for ingress's traces tagged with the event id.
func (j *jaeger) findTraces(evID string) ([]jaegerTrace, error) {
	q := url.Values{
		"service":  {"ingress"},
		"tags":     {fmt.Sprintf(`{"stripe.event_id":%q}`, evID)},
		"limit":    {"20"},
		"lookback": {"1h"},
	}
	resp, err := http.Get(j.query + "/api/traces?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger /api/traces: %s", resp.Status)
	}
	var out jaegerTraces
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode /api/traces: %w", err)
	}
	return out.Data, nil
}

// complete reports whether tr holds the consumer spans of all four durables.
func complete(tr jaegerTrace) bool {
	n := map[string]int{}
	for _, s := range tr.Spans {
		if s.tag("span.kind") == "consumer" {
			n[tr.Processes[s.ProcessID].ServiceName]++
		}
	}
	for svc, want := range consumerSpans {
		if n[svc] < want {
			return false
		}
	}
	return true
}

// TestOneWebhookOneTraceInJaeger runs the four services as separate
// processes exporting OTLP to a real Jaeger, posts one failed payment, and
// finds its whole path through Jaeger's query API, as an operator would.
func TestOneWebhookOneTraceInJaeger(t *testing.T) {
	j := startJaeger(t)
	stack := harness.StartStack(t, harness.StackOptions{Env: map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": j.otlp,
		// Export within half a second rather than the SDK's five.
		"OTEL_BSP_SCHEDULE_DELAY": "500",
	}})

	evID := "evt_" + randomHex(t, 12)
	customer := "cus_" + randomHex(t, 7)
	postWebhook(t, stack.WebhookURL, stack.Secret, paymentFailed(evID, customer))

	var (
		found   []jaegerTrace
		lastErr error
	)
	deadline := time.Now().Add(60 * time.Second)
	for {
		found, lastErr = j.findTraces(evID)
		if lastErr == nil && len(found) == 1 && complete(found[0]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger holds no complete trace for %s within 60s: %d traces, last error %v, spans %s",
				evID, len(found), lastErr, summarize(found))
		}
		time.Sleep(250 * time.Millisecond) // polling interval
	}
	tr := found[0]

	var producer *jaegerSpan
	services := map[string]int{}
	for i, s := range tr.Spans {
		svc := tr.Processes[s.ProcessID].ServiceName
		services[svc]++
		if svc == "ingress" && s.tag("span.kind") == "producer" {
			producer = &tr.Spans[i]
		}
	}
	for _, svc := range []string{"ingress", "billing-state", "crm-sync", "support-notify"} {
		if services[svc] == 0 {
			t.Errorf("trace %s has no span of %s (services: %v)", tr.TraceID, svc, services)
		}
	}
	if producer == nil {
		t.Fatalf("trace %s has no ingress producer span: %s", tr.TraceID, summarize(found))
	}
	for _, s := range tr.Spans {
		if s.tag("span.kind") != "consumer" {
			continue
		}
		svc := tr.Processes[s.ProcessID].ServiceName
		if s.parent() != producer.SpanID {
			t.Errorf("%s consumer span %q: parent %s, want the ingress producer span %s", svc, s.OperationName, s.parent(), producer.SpanID)
		}
		if s.tag("stripe.event_id") != evID {
			t.Errorf("%s consumer span stripe.event_id = %q", svc, s.tag("stripe.event_id"))
		}
	}

	// What an operator sees must hold no secret: not the signing secret,
	// not the API token, not the customer's email, not the Slack webhook
	// path (the URL is the credential).
	raw, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	slackPath, _ := url.Parse(stack.Slack.URL())
	for what, secret := range map[string]string{
		"webhook secret": stack.Secret, "API token": stack.Token, "email": email, "Slack webhook path": slackPath.Path,
	} {
		if secret != "" && strings.Contains(string(raw), secret) {
			t.Errorf("the trace in Jaeger carries the %s", what)
		}
	}
	t.Logf("trace %s: %d spans across %v", tr.TraceID, len(tr.Spans), services)
}

func summarize(trs []jaegerTrace) string {
	var b strings.Builder
	for _, tr := range trs {
		fmt.Fprintf(&b, "\ntrace %s:", tr.TraceID)
		for _, s := range tr.Spans {
			fmt.Fprintf(&b, "\n  %-15s %-9s %s span=%s parent=%s", tr.Processes[s.ProcessID].ServiceName,
				s.tag("span.kind"), s.OperationName, s.SpanID, s.parent())
		}
	}
	return b.String()
}
