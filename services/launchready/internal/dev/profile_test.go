package dev

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging/logtest"
	"github.com/launchready/launchready/test/testkit"
)

func TestServiceGoroutinesCarryTheServiceProfileLabel(t *testing.T) {
	labels := make(chan string, 2)
	svc := service{name: "crm-sync", run: func(ctx context.Context, _ config.Getenv, _ *slog.Logger, ready func(map[string]string)) error {
		own, _ := pprof.Label(ctx, profileLabel)
		labels <- own
		// A goroutine the service starts is labelled too.
		var wg sync.WaitGroup
		wg.Go(func() {
			var got []string
			pprof.ForLabels(ctx, func(k, v string) bool { got = append(got, k+"="+v); return true })
			labels <- strings.Join(got, ",")
		})
		wg.Wait()
		ready(nil)
		<-ctx.Done()
		return nil
	}}
	l := testLauncher(&logtest.Lines{}, func(string) string { return "" })
	stop, _ := launch(t, l, []service{svc}, func(string, map[string]string) {})
	for _, want := range []string{"crm-sync", "service=crm-sync"} {
		if got := waitFor(t, labels, 10*time.Second, "a label"); got != want {
			t.Errorf("label %q, want %q", got, want)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestProfilesServedOnlyWhereAsked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := serveProfiles(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + addr.String() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("cmdline: %d %q", res.StatusCode, body)
	}
	res, err = http.Post("http://"+addr.String()+"/debug/pprof/cmdline", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST answered %d, want 405", res.StatusCode)
	}
	cancel()
	http.DefaultClient.CloseIdleConnections()
	testkit.Eventually(t, 10*time.Second, "the pprof listener to close with its context", func() bool {
		r, err := http.Get("http://" + addr.String() + "/debug/pprof/cmdline")
		if err != nil {
			return true
		}
		_ = r.Body.Close()
		http.DefaultClient.CloseIdleConnections()
		return false
	})
}
