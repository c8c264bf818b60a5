package service_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/logging/logtest"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/pkg/telemetry"
)

// run is one Supervise in the background.
type run struct {
	cancel context.CancelFunc
	done   chan error
	ready  chan map[string]string
}

func supervise(t *testing.T, spec service.Spec, wire service.Wiring) *run {
	t.Helper()
	r := &run{done: make(chan error, 1), ready: make(chan map[string]string, 1)}
	spec.Name = "demo"
	spec.OpsAddr = "127.0.0.1:0"
	spec.Telemetry = telemetry.Config{ServiceName: "demo"}
	spec.Streams = bus.StreamConfig{Replicas: 1}
	spec.Ready = func(a map[string]string) { r.ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- service.Supervise(ctx, spec, wire) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Supervise did not return within 30s of the stop")
		}
	})
	return r
}

func (r *run) waitReady(t *testing.T) map[string]string {
	t.Helper()
	select {
	case a := <-r.ready:
		return a
	case err := <-r.done:
		t.Fatalf("Supervise returned before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready within 30s")
	}
	return nil
}

func (r *run) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("Supervise still running after %s", within)
		return nil
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func migrateNothing(context.Context, *pgxpool.Pool) error { return nil }

func TestSuperviseServesThenStopsPartsLastFirst(t *testing.T) {
	t.Parallel()
	ns := natstest.StartOpen(t)
	var mu sync.Mutex
	var stopped []string
	part := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			stopped = append(stopped, name)
			mu.Unlock()
			return nil
		}
	}
	var host *service.Host
	r := supervise(t, service.Spec{
		NATS:     ns.Conn("demo"),
		Database: &service.Database{URL: pgtest.NewDatabase(t), MaxConns: 2, Migrate: migrateNothing},
	}, func(_ context.Context, h *service.Host) error {
		host = h
		if h.Pool == nil || h.NC == nil || h.JS == nil || h.Log == nil || h.Registry == nil || h.Telemetry == nil {
			t.Errorf("host not fully built: %+v", h)
		}
		if _, err := h.Listen("extra", "127.0.0.1:0"); err != nil {
			return err
		}
		h.Go("first", part("first"))
		h.Go("second", part("second"))
		return nil
	})
	addrs := r.waitReady(t)
	if addrs["http"] == "" || addrs["extra"] == "" {
		t.Fatalf("Ready got %v, want the ops and the extra address", addrs)
	}
	ops := "http://" + addrs["http"]
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "lr_db_pool_max_connections"} {
		if code, body := get(t, ops+path); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	if _, err := host.JS.Stream(context.Background(), bus.StreamEvents); err != nil {
		t.Errorf("streams not provisioned: %v", err)
	}
	r.cancel()
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Supervise after a stop: %v", err)
	}
	if strings.Join(stopped, ",") != "second,first" {
		t.Errorf("parts stopped in order %v, want second,first", stopped)
	}
	if !host.NC.IsClosed() {
		t.Error("NATS connection left open")
	}
	if code, _ := get(t, ops+"/healthz"); code != 0 {
		t.Errorf("ops server still answers after the stop: %d", code)
	}
}

// A NATS connection closed for good (here by the server, for a control
// line over its limit, as a caller-controlled subject once did) fails
// /healthz and the service.
func TestDeadNATSConnectionFailsHealthzAndTheService(t *testing.T) {
	t.Parallel()
	ns := natstest.StartOpen(t)
	var host *service.Host
	release := make(chan struct{})
	r := supervise(t, service.Spec{NATS: ns.Conn("demo")}, func(_ context.Context, h *service.Host) error {
		host = h
		// Holds the shutdown until the test has seen /healthz: parts
		// stop before the ops server does.
		h.Go("holder", func(ctx context.Context) error {
			<-ctx.Done()
			<-release
			return nil
		})
		return nil
	})
	ops := "http://" + r.waitReady(t)["http"]
	if code, body := get(t, ops+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before: %d %s", code, body)
	}

	if err := host.NC.Publish(strings.Repeat("a", 5000), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, ops+"/healthz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "nats") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d %s 5s after the connection closed", code, body)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	close(release)
	err := r.wait(t, 10*time.Second)
	if !errors.Is(err, service.ErrNATSClosed) || !strings.Contains(err.Error(), "control line") {
		t.Fatalf("Supervise returned %v, want ErrNATSClosed with the server's reason", err)
	}
}

