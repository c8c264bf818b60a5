// Package billingstate is the billing-state service as a library: it
// consumes Stripe events from JetStream (durable "billing-state"), keeps
// each customer's canonical billing state in Postgres (schema billing),
// publishes status changes through an outbox to billing.status.<customer>,
// and serves BillingStatusService over gRPC.
//
// Run it with Run(ctx, cfg); cmd/billing-state wires signals and logging,
// `launchready dev` and the tests run it in process.
package billingstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/grpcapi"
	"github.com/launchready/launchready/services/billing-state/internal/relay"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/stripeapi"
)

// Durable is the JetStream consumer name.
const Durable = "billing-state"

// DefaultBatchSize is how many waiting events one transaction applies at
// most when CONSUMER_BATCH_SIZE is not set. A batch is only what is already
// waiting, so a quiet stream still gets each event at once; under load one
// commit serves many events (see BenchmarkApplyBatch).
const DefaultBatchSize = 32

// Config is the service's configuration.
type Config struct {
	DatabaseURL string
	// NATSURL is NATS_URL with the credentials and TLS settings that go
	// with it (bus.ConnConfigFromEnv): billing-state connects as its own user.
	NATSURL bus.ConnConfig
	// GRPCAddr serves BillingStatusService, health and reflection (":9090").
	GRPCAddr string
	// HTTPAddr serves /healthz, /readyz and /metrics (":8081").
	HTTPAddr string
	// Tokens authorise gRPC callers (STATUS_API_TOKENS, each at least 32
	// characters); an empty set refuses every call.
	Tokens *grpcapi.Tokens
	// GRPC bounds the gRPC API: TLS, streams per connection, Watch streams
	// per token, the unary deadline and the API's own pool (GRPC_*).
	GRPC   grpcapi.Config
	Policy canonical.Policy
	// StripeAPIKey, when set, lets billing-state ask Stripe about unknown
	// charges and same-second ties. STRIPE_API_BASE overrides the URL
	// (stripe-mock); STRIPE_API_RATE caps requests per second.
	StripeAPIKey  config.Secret
	StripeAPIBase string
	StripeAPIRate float64
	Streams       bus.StreamConfig
	Consumer      bus.ConsumerConfig
	Telemetry     telemetry.Config
	// AsyncCommit (ASYNC_COMMIT, default true) commits without waiting for
	// the disk, so a change is visible at once, and holds the JetStream
	// acks and the outbox publishes until it is durable (state.FlushGate).
	// Off, every commit waits for its WAL flush.
	AsyncCommit bool

	// Not read from the environment.

	// ParkAfter is the delivery at which an event whose charge's customer
	// is still unknown is parked instead of retried (3); ParkRetry is the
	// delay between those deliveries (2s).
	ParkAfter int
	ParkRetry time.Duration
	// ParkSweep is how often parked events whose charge's customer has
	// become known are applied, for those their teaching event missed (5s).
	ParkSweep time.Duration
	// OutboxPoll bounds how long a change waits for the relay when no
	// in-process signal wakes it (50ms).
	OutboxPoll time.Duration
	// OutboxRetention is how long published outbox rows are kept (24h).
	OutboxRetention time.Duration
	// ShutdownGrace bounds the graceful stop of each server (10s).
	ShutdownGrace time.Duration
	// DBMaxConns sizes the pool (consumer concurrency + 6 when 0).
	DBMaxConns int32
	// FlushForceAfter is how long a held ack waits for Postgres to flush
	// the WAL on its own before billing-state forces a flush (0: at once;
	// negative: never, leaving it to the WAL writer).
	FlushForceAfter time.Duration
	// SetupRetry is the pause between attempts to migrate the schema and
	// create the streams while Postgres or NATS are not up yet (1s).
	SetupRetry time.Duration

	Logger *slog.Logger
	// Ready, when set, is called once with the bound addresses ("grpc",
	// "http") when the service is serving.
	Ready    func(addrs map[string]string)
	Registry *prometheus.Registry
}

