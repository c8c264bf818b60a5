package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/telemetry"
)

// Defaults of Spec.
const (
	DefaultStartTimeout  = 2 * time.Minute
	DefaultShutdownGrace = 10 * time.Second
)

// ErrNATSClosed means the service's NATS connection is closed for good: the
// client gave up reconnecting (its credentials were refused twice, or the
// server ended the session with a protocol error). Nothing in the process
// can bring it back; a restart can.
var ErrNATSClosed = errors.New("nats connection closed for good")

// Spec is what a service asks of the shared setup.
type Spec struct {
	// Name names the service in logs, traces, metrics, its NATS connection
	// and its Postgres application_name.
	Name string
	// Logger receives the logs (nil: discarded); Registry the metrics (nil:
	// a fresh registry with the Go and process collectors).
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Telemetry says where spans go.
	Telemetry telemetry.Config
	// Settings are logged when the service starts; secrets must mask
	// themselves (config.Secret, config.MaskURL).
	Settings slog.LogValuer
	// OpsAddr is HTTP_ADDR: /healthz, /readyz and /metrics. It is served
	// before anything else starts, so the probes answer while the
	// dependencies come up and /readyz says which is missing.
	OpsAddr string
	// NATS is NATS_URL with the credentials that go with it: the service's
	// connection and those of Host.Connect log in as its user. Streams are
	// then ensured (bus.EnsureStreams: waited for on a server with
	// authentication, where the provisioning step makes them).
	NATS    bus.ConnConfig
	Streams bus.StreamConfig
	// Database, when set, is opened and migrated before NATS is dialled.
	Database *Database
	// StartTimeout bounds the whole start: Postgres, migrations, NATS and
	// the streams (DefaultStartTimeout). Past it the service fails, so a
	// dependency that never comes up shows as a restart loop rather than a
	// process that silently does nothing.
	StartTimeout time.Duration
	// ShutdownGrace bounds the stop of the ops server and the NATS drain
	// (DefaultShutdownGrace). The service's own parts bound their own.
	ShutdownGrace time.Duration
	// Ready, when set, is called once with the bound addresses ("http" and
	// those the wiring listens on) when the service is serving.
	Ready func(addrs map[string]string)
}

// Database is a service's Postgres pool.
type Database struct {
	URL      string
	MaxConns int32
	// Options are added to the pool's defaults (the tracer, MaxConns and
	// the application name).
	Options []pg.Option
	// Migrate brings the service's schema up to date.
	Migrate func(context.Context, *pgxpool.Pool) error
}

// Host is what the setup built, handed to the service's wiring.
type Host struct {
	Name      string
	Log       *slog.Logger
	Registry  *prometheus.Registry
	Telemetry *telemetry.Provider
	// Pool is nil without a Database.
	Pool *pgxpool.Pool
	NC   *nats.Conn
	JS   jetstream.JetStream

	sup *supervisor
}

// Wiring builds a service's own parts on host and starts them with host.Go.
// ctx ends when the service is asked to stop.
type Wiring func(ctx context.Context, host *Host) error

// Go starts a part of the service. It runs until its ctx ends, which happens
// at shutdown, in the reverse order of the Go calls: the last part started
// is the first stopped, and each has returned before the next is stopped. A
// part that returns before then, with an error or not, fails the service.
func (h *Host) Go(name string, run func(ctx context.Context) error) { h.sup.run(name, run) }

// Listen opens addr, records its bound address under key for Ready and
// the serving log line, and closes it at shutdown if nothing else did.
func (h *Host) Listen(key, addr string) (net.Listener, error) {
	ln, err := httpserver.Listen(addr)
	if err != nil {
		return nil, err
	}
	h.sup.setAddr(key, ln.Addr().String())
	h.sup.onStop("listener "+key, func() error { _ = ln.Close(); return nil })
	return ln, nil
}

// OpenPool opens a second pool on the service's database, for a part whose
// queries must not wait for the main pool's connections, nor those for its:
// the same URL and options as Spec.Database, at most maxConns connections,
// and name as its application_name and as the pool label of its metrics,
// then opts. It is closed at shutdown after the parts started after it.
// Call it from the wiring.
func (h *Host) OpenPool(name string, maxConns int32, opts ...pg.Option) (*pgxpool.Pool, error) {
	db := h.sup.spec.Database
	if db == nil {
		return nil, fmt.Errorf("postgres %s: the service has no database", name)
	}
	own := *db
	own.Options = append(append([]pg.Option(nil), db.Options...), opts...)
	return h.sup.openPool(h.sup.startCtx, &own, name, maxConns, h.Telemetry)
}

