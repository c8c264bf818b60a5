package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/service"
)

type cfg struct {
	Port string
	Log  *slog.Logger
}

func (c cfg) WithLogger(log *slog.Logger) cfg {
	c.Log = log
	return c
}

func fromEnv(getenv config.Getenv) (cfg, error) {
	e := config.New(getenv)
	c := cfg{Port: e.String("PORT", "80")}
	if c.Port == "bad" {
		e.Fail("PORT: bad")
	}
	return c, e.Err()
}

// lines decodes the JSON log lines in b.
func lines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRunPassesTheConfigurationAndALoggerAtLOG_LEVEL(t *testing.T) {
	var buf bytes.Buffer
	var got cfg
	err := service.Run(context.Background(), "demo", fromEnv, func(_ context.Context, c cfg) error {
		got = c
		c.Log.Debug("hello")
		return nil
	}, &buf, config.Map(map[string]string{"PORT": "9", "LOG_LEVEL": "debug"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Port != "9" || got.Log == nil {
		t.Fatalf("Run got %+v", got)
	}
	ls := lines(t, &buf)
	if len(ls) != 1 || ls[0]["msg"] != "hello" || ls[0]["service"] != "demo" {
		t.Fatalf("logs = %v; want one debug line labelled demo", ls)
	}
}

func TestRunLogsAndReturnsFailures(t *testing.T) {
	var buf bytes.Buffer
	called := false
	err := service.Run(context.Background(), "demo", fromEnv, func(context.Context, cfg) error { called = true; return nil },
		&buf, config.Map(map[string]string{"PORT": "bad"}))
	if err == nil || called {
		t.Fatalf("bad configuration: err = %v, service ran = %v", err, called)
	}
	if ls := lines(t, &buf); len(ls) != 1 || ls[0]["msg"] != "configuration" || !strings.Contains(ls[0]["error"].(string), "PORT") {
		t.Fatalf("logs = %v", ls)
	}

	buf.Reset()
	boom := errors.New("boom")
	err = service.Run(context.Background(), "demo", fromEnv, func(context.Context, cfg) error { return boom }, &buf, config.Map(nil))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if ls := lines(t, &buf); len(ls) != 1 || ls[0]["msg"] != "demo stopped" || ls[0]["error"] != "boom" {
		t.Fatalf("logs = %v", ls)
	}
}
