package vendor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/vendorhttp"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"1.5":                           1500 * time.Millisecond,
		"-3":                            0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:35 GMT": 30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0,
	}
	for in, want := range cases {
		if got, _ := vendorhttp.ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
	h := func(v string) http.Header { return http.Header{"Retry-After": []string{v}} }
	if got := retryAfter.Delay(http.Header{}, now); got != 30*time.Second {
		t.Errorf("missing header: %s", got)
	}
	if got := retryAfter.Delay(h("0"), now); got != 30*time.Second {
		t.Errorf("zero header: %s", got)
	}
	if got := retryAfter.Delay(h("86400"), now); got != 15*time.Minute {
		t.Errorf("huge header not capped: %s", got)
	}
}

func TestDoClassifiesAnswers(t *testing.T) {
	var status int
	var hdr string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hdr != "" {
			w.Header().Set("Retry-After", hdr)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":"x","auth":"Bearer abc.def.ghi"}`))
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{Vendor: "zendesk", Timeout: 2 * time.Second, Metrics: m})
	call := func() error {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL, nil)
		_, err := c.Send(context.Background(), "create ticket", req)
		return err
	}

	status = http.StatusCreated
	if err := call(); err != nil {
		t.Fatalf("2xx: %v", err)
	}
	status, hdr = http.StatusTooManyRequests, "3"
	if err := call(); err == nil || bus.IsPermanent(err) || vendorhttp.Status(err) != 429 {
		t.Fatalf("429: %v", err)
	}
	status, hdr = http.StatusBadGateway, ""
	if err := call(); err == nil || bus.IsPermanent(err) || vendorhttp.Status(err) != 502 {
		t.Fatalf("502: %v", err)
	}
	status = http.StatusConflict
	if err := call(); err == nil || bus.IsPermanent(err) {
		t.Fatalf("409 should retry: %v", err)
	}
	status = http.StatusUnprocessableEntity
	err = call()
	if !bus.IsPermanent(err) || vendorhttp.Status(err) != 422 {
		t.Fatalf("422: %v", err)
	}
	if strings.Contains(err.Error(), "abc.def.ghi") {
		t.Fatalf("credential in error: %v", err)
	}
	for outcome, want := range map[string]float64{"ok": 1, "rate_limited": 1, "retryable": 2, "rejected": 1} {
		if got := testutil.ToFloat64(m.Calls.WithLabelValues("zendesk", outcome)); got != want {
			t.Errorf("lr_support_calls_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

func TestTransportErrorsHideTheURL(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := New(Config{Vendor: "slack", Timeout: 100 * time.Millisecond, HideURLPath: true})
	secretPath := "/services/T0/B0/not-a-real-token-but-secret"
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+secretPath, nil)
	_, err := c.Send(context.Background(), "post alert", req)
	if err == nil || bus.IsPermanent(err) {
		t.Fatalf("timeout should be retryable: %v", err)
	}
	if strings.Contains(err.Error(), "not-a-real-token") {
		t.Fatalf("webhook URL leaked into the error: %v", err)
	}
	if !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("error should say timeout: %v", err)
	}
}
