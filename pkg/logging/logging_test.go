package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/logging"
)

func TestLinesCarryServiceAndTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, "ingress", slog.LevelInfo).With("component", "x")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	log.InfoContext(ctx, "accepted", "event_id", "evt_1")
	log.DebugContext(ctx, "hidden")
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("want exactly one JSON line, got %q: %v", buf.String(), err)
	}
	want := map[string]string{"service": "ingress", "component": "x", "event_id": "evt_1",
		"trace_id": tid.String(), "span_id": sid.String(), "msg": "accepted"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %s", k, line[k], v)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "WARN": slog.LevelWarn, "error": slog.LevelError, "": slog.LevelInfo, "bogus": slog.LevelInfo} {
		if got := logging.ParseLevel(in); got != want {
			t.Errorf("ParseLevel(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestTextLinesAreShortAndLeadWithTheIDs(t *testing.T) {
	var buf bytes.Buffer
	setup := logging.NewSetup(&buf, slog.LevelInfo, logging.Text)
	log := setup.Logger("billing-state").With("component", "consumer")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.InfoContext(ctx, "event applied", "outcome", "applied", "customer_id", "cus_2", "event_id", "evt_1", slog.Group("db", "wait", "1.5s"))
	log.Warn("postgres not ready; retrying", "error", errors.New("dial tcp: refused"))
	log.Debug("hidden")

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	want := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} billing-state  event applied evt_1 cus_2 component=consumer outcome=applied db.wait=1.5s$`)
	if !want.MatchString(lines[0]) {
		t.Errorf("line %q does not match %s", lines[0], want)
	}
	if strings.Contains(lines[0], tid.String()) || strings.Contains(lines[0], "{") {
		t.Errorf("text line carries JSON or the trace id: %q", lines[0])
	}
	if !strings.HasSuffix(lines[1], `billing-state  WARN postgres not ready; retrying component=consumer error="dial tcp: refused"`) {
		t.Errorf("warning line %q", lines[1])
	}
}

func TestFromEnvChoosesTheFormat(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want logging.Format
	}{{"", logging.JSON}, {"json", logging.JSON}, {"TEXT", logging.Text}} {
		var buf bytes.Buffer // not a terminal: Auto is JSON
		s, err := logging.FromEnv(&buf, func(k string) string {
			return map[string]string{"LOG_FORMAT": tc.env, "LOG_LEVEL": "warn"}[k]
		})
		if err != nil || s.Format() != tc.want {
			t.Errorf("LOG_FORMAT=%q: format %q, err %v; want %q", tc.env, s.Format(), err, tc.want)
		}
		s.Logger("crm-sync").Info("below the level")
		if buf.Len() != 0 {
			t.Errorf("LOG_LEVEL=warn let an info line through: %q", buf.String())
		}
	}
	if _, err := logging.FromEnv(io.Discard, func(k string) string { return map[string]string{"LOG_FORMAT": "yaml"}[k] }); err == nil {
		t.Error("LOG_FORMAT=yaml accepted")
	}
}

func TestServicesOfOneProcessShareTheWriter(t *testing.T) {
	var buf bytes.Buffer
	setup := logging.NewSetup(&buf, slog.LevelInfo, logging.JSON)
	var wg sync.WaitGroup
	for _, name := range []string{"ingress", "billing-state", "crm-sync", "support-notify"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := setup.Logger(name)
			for i := range 200 {
				log.Info("line", "n", i)
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("interleaved or broken line %q: %v", l, err)
		}
		n++
	}
	if n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
}

func TestTextWritesDocumentsAsJSON(t *testing.T) {
	var buf bytes.Buffer
	log := logging.NewSetup(&buf, slog.LevelInfo, logging.Text).Logger("crm-sync")
	log.Info("crm change", "document", struct {
		Kind   string `json:"kind"`
		Status string `json:"status"`
	}{"customer", "past due"}, "tokens", []string{"a", "b"})
	if want := ` document={"kind":"customer","status":"past due"} tokens=["a","b"]` + "\n"; !strings.HasSuffix(buf.String(), want) {
		t.Fatalf("line %q does not end with %q", buf.String(), want)
	}
}