// WithLogger returns the configuration with its logs going to log.
func (c Config) WithLogger(log *slog.Logger) Config {
	c.Logger = log
	return c
}

// ConfigFromEnv reads DATABASE_URL, NATS_URL and its credentials, GRPC_ADDR,
// HTTP_ADDR, STATUS_API_TOKENS, the GRPC_* limits, PAST_DUE_ENTITLED,
// STRIPE_API_KEY, STRIPE_API_BASE,
// STRIPE_API_RATE, ASYNC_COMMIT, OUTBOX_RETENTION, the NATS_* stream
// settings, CONSUMER_* and OTEL_*. Every problem is reported at once.
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	cfg := Config{
		DatabaseURL:     e.String("DATABASE_URL", pg.DefaultURL),
		NATSURL:         bus.ConnConfigFromEnv(e, Durable),
		GRPCAddr:        e.String("GRPC_ADDR", ":9090"),
		HTTPAddr:        e.String("HTTP_ADDR", ":8081"),
		Policy:          canonical.Policy{PastDueEntitled: e.Bool("PAST_DUE_ENTITLED", true)},
		StripeAPIKey:    e.Secret("STRIPE_API_KEY"),
		StripeAPIBase:   e.String("STRIPE_API_BASE", ""),
		StripeAPIRate:   e.Float("STRIPE_API_RATE", 10),
		AsyncCommit:     e.Bool("ASYNC_COMMIT", true),
		OutboxRetention: e.Duration("OUTBOX_RETENTION", 24*time.Hour),
		Streams:         bus.StreamConfigFromEnv(e),
		Consumer:        bus.ConsumerConfigFromEnv(e, Durable),
		Telemetry:       telemetry.ConfigFromEnv(e, "billing-state"),
		GRPC:            grpcapi.ConfigFromEnv(e),
	}
	tokens, err := grpcapi.ParseTokens(e.Lookup("STATUS_API_TOKENS"))
	if err != nil {
		e.Fail("%v", err)
	}
	cfg.Tokens = tokens
	if cfg.StripeAPIRate <= 0 {
		e.Fail("STRIPE_API_RATE: must be positive")
	}
	if cfg.OutboxRetention <= 0 {
		e.Fail("OUTBOX_RETENTION: must be positive")
	}
	return cfg, e.Err()
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = logging.Discard()
	}
	if c.Registry == nil {
		c.Registry = httpserver.NewRegistry()
	}
	if c.Consumer.Durable == "" {
		c.Consumer.Durable = Durable
	}
	if c.Consumer.Concurrency == 0 {
		c.Consumer.Concurrency = 8
	}
	if c.Consumer.BatchSize == 0 {
		c.Consumer.BatchSize = DefaultBatchSize
	}
	// A batch locks its customers until it commits: a customer's events
	// all go to one worker, so that batches never queue behind each other.
	c.Consumer.PartitionByCustomer = true
	if c.Consumer.MaxDeliver == 0 {
		c.Consumer.MaxDeliver = 10
	}
	if c.ParkAfter <= 0 {
		c.ParkAfter = 3
	}
	// Park before the runner gives up, or the event would be dead-lettered.
	c.ParkAfter = max(1, min(c.ParkAfter, c.Consumer.MaxDeliver-1))
	if c.ParkRetry <= 0 {
		c.ParkRetry = 2 * time.Second
	}
	if c.ParkSweep <= 0 {
		c.ParkSweep = 5 * time.Second
	}
	if c.OutboxPoll <= 0 {
		c.OutboxPoll = 50 * time.Millisecond
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.DBMaxConns <= 0 {
		c.DBMaxConns = int32(c.Consumer.Concurrency) + 6
	}
	if c.SetupRetry <= 0 {
		c.SetupRetry = time.Second
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = ":9090"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8081"
	}
	if c.StripeAPIRate <= 0 {
		c.StripeAPIRate = 10
	}
	c.GRPC = c.GRPC.WithDefaults()
	return c
}

