// Package metrics_test checks that ingress's Prometheus counters move by
// exactly one step per request, for every kind of answer Stripe (or anyone
// else) can get.
package metrics_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/services/ingress"
)

const webhookPath = "/webhooks/stripe"

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startIngress runs ingress in-process against an embedded JetStream and
// returns its webhook and ops base URLs and its signing secret.
func startIngress(t *testing.T) (base, ops, secret string) {
	t.Helper()
	nats := natstest.Start(t)
	secret = "whsec_" + randomHex(t, 24)
	env := nats.Env(natsauth.Ingress)
	env["INGRESS_ADDR"], env["HTTP_ADDR"], env["STRIPE_WEBHOOK_SECRET"], env["WEBHOOK_MAX_BODY"] = "127.0.0.1:0", "127.0.0.1:0", secret, "4096"
	cfg, err := ingress.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan map[string]string, 1)
	cfg.Ready = func(addrs map[string]string) { ready <- addrs }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ingress.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingress Run: %v", err)
		}
	})
	select {
	case addrs := <-ready:
		return "http://" + addrs["webhook"], "http://" + addrs["http"], secret
	case err := <-done:
		t.Fatalf("ingress exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("ingress did not listen within 30s")
	}
	return "", "", ""
}

// scrape returns every sample on /metrics keyed by name{label="v",...}.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			out[seriesKey(name, m)] = value(fam.GetType(), m)
		}
	}
	return out
}

func seriesKey(name string, m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name + "{")
	for i, l := range m.GetLabel() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", l.GetName(), l.GetValue())
	}
	b.WriteByte('}')
	return b.String()
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	case dto.MetricType_SUMMARY:
		return float64(m.GetSummary().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

func event(id string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","api_version":"2023-10-16","created":%d,"livemode":false,`+
		`"type":"invoice.payment_failed","data":{"object":{"id":"in_metrics1","object":"invoice","customer":"cus_metrics1",`+
		`"subscription":"sub_metrics1","status":"open","amount_due":2000,"currency":"usd","attempt_count":1}}}`,
		id, time.Now().Unix()))
}

func post(t *testing.T, method, url string, body []byte, sig string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestWebhookCounters(t *testing.T) {
	base, ops, secret := startIngress(t)
	url := base + webhookPath
	otherSecret := "whsec_" + randomHex(t, 24)

	const (
		requests  = "lr_webhook_requests_total"
		sigFail   = "lr_webhook_signature_failures_total"
		dups      = "lr_webhook_duplicates_total"
		duration  = "lr_webhook_request_seconds"
		publishes = "lr_publish_seconds"
		pubTotal  = "lr_publish_total"
		// lastReceived moves to the time of every verified event, and
		// only then.
		lastReceived = "lr_webhook_last_received_timestamp_seconds"
	)
	received := map[string]bool{"accepted": true, "second event accepted": true, "duplicate": true}
	out := func(o string) string { return fmt.Sprintf("%s{outcome=%q}", requests, o) }
	reason := func(r string) string { return fmt.Sprintf("%s{reason=%q}", sigFail, r) }
	pub := func(o string) string { return fmt.Sprintf("%s{outcome=%q}", pubTotal, o) }

	evA := event("evt_" + randomHex(t, 12))
	evB := event("evt_" + randomHex(t, 12))
	steps := []struct {
		name   string
		send   func() int
		status int
		moved  map[string]float64 // every series expected to change, and by how much
	}{
		{"accepted", func() int { return post(t, http.MethodPost, url, evA, stripeevent.Sign(evA, secret, time.Now())) },
			http.StatusOK, map[string]float64{out("accepted"): 1, duration: 1, publishes: 1, pub("ok"): 1}},
		{"second event accepted", func() int { return post(t, http.MethodPost, url, evB, stripeevent.Sign(evB, secret, time.Now())) },
			http.StatusOK, map[string]float64{out("accepted"): 1, duration: 1, publishes: 1, pub("ok"): 1}},
		{"duplicate", func() int { return post(t, http.MethodPost, url, evA, stripeevent.Sign(evA, secret, time.Now())) },
			http.StatusOK, map[string]float64{out("duplicate"): 1, dups: 1, duration: 1, publishes: 1, pub("duplicate"): 1}},
		{"bad signature", func() int { return post(t, http.MethodPost, url, evA, stripeevent.Sign(evA, otherSecret, time.Now())) },
			http.StatusBadRequest, map[string]float64{out("bad_signature"): 1, reason("mismatch"): 1, duration: 1}},
		{"no signature", func() int { return post(t, http.MethodPost, url, evA, "") },
			http.StatusBadRequest, map[string]float64{out("bad_signature"): 1, reason("missing"): 1, duration: 1}},
		{"stale timestamp", func() int {
			return post(t, http.MethodPost, url, evA, stripeevent.Sign(evA, secret, time.Now().Add(-time.Hour)))
		}, http.StatusBadRequest, map[string]float64{out("stale"): 1, reason("stale"): 1, duration: 1}},
		{"wrong method", func() int { return post(t, http.MethodGet, url, nil, "") },
			http.StatusMethodNotAllowed, map[string]float64{out("method"): 1, duration: 1}},
		{"too large", func() int {
			big := bytes.Repeat([]byte(" "), 8192)
			return post(t, http.MethodPost, url, big, stripeevent.Sign(big, secret, time.Now()))
		}, http.StatusRequestEntityTooLarge, map[string]float64{out("too_large"): 1, duration: 1}},
	}

	before := scrape(t, ops)
	if v := before["lr_webhook_silence_alert_seconds"]; v != 6*3600 {
		t.Errorf("lr_webhook_silence_alert_seconds = %v, want WEBHOOK_SILENCE_ALERT's default 6h", v)
	}
	if v := before[lastReceived]; v <= 0 {
		t.Errorf("%s = %v before any webhook, want the process's start", lastReceived, v)
	}
	for _, name := range []string{out("accepted"), out("duplicate"), out("bad_signature"), out("method"), out("too_large"), dups} {
		if _, ok := before[name]; !ok {
			t.Errorf("%s is not exported before the first request; dashboards need the zero", name)
		}
	}
	for _, s := range steps {
		if got := s.send(); got != s.status {
			t.Fatalf("%s: status %d, want %d", s.name, got, s.status)
		}
		after := scrape(t, ops)
		for key, want := range s.moved {
			if d := after[key] - before[key]; d != want {
				t.Errorf("%s: %s moved by %v, want %v", s.name, key, d, want)
			}
		}
		if moved := after[lastReceived] > before[lastReceived]; moved != received[s.name] {
			t.Errorf("%s: %s moved from %v to %v", s.name, lastReceived, before[lastReceived], after[lastReceived])
		}
		for key, v := range after {
			if _, expected := s.moved[key]; expected || !strings.HasPrefix(key, "lr_") || key == lastReceived {
				continue
			}
			if v != before[key] {
				t.Errorf("%s: %s moved by %v, want no change", s.name, key, v-before[key])
			}
		}
		before = after
	}
}
