package crmsync

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/launchready/launchready/pkg/bus"
)

// The event's trace continues through crm-sync: the consumer span, the
// sync span and the HubSpot calls share the producer's trace id.
func TestTraceContinuesToTheCRMCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	exp := tracetest.NewInMemoryExporter()
	e.start(func(c *Config) {
		c.Telemetry.Exporter = exp
		c.Telemetry.Syncer = true
	})
	producer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
	defer producer.Shutdown(context.Background())
	ctx, span := producer.Tracer("test").Start(context.Background(), "stripe webhook")
	_, all := journeys(t, "trace")
	if _, err := bus.NewPublisher(e.ingress, producer).PublishEvent(ctx, all[0]); err != nil {
		t.Fatal(err)
	}
	span.End()
	e.waitProcessed(1, 20*time.Second)
	want := span.SpanContext().TraceID()
	var names []string
	eventually(t, 10*time.Second, "crm spans exported", func() (bool, string) {
		names = names[:0]
		sawSync, sawCall := false, false
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() != want {
				continue
			}
			names = append(names, s.Name)
			sawSync = sawSync || strings.HasPrefix(s.Name, "crm-sync ")
			sawCall = sawCall || strings.HasPrefix(s.Name, "hubspot ")
		}
		return sawSync && sawCall, strings.Join(names, ", ")
	})
}

// A webhook URL is a credential: spans name the host only.
func TestWebhookURLPathStaysOutOfSpans(t *testing.T) {
	t.Parallel()
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hooks/catch/123/s3cretpath" {
			t.Errorf("request path %q", r.URL.Path)
		}
	}))
	defer recv.Close()
	e := newEnv(t, map[string]string{
		"CRM_PROVIDER":       "webhook",
		"CRM_WEBHOOK_URL":    recv.URL + "/hooks/catch/123/s3cretpath",
		"CRM_WEBHOOK_SECRET": secret(t, ""),
	})
	exp := tracetest.NewInMemoryExporter()
	e.start(func(c *Config) {
		c.Telemetry.Exporter = exp
		c.Telemetry.Syncer = true
	})
	_, all := journeys(t, "whtrace")
	e.publish(all[0])
	e.waitProcessed(1, 20*time.Second)
	calls := 0
	for _, s := range exp.GetSpans() {
		if strings.HasPrefix(s.Name, "webhook ") {
			calls++
		}
		for _, a := range s.Attributes {
			if strings.Contains(a.Value.String(), "s3cretpath") || strings.Contains(a.Value.String(), "hooks/catch") {
				t.Errorf("span %s attribute %s carries the webhook path", s.Name, a.Key)
			}
		}
	}
	if calls == 0 {
		t.Fatal("no webhook call span")
	}
}