// Run runs the service until ctx ends, then stops it gracefully. It
// returns an error when it cannot start or a server fails.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	log := cfg.Logger
	log.InfoContext(ctx, "billing-state starting",
		"database_url", config.MaskURL(cfg.DatabaseURL), "nats", cfg.NATSURL,
		"grpc_addr", cfg.GRPCAddr, "http_addr", cfg.HTTPAddr, "tokens", cfg.Tokens.Names(),
		"past_due_entitled", cfg.Policy.PastDueEntitled, "stripe_api_key", cfg.StripeAPIKey,
		"stripe_api_base", config.MaskURL(cfg.StripeAPIBase), "consumer_concurrency", cfg.Consumer.Concurrency,
		"consumer_max_deliver", cfg.Consumer.MaxDeliver, "async_commit", cfg.AsyncCommit,
		"grpc_tls", cfg.GRPC.TLS(), "grpc_max_streams", cfg.GRPC.MaxStreams, "grpc_max_watch_per_token", cfg.GRPC.MaxWatchPerToken,
		"grpc_unary_timeout", cfg.GRPC.UnaryTimeout.String(), "grpc_db_max_conns", cfg.GRPC.DBMaxConns)
	if cfg.Tokens.Len() == 0 {
		log.WarnContext(ctx, "STATUS_API_TOKENS is empty: every gRPC call will be refused")
	}

	// Tracing.
	tp, err := telemetry.Setup(ctx, cfg.Telemetry)
	if err != nil {
		return fmt.Errorf("billing-state: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()

	// Database.
	pgOpts := func(app string, maxConns int32) []pg.Option {
		opts := []pg.Option{pg.WithMaxConns(maxConns), pg.WithTracer(tp.PgxTracer()), pg.WithApplicationName(app), pg.WithIndexPlans()}
		if cfg.AsyncCommit {
			opts = append(opts, pg.WithAsyncCommit())
		}
		return opts
	}
	pool, err := pg.Open(ctx, cfg.DatabaseURL, pgOpts("billing-state", cfg.DBMaxConns)...)
	if err != nil {
		return fmt.Errorf("billing-state: %w", err)
	}
	defer pool.Close()
	if err := pg.RegisterPoolMetrics(cfg.Registry, pool, "billing-state"); err != nil {
		return fmt.Errorf("billing-state: %w", err)
	}
	// The gRPC API's own pool: callers never wait for the consumer's
	// connections, nor the consumer for theirs.
	apiPool, err := pg.Open(ctx, cfg.DatabaseURL, pgOpts("billing-state-api", cfg.GRPC.DBMaxConns)...)
	if err != nil {
		return fmt.Errorf("billing-state: %w", err)
	}
	defer apiPool.Close()
	if err := pg.RegisterPoolMetrics(cfg.Registry, apiPool, "billing-state-api"); err != nil {
		return fmt.Errorf("billing-state: %w", err)
	}

	// Listeners and the ops server first: /healthz answers while NATS,
	// Postgres, the schema or the streams are still coming up, and /readyz
	// says which.
	gln, err := httpserver.Listen(cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("billing-state: %w", err)
	}
	defer gln.Close()
	hln, err := httpserver.Listen(cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("billing-state: %w", err)
	}
	var natsConn atomic.Pointer[nats.Conn]
	setupDone := make(chan struct{})
	checks := map[string]httpserver.Check{
		"postgres": func(ctx context.Context) error { return pool.Ping(ctx) },
		"nats": func(context.Context) error {
			if nc := natsConn.Load(); nc == nil || !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		},
		"setup": func(context.Context) error {
			select {
			case <-setupDone:
				return nil
			default:
				return errors.New("schema or streams not ready")
			}
		},
	}
	mux := http.NewServeMux()
	httpserver.Ops(mux, cfg.Registry, checks)
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 6)
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := httpserver.Serve(runCtx, hsrv, hln, cfg.ShutdownGrace); err != nil {
			errc <- err
		}
	}()
	stopEarly := func() {
		cancel()
		<-httpDone
	}

	// NATS: Connect waits for the server; a stop meanwhile is clean.
	nc, js, err := bus.Connect(runCtx, cfg.NATSURL, "billing-state", log)
	if err != nil {
		stopEarly()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("billing-state: %w", err)
	}
	defer nc.Close()
	natsConn.Store(nc)
	// Watch streams subscribe on a connection of their own: whatever a
	// watcher causes there, the consumer's connection is not involved.
	watchNC, _, err := bus.Connect(runCtx, cfg.NATSURL, "billing-state-watch", log)
	if err != nil {
		stopEarly()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("billing-state: %w", err)
	}
	defer watchNC.Close()

	m := newMetrics(cfg.Registry)
	var fetcher state.Fetcher
	if cfg.StripeAPIKey != "" {
		fetcher = stripeapi.New(cfg.StripeAPIKey.Reveal(), cfg.StripeAPIBase, cfg.StripeAPIRate)
	}
	var rl *relay.Relay
	storeOpts := state.Options{
		Policy: cfg.Policy, Fetcher: fetcher, Logger: log,
		OutboxWritten: func() { rl.Kick() },
	}
	consumerOpts := bus.ConsumerOptions{
		Logger: log, TracerProvider: tp.TracerProvider(), Registry: cfg.Registry, DrainTimeout: cfg.ShutdownGrace,
	}
	var gate *state.FlushGate
	if cfg.AsyncCommit {
		gate = state.NewFlushGate(pool, state.FlushGateOptions{ForceAfter: cfg.FlushForceAfter, Registry: cfg.Registry})
		storeOpts.Durable = gate.Wait
		consumerOpts.AckAfter = gate.After
	}
	store := state.New(pool, storeOpts)
	rl = relay.New(store, bus.NewPublisher(js, tp.TracerProvider(), bus.WithPublisherRegistry(cfg.Registry)),
		relay.Options{Poll: cfg.OutboxPoll, Retention: cfg.OutboxRetention, Logger: log, Registry: cfg.Registry})
	m.registerGauges(cfg.Registry, store)

	// gRPC, on the API pool and the watch connection.
	stopWatch := make(chan struct{})
	gsrv, err := grpcapi.New(cfg.GRPC, grpcapi.Options{
		Store:     state.New(apiPool, state.Options{Policy: cfg.Policy, Logger: log, OutboxWritten: func() { rl.Kick() }}),
		WatchConn: watchNC, Tokens: cfg.Tokens, Logger: log, Registry: cfg.Registry,
		StatsHandler: tp.GRPCServerHandler(), Stop: stopWatch,
	})
	if err != nil {
		stopEarly()
		return fmt.Errorf("billing-state: %w", err)
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gsrv, hs)
	setHealth(hs, false)

	// Schema and streams: retried, so the service can start before
	// Postgres and NATS and report it through /readyz. retry fails only
	// when ctx ends, which is a clean stop.
	if retry(runCtx, cfg.SetupRetry, log, "migrate billing schema", func(ctx context.Context) error {
		return state.Migrate(ctx, pool)
	}) != nil || retry(runCtx, cfg.SetupRetry, log, "ensure streams", func(ctx context.Context) error {
		return bus.EnsureStreams(ctx, js, cfg.Streams)
	}) != nil {
		stopEarly()
		return nil
	}
	close(setupDone)

	// The gate outlives the consumer and the relay, so that a clean stop
	// sends the acks of everything they finished.
	gateCtx, stopGate := context.WithCancel(context.WithoutCancel(ctx))
	defer stopGate()
	gateDone := make(chan struct{})
	go func() {
		defer close(gateDone)
		if gate != nil {
			_ = gate.Run(gateCtx)
		}
	}()
	consumer := bus.NewBatchConsumer(js, cfg.Consumer, batchHandler(store, m, cfg, log), consumerOpts)
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		if err := consumer.Run(runCtx); err != nil {
			errc <- fmt.Errorf("consumer: %w", err)
		}
	}()
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweepParked(runCtx, store, cfg.ParkSweep, log)
	}()
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		_ = rl.Run(runCtx)
	}()
	go func() {
		if err := gsrv.Serve(gln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("grpc serve: %w", err)
		}
	}()
	go watchHealth(runCtx, hs, pool, nc)

	if cfg.Ready != nil {
		cfg.Ready(map[string]string{"grpc": gln.Addr().String(), "http": hln.Addr().String()})
	}
	log.InfoContext(ctx, "billing-state serving", "grpc_addr", gln.Addr().String(), "http_addr", hln.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.ErrorContext(ctx, "billing-state failing", "error", runErr.Error())
	}

	// Shutdown: stop taking calls and events, let work in flight finish.
	setHealth(hs, false)
	close(stopWatch)
	cancel()
	stopGRPC(gsrv, cfg.ShutdownGrace)
	<-consumerDone
	<-relayDone
	<-sweepDone
	stopGate()
	<-gateDone
	<-httpDone
	log.InfoContext(context.WithoutCancel(ctx), "billing-state stopped")
	return runErr
}