// Connect opens a second NATS connection, named name, for a part whose
// traffic must not share NC. Unlike NC, a closed-for-good Connect
// connection does not fail the service: the part that uses it must answer
// without it (billing-state's Watch answers Unavailable), and the rest of
// the service carries on. It is logged as an error, and /readyz fails
// ("nats <name>"), so the replica leaves its Service's endpoints until it
// is restarted. It is drained at shutdown after the parts started after
// it. Call it from the wiring.
func (h *Host) Connect(name string) (*nats.Conn, error) {
	s := h.sup
	nc, _, err := s.dial(s.startCtx, name, func(err error) {
		s.log.Error("nats connection "+name+" closed for good; /readyz fails until a restart", "error", err.Error())
	})
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", name, err)
	}
	s.ready.Add("nats "+name, func(context.Context) error { return connState(nc) })
	return nc, nil
}

// GoConsumer starts a consumer as a part named name, and makes /readyz
// fail while it is stalled: taking no message while its durable has some
// waiting (bus.Consumer.Stalled, which the consumer also logs).
func (h *Host) GoConsumer(name string, c *bus.Consumer) {
	h.ReadyCheck(name, func(context.Context) error { return c.Stalled() })
	h.Go(name, c.Run)
}

// ReadyCheck adds a check to /readyz.
func (h *Host) ReadyCheck(name string, check httpserver.Check) { h.sup.ready.Add(name, check) }

// PublicReady answers with /readyz's verdict, and no details, for a
// service's public listener (httpserver.PublicReady).
func (h *Host) PublicReady() http.HandlerFunc { return httpserver.PublicReady(h.sup.ready) }

// ConsumerOptions are the bus options every consumer of the service shares:
// its logger, tracer provider and registry.
func (h *Host) ConsumerOptions() bus.ConsumerOptions {
	return bus.ConsumerOptions{Logger: h.Log, TracerProvider: h.Telemetry.TracerProvider(), Registry: h.Registry}
}

// Supervise runs a service: it sets up what every service shares, in this
// order, telemetry, the ops server, Postgres and its migrations, NATS and
// the streams; calls wire for the service's own parts; reports Ready; and
// waits in one select for the end of ctx or the first failure (a part that
// stops, the ops server failing, the NATS connection closed for good). Then
// it stops everything in the reverse order it was started and returns the
// failure, or nil after a requested stop, including one during the start.
func Supervise(ctx context.Context, spec Spec, wire Wiring) error {
	s := newSupervisor(spec)
	host := &Host{Name: s.spec.Name, Log: s.log, Registry: s.spec.Registry, sup: s}
	if spec.Settings != nil {
		s.log.InfoContext(ctx, s.spec.Name+" starting", "config", spec.Settings)
	}
	err := s.start(ctx, host, wire)
	if err == nil {
		s.serving()
		select {
		case <-ctx.Done():
		case err = <-s.failures:
			s.log.ErrorContext(ctx, s.spec.Name+" failing", "error", redact.Error(err))
		}
	} else if ctx.Err() != nil {
		err = nil // asked to stop while starting: not a failure
	} else {
		select { // what cut the start short, if it was a failure
		case f := <-s.failures:
			err = errors.Join(f, err)
		default:
		}
	}
	err = errors.Join(err, s.shutdown())
	s.log.InfoContext(context.WithoutCancel(ctx), s.spec.Name+" stopped")
	if err != nil {
		return fmt.Errorf("%s: %w", s.spec.Name, err)
	}
	return nil
}

// supervisor holds one run of a service: what to stop, in which order, and
// the first failure.
type supervisor struct {
	spec Spec
	log  *slog.Logger

	mu    sync.Mutex
	stops []stopStep
	addrs map[string]string

	ready, live *httpserver.Checks
	// startCtx bounds the start (StartTimeout); what the wiring opens
	// through the Host waits no longer.
	startCtx context.Context
	started  atomic.Bool
	stopping atomic.Bool
	pool     atomic.Pointer[pgxpool.Pool]
	migrated atomic.Bool
	nc       atomic.Pointer[nats.Conn]

	failures chan error    // the first failure; later ones are logged only
	dead     chan struct{} // closed with the first failure
	deadOnce sync.Once
}