// A part's own pool and NATS connection come from the Host: the pool
// carries its name to Postgres and to its metrics, and the connection,
// closed for good, fails /readyz but neither /healthz nor the service.
func TestSecondPoolAndConnection(t *testing.T) {
	t.Parallel()
	ns := natstest.StartOpen(t)
	var logs logtest.Lines
	var pool *pgxpool.Pool
	var watch *nats.Conn
	r := supervise(t, service.Spec{
		NATS: ns.Conn("demo"), Logger: logging.New(&logs, "demo", 0),
		Database: &service.Database{URL: pgtest.NewDatabase(t), MaxConns: 2, Migrate: migrateNothing},
	}, func(_ context.Context, h *service.Host) error {
		var err error
		if pool, err = h.OpenPool("demo-api", 3); err != nil {
			return err
		}
		if watch, err = h.Connect("demo-watch"); err != nil {
			return err
		}
		h.Go("part", func(ctx context.Context) error { <-ctx.Done(); return nil })
		return nil
	})
	ops := "http://" + r.waitReady(t)["http"]

	var app string
	if err := pool.QueryRow(context.Background(), "select current_setting('application_name')").Scan(&app); err != nil {
		t.Fatal(err)
	}
	if app != "demo-api" || pool.Config().MaxConns != 3 {
		t.Errorf("second pool: application_name %q, max %d; want demo-api, 3", app, pool.Config().MaxConns)
	}
	if code, body := get(t, ops+"/metrics"); code != http.StatusOK || !strings.Contains(body, `lr_db_pool_max_connections{pool="demo-api"} 3`) {
		t.Errorf("/metrics lacks the second pool: %d", code)
	}
	if watch.Opts.Name != "demo-watch" || !watch.IsConnected() {
		t.Errorf("second connection: name %q, connected %v", watch.Opts.Name, watch.IsConnected())
	}
	if code, body := get(t, ops+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before: %d %s", code, body)
	}

	if err := watch.Publish(strings.Repeat("a", 5000), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, ops+"/readyz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, `"nats demo-watch":"`+service.ErrNATSClosed.Error()+`"`) || strings.Contains(body, `"nats":`) {
				t.Fatalf("/readyz after the second connection closed: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s 5s after the connection closed", code, body)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if code, body := get(t, ops+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the second connection closed: %d %s", code, body)
	}
	if !strings.Contains(logs.String(), "nats connection demo-watch closed for good") {
		t.Errorf("the closed connection was not logged:\n%s", logs.String())
	}
	select {
	case err := <-r.done:
		t.Fatalf("the service stopped for its second connection: %v", err)
	default:
	}

	r.cancel()
	if err := r.wait(t, 20*time.Second); err != nil {
		t.Fatalf("Supervise after a stop: %v", err)
	}
	if pool.Stat().TotalConns() != 0 {
		t.Error("second pool left open")
	}
}

func TestStartPolicy(t *testing.T) {
	t.Parallel()
	ns := natstest.StartOpen(t)

	t.Run("an unreachable database is retried with growing waits until StartTimeout", func(t *testing.T) {
		t.Parallel()
		var logs logtest.Lines
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closedPort := ln.Addr().String()
		ln.Close()
		start := time.Now()
		r := supervise(t, service.Spec{
			NATS: ns.Conn("demo"), StartTimeout: 2 * time.Second,
			Logger:   logging.New(&logs, "demo", 0),
			Database: &service.Database{URL: "postgres://postgres@" + closedPort + "/x?connect_timeout=1", MaxConns: 1, Migrate: func(ctx context.Context, p *pgxpool.Pool) error { return p.Ping(ctx) }},
		}, func(context.Context, *service.Host) error { t.Error("wired without a database"); return nil })
		err = r.wait(t, 15*time.Second)
		if err == nil || !strings.Contains(err.Error(), "migrate") || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the migration step past its deadline", err)
		}
		if took := time.Since(start); took < 2*time.Second {
			t.Fatalf("gave up after %s, before StartTimeout", took)
		}
		for _, wait := range []string{`"retry_in":"250ms"`, `"retry_in":"500ms"`} {
			if !strings.Contains(logs.String(), wait) {
				t.Errorf("no retry logged with %s:\n%s", wait, logs.String())
			}
		}
	})

	t.Run("a failure a retry cannot fix fails at once", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r := supervise(t, service.Spec{
			NATS: ns.Conn("demo"), StartTimeout: time.Minute,
			Database: &service.Database{URL: pgtest.NewDatabase(t), MaxConns: 1, Migrate: func(context.Context, *pgxpool.Pool) error {
				return &pgconn.PgError{Code: "42601", Message: "syntax error"}
			}},
		}, func(context.Context, *service.Host) error { return nil })
		if err := r.wait(t, 15*time.Second); err == nil || !strings.Contains(err.Error(), "syntax error") {
			t.Fatalf("err = %v, want the migration's error", err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("took %s to give up on a permanent failure", took)
		}
	})

	t.Run("a stop while waiting for NATS is clean, and /readyz says what is missing", func(t *testing.T) {
		t.Parallel()
		down := natstest.StartOpen(t)
		down.Shutdown()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		opsAddr := ln.Addr().String()
		ln.Close()
		r := &run{done: make(chan error, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			r.done <- service.Supervise(ctx, service.Spec{Name: "demo", OpsAddr: opsAddr, NATS: down.Conn("demo")},
				func(context.Context, *service.Host) error { return nil })
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := get(t, "http://"+opsAddr+"/readyz")
			if code == http.StatusServiceUnavailable {
				if !strings.Contains(body, `"nats":"not connected yet"`) {
					t.Fatalf("/readyz while NATS is down: %s", body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never answered: %d %s", code, body)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
		if code, _ := get(t, "http://"+opsAddr+"/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz while starting: %d", code)
		}
		cancel()
		if err := r.wait(t, 10*time.Second); err != nil {
			t.Fatalf("stop while starting returned %v", err)
		}
	})
}