// batchHandler applies what the runner hands over in one shared
// transaction (state.ApplyBatch) and turns each answer into the runner's:
// malformed events are dead-lettered at once, unknown charges are retried a
// few times and then parked, everything else that fails is retried with
// backoff.
//
// A database outage must not turn into a flood of dead letters: on its last
// delivery, an event that failed because Postgres is unreachable waits for
// Postgres (the runner keeps the message alive meanwhile) and is applied
// then. Once every worker waits, consumption pauses until the database is
// back.
func batchHandler(store *state.Store, m *metrics, cfg Config, log *slog.Logger) bus.BatchHandler {
	return func(ctx context.Context, ds []*bus.Delivery) []error {
		start := time.Now()
		items := make([]state.BatchItem, len(ds))
		for i, d := range ds {
			items[i] = state.BatchItem{Ctx: d.Context(), Event: d.Event, Opts: applyOptions(cfg, d)}
		}
		results := store.ApplyBatch(ctx, items)
		took := time.Since(start)
		errs := make([]error, len(ds))
		for i, d := range ds {
			res, err := results[i].Result, results[i].Err
			if err != nil && lastChance(cfg, d, err) && ctx.Err() == nil {
				res, err = holdForDatabase(d.Context(), store, m, log, d, items[i].Opts)
			}
			m.applySeconds.Observe(took.Seconds())
			errs[i] = settle(d.Context(), m, cfg, log, d, res, err)
		}
		m.batchSize.Observe(float64(len(ds)))
		return errs
	}
}