type stopStep struct {
	what string
	stop func() error
}

func newSupervisor(spec Spec) *supervisor {
	if spec.Logger == nil {
		spec.Logger = logging.Discard()
	}
	if spec.Registry == nil {
		spec.Registry = httpserver.NewRegistry()
	}
	registerBuildInfo(spec.Registry, spec.Name)
	if spec.StartTimeout <= 0 {
		spec.StartTimeout = DefaultStartTimeout
	}
	if spec.ShutdownGrace <= 0 {
		spec.ShutdownGrace = DefaultShutdownGrace
	}
	s := &supervisor{spec: spec, log: spec.Logger, addrs: map[string]string{},
		ready: &httpserver.Checks{}, live: &httpserver.Checks{},
		failures: make(chan error, 1), dead: make(chan struct{})}
	s.ready.Add("startup", func(context.Context) error {
		if !s.started.Load() {
			return errors.New("starting")
		}
		return nil
	})
	if spec.Database != nil {
		s.ready.Add("postgres", s.postgresReady)
	}
	s.ready.Add("nats", func(context.Context) error { return s.natsReady() })
	s.live.Add("nats", func(context.Context) error {
		if nc := s.nc.Load(); nc != nil && nc.IsClosed() {
			return ErrNATSClosed
		}
		return nil
	})
	return s
}

// start brings the service up; a failure leaves what started for shutdown.
func (s *supervisor) start(ctx context.Context, host *Host, wire Wiring) error {
	tel, err := telemetry.Setup(ctx, s.spec.Telemetry)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	host.Telemetry = tel
	s.onStop("telemetry", func() error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			s.log.Warn("telemetry shutdown", "error", redact.Error(err))
		}
		return nil
	})
	if err := s.serveOps(host); err != nil {
		return err
	}

	sctx, cancel := context.WithTimeout(ctx, s.spec.StartTimeout)
	defer cancel()
	s.startCtx = sctx
	if db := s.spec.Database; db != nil {
		if host.Pool, err = s.openDatabase(sctx, db, tel); err != nil {
			return err
		}
	}
	// The service's own connection: closed for good, it fails the service.
	if host.NC, host.JS, err = s.dial(sctx, s.spec.Name, s.fail); err != nil {
		return err
	}
	s.nc.Store(host.NC)
	if err := s.retry(sctx, "ensure streams", isNATSUnavailable, func(ctx context.Context) error {
		return bus.EnsureStreams(ctx, host.JS, s.spec.Streams)
	}); err != nil {
		return err
	}
	if err := wire(ctx, host); err != nil {
		return err
	}
	s.started.Store(true)
	return nil
}

func (s *supervisor) serveOps(host *Host) error {
	ln, err := host.Listen("http", s.spec.OpsAddr)
	if err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	mux := http.NewServeMux()
	httpserver.OpsProbes(mux, s.spec.Registry, httpserver.Probes{Live: s.live, Ready: s.ready})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.run("ops server", func(ctx context.Context) error { return httpserver.Serve(ctx, srv, ln, s.spec.ShutdownGrace) })
	return nil
}

func (s *supervisor) openDatabase(ctx context.Context, db *Database, tel *telemetry.Provider) (*pgxpool.Pool, error) {
	pool, err := s.openPool(ctx, db, s.spec.Name, db.MaxConns, tel)
	if err != nil {
		return nil, err
	}
	s.pool.Store(pool)
	if err := s.retry(ctx, "migrate", pg.IsUnavailable, func(ctx context.Context) error { return db.Migrate(ctx, pool) }); err != nil {
		return nil, err
	}
	s.migrated.Store(true)
	return pool, nil
}

