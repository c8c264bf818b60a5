package dev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/logging/logtest"
	lrservice "github.com/launchready/launchready/pkg/service"
)

// restarts returns the restart_in of every "restarting" line about name.
func restarts(logs *logtest.Lines, name string) []string {
	var waits []string
	for _, m := range logs.Records() {
		if m["msg"] == "service failed; restarting it" && m["service_name"] == name {
			waits = append(waits, fmt.Sprint(m["restart_in"]))
		}
	}
	return waits
}

func testLauncher(logs *logtest.Lines, getenv config.Getenv) *launcher {
	setup := logging.NewSetup(logs, slog.LevelInfo, logging.JSON)
	return &launcher{log: setup.Logger("launchready"), logs: setup, getenv: getenv,
		firstWait: 10 * time.Millisecond, maxWait: 40 * time.Millisecond, stableAfter: time.Hour}
}

// launch runs l in the background; the returned function stops it and
// returns run's answer.
func launch(t *testing.T, l *launcher, services []service, ready func(string, map[string]string)) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := make(chan error, 1)
	go func() { d <- l.run(ctx, services, ready) }()
	t.Cleanup(cancel)
	return func() error {
		cancel()
		select {
		case err := <-d:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("launcher did not stop within 30s")
			return nil
		}
	}, d
}

// waitFor fails the test unless ch delivers within d.
func waitFor[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
	var zero T
	return zero
}

func TestLauncherRestartsOnlyTheFailedServiceWithBoundedBackoff(t *testing.T) {
	var logs logtest.Lines
	l := testLauncher(&logs, config.Map(nil))
	const failures = 5
	var flakyRuns, steadyRuns int
	steadyStopped := make(chan struct{})
	services := []service{
		{name: "flaky", run: func(ctx context.Context, _ config.Getenv, _ *slog.Logger, ready func(map[string]string)) error {
			flakyRuns++
			ready(map[string]string{"http": fmt.Sprint("run", flakyRuns)})
			if flakyRuns <= failures {
				return lrservice.ErrNATSClosed
			}
			<-ctx.Done()
			return nil
		}},
		{name: "steady", run: func(ctx context.Context, _ config.Getenv, _ *slog.Logger, ready func(map[string]string)) error {
			steadyRuns++
			ready(map[string]string{"http": "steady"})
			<-ctx.Done()
			close(steadyStopped)
			return nil
		}},
	}
	readies := make(chan string, 2*failures+4)
	stop, done := launch(t, l, services, func(name string, a map[string]string) { readies <- name + " " + a["http"] })

	seen := map[string]bool{}
	for len(seen) < failures+2 {
		seen[waitFor(t, readies, 10*time.Second, "the flaky service to serve again")] = true
	}
	if !seen[fmt.Sprintf("flaky run%d", failures+1)] || !seen["steady steady"] {
		t.Fatalf("served: %v", seen)
	}
	select {
	case <-steadyStopped:
		t.Fatal("the healthy service was stopped by the other's failures")
	case err := <-done:
		t.Fatalf("the launcher ended: %v", err)
	default:
	}
	if err := stop(); err != nil {
		t.Fatalf("launcher after a requested stop: %v", err)
	}
	if steadyRuns != 1 || flakyRuns != failures+1 {
		t.Fatalf("runs: steady %d, flaky %d; want 1 and %d", steadyRuns, flakyRuns, failures+1)
	}
	// The pause doubles with each failure in a row and stops growing at
	// the bound.
	if got, want := strings.Join(restarts(&logs, "flaky"), ","), "10ms,20ms,40ms,40ms,40ms"; got != want {
		t.Fatalf("restart pauses %s, want %s", got, want)
	}
	if len(restarts(&logs, "steady")) != 0 {
		t.Fatal("the healthy service was restarted")
	}
}