func applyOptions(cfg Config, d *bus.Delivery) state.ApplyOptions {
	return state.ApplyOptions{ParkUnresolved: d.Delivered >= uint64(cfg.ParkAfter)}
}

// lastChance: the event failed on its last delivery only because the
// database is out of reach.
func lastChance(cfg Config, d *bus.Delivery, err error) bool {
	return d.Delivered >= uint64(cfg.Consumer.MaxDeliver) && !errors.Is(err, state.ErrMalformed) &&
		!errors.Is(err, state.ErrCustomerUnknown) && databaseUnavailable(err)
}

// holdForDatabase waits until Postgres answers again and applies the event.
func holdForDatabase(ctx context.Context, store *state.Store, m *metrics, log *slog.Logger, d *bus.Delivery, opts state.ApplyOptions) (state.Result, error) {
	m.outcome("hold")
	log.WarnContext(ctx, "database unavailable on the last delivery; holding the event until it is back",
		"event_id", d.Event.GetEventId(), "customer_id", d.Event.GetCustomerId(), "delivery", d.Delivered, "outcome", "hold")
	if err := waitForDatabase(ctx, store); err != nil {
		return state.Result{}, err
	}
	return store.ApplyEvent(ctx, d.Event, opts)
}

// settle turns one ApplyEvent answer into the runner's.
func settle(ctx context.Context, m *metrics, cfg Config, log *slog.Logger, d *bus.Delivery, res state.Result, err error) error {
	switch {
	case errors.Is(err, state.ErrMalformed):
		m.outcome("malformed")
		return bus.Permanent(err)
	case errors.Is(err, state.ErrCustomerUnknown):
		m.outcome("retry")
		return bus.RetryAfter(err, cfg.ParkRetry)
	case err != nil:
		m.outcome("retry")
		return fmt.Errorf("apply %s: %w", d.Event.GetEventId(), err)
	}
	m.outcome(string(res.Outcome))
	if res.Outcome == state.OutcomeDuplicate {
		d.MarkDuplicate()
	}
	if res.Outcome != state.OutcomeIgnored && res.Outcome != state.OutcomeDuplicate {
		log.DebugContext(ctx, "event applied", "event_id", d.Event.GetEventId(), "customer_id", res.CustomerID,
			"subscription_id", d.Event.GetSubscriptionId(), "action", d.Event.GetType(), "delivery", d.Delivered,
			"outcome", string(res.Outcome), "status_changed", res.StatusChanged)
	}
	return nil
}