// openPool opens a pool on db named name, with its metrics, and closes it
// at shutdown.
func (s *supervisor) openPool(ctx context.Context, db *Database, name string, maxConns int32, tel *telemetry.Provider) (*pgxpool.Pool, error) {
	what := "postgres"
	if name != s.spec.Name {
		what += " " + name
	}
	opts := append([]pg.Option{pg.WithMaxConns(maxConns), pg.WithTracer(tel.PgxTracer()), pg.WithApplicationName(name)}, db.Options...)
	pool, err := pg.Open(ctx, db.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s.onStop(what, func() error { pool.Close(); return nil })
	if err := pg.RegisterPoolMetrics(s.spec.Registry, pool, name); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return pool, nil
}

// dial connects to NATS as name and drains the connection at shutdown.
// closedForGood is called once if the connection closes for good while the
// service is not stopping.
func (s *supervisor) dial(ctx context.Context, name string, closedForGood func(error)) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := bus.Connect(ctx, s.spec.NATS, name, s.log)
	if err != nil {
		return nil, nil, err
	}
	closed := make(chan struct{})
	var once sync.Once
	onClosed := func(c *nats.Conn) {
		once.Do(func() {
			close(closed)
			if !s.stopping.Load() {
				closedForGood(fmt.Errorf("%w: %s", ErrNATSClosed, lastError(c)))
			}
		})
	}
	prev := nc.ClosedHandler()
	nc.SetClosedHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		onClosed(c)
	})
	if nc.IsClosed() { // closed before the handler was in place
		onClosed(nc)
	}
	what := "nats"
	if name != s.spec.Name {
		what += " " + name
	}
	s.onStop(what, func() error { return drain(nc, closed, s.spec.ShutdownGrace) })
	return nc, js, nil
}

// drain lets the connection send what it holds (acks, publishes) and close,
// within grace.
func drain(nc *nats.Conn, closed <-chan struct{}, grace time.Duration) error {
	if err := nc.Drain(); err != nil {
		// Closed already, or reconnecting: nats.go closes it at once, and
		// while disconnected it buffers nothing that could be lost.
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) {
			return nil
		}
		nc.Close()
		return fmt.Errorf("drain: %w", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-closed:
		return nil
	case <-t.C:
		nc.Close()
		return errors.New("drain: not finished within the grace period")
	}
}

func lastError(nc *nats.Conn) string {
	if err := nc.LastError(); err != nil {
		return redact.Error(err)
	}
	return "closed"
}

func (s *supervisor) postgresReady(ctx context.Context) error {
	pool := s.pool.Load()
	if pool == nil {
		return errors.New("not connected yet")
	}
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("unreachable: %s", redact.Error(err))
	}
	if !s.migrated.Load() {
		return errors.New("migrations pending")
	}
	return nil
}

func (s *supervisor) natsReady() error {
	nc := s.nc.Load()
	if nc == nil {
		return errors.New("not connected yet")
	}
	return connState(nc)
}

// connState is nil while nc is connected.
func connState(nc *nats.Conn) error {
	switch {
	case nc.IsClosed():
		return ErrNATSClosed
	case !nc.IsConnected():
		return fmt.Errorf("not connected (%s)", nc.Status())
	}
	return nil
}

// run starts one part; see Host.Go.
func (s *supervisor) run(name string, part func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := part(ctx)
		if ctx.Err() == nil { // stopped on its own
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			s.fail(fmt.Errorf("%s: %w", name, err))
			err = nil
		}
		done <- err
	}()
	s.onStop(name, func() error {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
}

func (s *supervisor) onStop(what string, stop func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops = append(s.stops, stopStep{what, stop})
}

// fail records a failure: the first ends the service, later ones are only
// logged.
func (s *supervisor) fail(err error) {
	select {
	case s.failures <- err:
		s.deadOnce.Do(func() { close(s.dead) })
	default:
		s.log.Error(s.spec.Name+" failing", "error", redact.Error(err))
	}
}

func (s *supervisor) setAddr(key, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs[key] = addr
}

// serving reports the bound addresses to Ready and the log.
func (s *supervisor) serving() {
	s.mu.Lock()
	addrs := maps.Clone(s.addrs)
	s.mu.Unlock()
	args := []any{}
	for _, k := range slices.Sorted(maps.Keys(addrs)) {
		args = append(args, k, addrs[k])
	}
	if s.spec.Ready != nil {
		s.spec.Ready(addrs)
	}
	s.log.Info(s.spec.Name+" serving", args...)
}

// shutdown stops everything started, last first.
func (s *supervisor) shutdown() error {
	s.stopping.Store(true)
	s.mu.Lock()
	stops := s.stops
	s.stops = nil
	s.mu.Unlock()
	var errs []error
	for i := len(stops) - 1; i >= 0; i-- {
		if err := stops[i].stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", stops[i].what, err))
		}
	}
	return errors.Join(errs...)
}