func TestLauncherEndsWhenAServiceFailsBeforeServing(t *testing.T) {
	var logs logtest.Lines
	l := testLauncher(&logs, config.Map(nil))
	otherStopped := make(chan struct{})
	portInUse := errors.New("listen 127.0.0.1:8080: address already in use")
	services := []service{
		{name: "broken", run: func(context.Context, config.Getenv, *slog.Logger, func(map[string]string)) error {
			return portInUse
		}},
		{name: "other", run: func(ctx context.Context, _ config.Getenv, _ *slog.Logger, ready func(map[string]string)) error {
			ready(nil)
			<-ctx.Done()
			close(otherStopped)
			return nil
		}},
	}
	_, done := launch(t, l, services, func(string, map[string]string) {})
	err := waitFor(t, done, 10*time.Second, "the launcher to end")
	if !errors.Is(err, portInUse) || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("launcher returned %v, want the broken service's error", err)
	}
	waitFor(t, otherStopped, time.Second, "the other service to be stopped")
	if len(restarts(&logs, "broken")) != 0 {
		t.Fatal("a service that never served was restarted")
	}
}

// gatekeeper admits clients until told to refuse them, and remembers the
// ids of those it admitted so the test can disconnect them.
type gatekeeper struct {
	mu      sync.Mutex
	refuse  bool
	clients []uint64
}

func (g *gatekeeper) Check(c server.ClientAuthentication) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refuse {
		return false
	}
	g.clients = append(g.clients, c.GetID())
	return true
}

// shutOut refuses every client from now on and disconnects those in.
func (g *gatekeeper) shutOut(srv *server.Server) {
	g.mu.Lock()
	g.refuse = true
	ids := g.clients
	g.mu.Unlock()
	for _, id := range ids {
		_ = srv.DisconnectClientByID(id) // gone already is fine
	}
}

func (g *gatekeeper) letIn() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse = false
}

// TestLauncherRestartsARealServiceWhoseConnectionClosed runs ingress in
// process against a NATS server that stops admitting it: the server
// disconnects it and refuses its reconnections, nats.go gives up after the
// same authorization error twice, and the connection is closed for good.
// Ingress fails, the launcher restarts it (again and again while the server
// refuses), and once the server admits it the restart serves again.
func TestLauncherRestartsARealServiceWhoseConnectionClosed(t *testing.T) {
	gate := &gatekeeper{}
	srv, err := server.NewServer(&server.Options{ServerName: "launcher-test", Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true, CustomClientAuthentication: gate})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}

	var logs logtest.Lines
	l := testLauncher(&logs, config.Map(map[string]string{
		"NATS_URL":              srv.ClientURL(),
		"INGRESS_ADDR":          "127.0.0.1:0",
		"HTTP_ADDR":             "127.0.0.1:0",
		"STRIPE_WEBHOOK_SECRET": "whsec_" + randomHex(16),
		"NATS_STORAGE":          "memory",
	}))
	l.firstWait, l.maxWait = 50*time.Millisecond, 200*time.Millisecond
	readies := make(chan map[string]string, 16)
	stop, done := launch(t, l, []service{{name: "ingress", run: runIngress}}, func(_ string, a map[string]string) { readies <- a })
	waitFor(t, readies, 30*time.Second, "ingress to serve")

	gate.shutOut(srv)
	deadline := time.Now().Add(10 * time.Second)
	for len(restarts(&logs, "ingress")) < 2 {
		select {
		case err := <-done:
			t.Fatalf("the launcher ended instead of restarting ingress: %v", err)
		case a := <-readies:
			t.Fatalf("ingress served again while the server refused it: %v", a)
		case <-time.After(20 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingress not restarted twice within 10s; logs:\n%s", logs.String())
		}
	}
	if !strings.Contains(strings.ToLower(logs.String()), "nats connection closed for good: nats: authorization violation") {
		t.Fatalf("the restarts were not for a connection closed for good:\n%s", logs.String())
	}
	gate.letIn()
	waitFor(t, readies, 30*time.Second, "ingress to serve again after the restart")
	if err := stop(); err != nil {
		t.Fatalf("launcher after a requested stop: %v", err)
	}
}