// sweepParked applies, every interval, the parked events whose charge's
// customer became known without their teaching event claiming them (see
// state.Store.ResolveParked).
func sweepParked(ctx context.Context, store *state.Store, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := store.ResolveParked(ctx, 100)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.WarnContext(ctx, "parked-event sweep failed; retrying at the next one", "action", "resolve_parked", "error", bus.Redact(err.Error()))
		case n > 0:
			log.InfoContext(ctx, "parked events applied by the sweep", "action", "resolve_parked", "applied", n)
		}
	}
}

// databaseUnavailable reports whether err means Postgres could not be
// reached. A refused connection counts whatever its SQLSTATE: a database
// that does not accept connections right now answers 55000, which
// pg.IsUnavailable does not list.
func databaseUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pg.IsUnavailable(err)
}

// waitForDatabase returns once Postgres answers, or with ctx's error.
func waitForDatabase(ctx context.Context, store *state.Store) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := store.Pool().Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func retry(ctx context.Context, every time.Duration, log *slog.Logger, what string, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == 1 || attempt%30 == 0 {
			log.WarnContext(ctx, what+" failed; retrying", "attempt", attempt, "error", bus.Redact(err.Error()))
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func stopGRPC(srv *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		srv.Stop()
		<-done
	}
}

// serviceName is the health service name of BillingStatusService.
var serviceName = billingv1.BillingStatusService_ServiceDesc.ServiceName

func setHealth(hs *health.Server, ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(serviceName, st)
}

// watchHealth reports SERVING only while Postgres answers and NATS is
// connected.
func watchHealth(ctx context.Context, hs *health.Server, pool *pgxpool.Pool, nc *nats.Conn) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := pool.Ping(pctx) == nil && nc.IsConnected()
		cancel()
		if ctx.Err() != nil {
			return
		}
		setHealth(hs, ok)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type metrics struct {
	events       *prometheus.CounterVec
	applySeconds prometheus.Observer
	batchSize    prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_billing_state_events_total",
			Help: "Events by outcome: applied, duplicate, stale, ignored, unresolved (parked), retry, malformed, hold (last delivery waiting for Postgres).",
		}, []string{"outcome"}),
	}
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lr_billing_state_apply_seconds",
		Help:    "Time from a delivery's batch starting until its transaction committed.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	})
	m.applySeconds = h
	bs := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lr_billing_state_batch_size",
		Help:    "Deliveries applied per shared transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
	})
	m.batchSize = bs
	for _, c := range []prometheus.Collector{m.events, h, bs} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				switch existing := are.ExistingCollector.(type) {
				case *prometheus.CounterVec:
					m.events = existing
				case prometheus.Histogram:
					if c == bs {
						m.batchSize = existing
					} else {
						m.applySeconds = existing
					}
				}
			}
		}
	}
	for _, o := range []string{"applied", "duplicate", "stale", "ignored", "unresolved"} {
		m.events.WithLabelValues(o)
	}
	return m
}

func (m *metrics) outcome(o string) { m.events.WithLabelValues(o).Inc() }

// registerGauges exposes the parked-event count, read at scrape time.
func (m *metrics) registerGauges(reg prometheus.Registerer, store *state.Store) {
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lr_billing_state_unresolved_events",
		Help: "Parked events whose charge's customer is still unknown.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := store.Unresolved(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}
