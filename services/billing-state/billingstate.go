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
	"net"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/grpcapi"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/relay"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
	stripefetch "github.com/launchready/launchready/services/billing-state/internal/stripeapi"
)

// Durable is the JetStream consumer name.
const Durable = "billing-state"

// DefaultBatchSize is how many waiting events one transaction applies at
// most when CONSUMER_BATCH_SIZE is not set. A batch is only what is already
// waiting, so a quiet stream still gets each event at once; under load one
// commit serves many events (see BenchmarkApplyBatch).
const DefaultBatchSize = 32

// DefaultPartialBatches is how many transactions may apply a batch that is
// not full at once (CONSUMER_PARTIAL_BATCHES). Events arriving at a few
// hundred a second then share transactions of several events, where eight
// idle workers would each commit one or two; a backlog still fills every
// worker's batch. Measured with scripts/cpu-per-event.sh: billing-state's
// Postgres sessions cost about a third as much per event.
const DefaultPartialBatches = 2

// DefaultDriftCheckInterval is DRIFT_CHECK_INTERVAL's default.
const DefaultDriftCheckInterval = 6 * time.Hour

// DefaultEndpointCheckInterval is ENDPOINT_CHECK_INTERVAL's default.
const DefaultEndpointCheckInterval = time.Hour

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
	// StripeLivemode is STRIPE_LIVEMODE, as ingress reads it: "test"
	// refuses a live STRIPE_API_KEY at start and "live" a test one, so a
	// test deployment never repairs from the live account.
	StripeLivemode string
	// DriftCheckInterval is DRIFT_CHECK_INTERVAL: how often the stored
	// subscriptions are compared with Stripe's (0 turns it off; it is off
	// without STRIPE_API_KEY too).
	DriftCheckInterval time.Duration
	// EndpointCheckInterval is ENDPOINT_CHECK_INTERVAL: how often Stripe's
	// webhook endpoints are listed to see that the one at PublicWebhookURL
	// is enabled (0 turns it off; it is off without STRIPE_API_KEY too).
	EndpointCheckInterval time.Duration
	// PublicWebhookURL is PUBLIC_WEBHOOK_URL, the URL Stripe delivers to;
	// empty: the endpoint check watches every endpoint.
	PublicWebhookURL string
	Streams          bus.StreamConfig
	Consumer         bus.ConsumerConfig
	Telemetry        telemetry.Config
	// ReturnURLs (PORTAL_RETURN_URLS) is where a billing portal session
	// may lead back to; CreatePortalSession also needs StripeAPIKey.
	ReturnURLs portal.ReturnURLs
	// StatusPageAddr (STATUS_PAGE_ADDR) serves the hosted status page, a
	// public listener of its own; empty: no page. StatusPageURL
	// (STATUS_PAGE_URL) is its public base, which links start with.
	StatusPageAddr, StatusPageURL string
	// StatusLinkSecrets (STATUS_LINK_SECRETS, newest first) sign and check
	// status links, which live at most StatusLinkMaxTTL
	// (STATUS_LINK_MAX_TTL, 24h).
	StatusLinkSecrets [][]byte
	StatusLinkMaxTTL  time.Duration
	// StaleAfter (STATUS_STALE_AFTER, default 5m): a customer with an
	// event parked unapplied for longer is shown "status unknown".
	StaleAfter time.Duration
	// LocalesDir (DISPLAY_LOCALES_DIR) holds <locale>.json catalogues that
	// add locales or override the built-in words, read at start.
	LocalesDir string
	// Catalogues are the display words: the built-in ones and LocalesDir's
	// (loaded by ConfigFromEnv; Run loads them when nil).
	Catalogues *display.Catalogues
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
	// StartTimeout bounds the wait for Postgres, the schema, NATS and the
	// streams at start (service.DefaultStartTimeout when zero).
	StartTimeout time.Duration

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
// STRIPE_API_RATE, STRIPE_LIVEMODE, DRIFT_CHECK_INTERVAL, ENDPOINT_CHECK_INTERVAL,
// PUBLIC_WEBHOOK_URL, ASYNC_COMMIT, OUTBOX_RETENTION, STATUS_STALE_AFTER,
// DISPLAY_LOCALES_DIR (whose catalogues it loads), PORTAL_RETURN_URLS,
// STATUS_PAGE_ADDR, STATUS_PAGE_URL, STATUS_LINK_SECRETS, STATUS_LINK_MAX_TTL, the NATS_* stream
// settings, CONSUMER_* and OTEL_*. Every problem is reported at once.
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	cfg := Config{
		DatabaseURL:           e.String("DATABASE_URL", pg.DefaultURL),
		NATSURL:               bus.ConnConfigFromEnv(e, Durable),
		GRPCAddr:              e.String("GRPC_ADDR", ":9090"),
		HTTPAddr:              e.String("HTTP_ADDR", ":8081"),
		Policy:                canonical.Policy{PastDueEntitled: e.Bool("PAST_DUE_ENTITLED", true)},
		StripeAPIKey:          e.Secret("STRIPE_API_KEY"),
		StripeAPIBase:         e.String("STRIPE_API_BASE", ""),
		StripeAPIRate:         e.Float("STRIPE_API_RATE", stripeapi.DefaultRate),
		StripeLivemode:        e.OneOf("STRIPE_LIVEMODE", "", "", "live", "test"),
		DriftCheckInterval:    e.Duration("DRIFT_CHECK_INTERVAL", DefaultDriftCheckInterval),
		EndpointCheckInterval: e.Duration("ENDPOINT_CHECK_INTERVAL", DefaultEndpointCheckInterval),
		PublicWebhookURL:      e.String("PUBLIC_WEBHOOK_URL", ""),
		AsyncCommit:           e.Bool("ASYNC_COMMIT", true),
		OutboxRetention:       e.Duration("OUTBOX_RETENTION", 24*time.Hour),
		Streams:               bus.StreamConfigFromEnv(e),
		Consumer:              bus.ConsumerConfigFromEnv(e, Durable),
		Telemetry:             telemetry.ConfigFromEnv(e, "billing-state"),
		GRPC:                  grpcapi.ConfigFromEnv(e),
		StaleAfter:            e.Duration("STATUS_STALE_AFTER", display.DefaultStaleAfter),
		LocalesDir:            e.String("DISPLAY_LOCALES_DIR", ""),
	}
	if cfg.StaleAfter <= 0 {
		e.Fail("STATUS_STALE_AFTER: must be positive")
	}
	cfg.StatusPageAddr = e.String("STATUS_PAGE_ADDR", "")
	cfg.StatusPageURL = e.String("STATUS_PAGE_URL", "")
	cfg.StatusLinkMaxTTL = e.Duration("STATUS_LINK_MAX_TTL", statuspage.DefaultMaxTTL)
	if secrets, err := statuspage.ParseSecrets(e.Lookup("STATUS_LINK_SECRETS")); err != nil {
		e.Fail("%v", err)
	} else {
		cfg.StatusLinkSecrets = secrets
	}
	if err := checkStatusPage(cfg); err != nil {
		e.Fail("%v", err)
	}
	if urls, err := portal.ParseReturnURLs(e.String("PORTAL_RETURN_URLS", "")); err != nil {
		e.Fail("%v", err)
	} else {
		cfg.ReturnURLs = urls
	}
	if cs, err := display.Load(cfg.LocalesDir); err != nil {
		e.Fail("%v", err)
	} else {
		cfg.Catalogues = cs
	}
	tokens, err := grpcapi.ParseTokens(e.Lookup("STATUS_API_TOKENS"))
	if err != nil {
		e.Fail("%v", err)
	}
	cfg.Tokens = tokens
	if cfg.StripeAPIRate <= 0 {
		e.Fail("STRIPE_API_RATE: must be positive")
	}
	if err := stripeapi.CheckKey(cfg.StripeAPIKey.Reveal(), cfg.StripeLivemode); err != nil {
		e.Fail("STRIPE_API_KEY: %v", err)
	}
	if cfg.DriftCheckInterval < 0 {
		e.Fail("DRIFT_CHECK_INTERVAL: must not be negative (0 turns the check off)")
	}
	if cfg.EndpointCheckInterval < 0 {
		e.Fail("ENDPOINT_CHECK_INTERVAL: must not be negative (0 turns the check off)")
	}
	if cfg.OutboxRetention <= 0 {
		e.Fail("OUTBOX_RETENTION: must be positive")
	}
	return cfg, e.Err()
}

func (c Config) withDefaults() Config {
	if c.Consumer.Durable == "" {
		c.Consumer.Durable = Durable
	}
	if c.Consumer.Concurrency == 0 {
		c.Consumer.Concurrency = 8
	}
	if c.Consumer.BatchSize == 0 {
		c.Consumer.BatchSize = DefaultBatchSize
	}
	if c.Consumer.PartialBatches == 0 {
		c.Consumer.PartialBatches = DefaultPartialBatches
	}
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
		c.DBMaxConns = int32(c.Consumer.Concurrency) + 6 // #nosec G115 -- CONSUMER_CONCURRENCY is validated to 1..maxConcurrency
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = ":9090"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8081"
	}
	if c.StripeAPIRate <= 0 {
		c.StripeAPIRate = stripeapi.DefaultRate
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = display.DefaultStaleAfter
	}
	c.GRPC = c.GRPC.WithDefaults()
	return c
}

// LogValue logs the settings with every secret masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", config.MaskURL(c.DatabaseURL)), slog.Any("nats", c.NATSURL),
		slog.String("grpc_addr", c.GRPCAddr), slog.String("http_addr", c.HTTPAddr), slog.Any("tokens", c.Tokens.Names()),
		slog.Bool("past_due_entitled", c.Policy.PastDueEntitled), slog.Any("stripe_api_key", c.StripeAPIKey),
		slog.String("stripe_api_base", config.MaskURL(c.StripeAPIBase)), slog.String("stripe_livemode", c.StripeLivemode), slog.String("drift_check_interval", c.DriftCheckInterval.String()), slog.String("endpoint_check_interval", c.EndpointCheckInterval.String()), slog.Int("consumer_concurrency", c.Consumer.Concurrency),
		slog.Int("consumer_max_deliver", c.Consumer.MaxDeliver), slog.Bool("async_commit", c.AsyncCommit),
		slog.Bool("grpc_tls", c.GRPC.TLS()), slog.Any("grpc_max_streams", c.GRPC.MaxStreams), slog.Int("grpc_max_watch_per_token", c.GRPC.MaxWatchPerToken),
		slog.String("grpc_unary_timeout", c.GRPC.UnaryTimeout.String()), slog.Any("grpc_db_max_conns", c.GRPC.DBMaxConns),
		slog.String("status_stale_after", c.StaleAfter.String()), slog.String("portal_return_urls", c.ReturnURLs.String()),
		slog.String("status_page_addr", c.StatusPageAddr), slog.String("status_page_url", c.StatusPageURL),
		slog.Int("status_link_secrets", len(c.StatusLinkSecrets)), slog.String("status_link_max_ttl", c.StatusLinkMaxTTL.String()), slog.String("display_locales_dir", c.LocalesDir))
}

// Run runs the service until ctx ends, then stops it gracefully. It
// returns an error when it cannot start or a part of it fails.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if cfg.Catalogues == nil {
		cs, err := display.Load(cfg.LocalesDir)
		if err != nil {
			return err
		}
		cfg.Catalogues = cs
	}
	dbOpts := []pg.Option{pg.WithIndexPlans()}
	if cfg.AsyncCommit {
		dbOpts = append(dbOpts, pg.WithAsyncCommit())
	}
	spec := service.Spec{
		Name: Durable, Logger: cfg.Logger, Registry: cfg.Registry, Telemetry: cfg.Telemetry, Settings: cfg,
		OpsAddr: cfg.HTTPAddr, NATS: cfg.NATSURL, Streams: cfg.Streams,
		Database:     &service.Database{URL: cfg.DatabaseURL, MaxConns: cfg.DBMaxConns, Options: dbOpts, Migrate: state.Migrate},
		StartTimeout: cfg.StartTimeout, ShutdownGrace: cfg.ShutdownGrace, Ready: cfg.Ready,
	}
	return service.Supervise(ctx, spec, func(_ context.Context, host *service.Host) error {
		log, reg := host.Log, host.Registry
		if cfg.Tokens.Len() == 0 {
			log.Warn("STATUS_API_TOKENS is empty: every gRPC call will be refused")
		}
		// One client, so the fetches and the drift check share one rate
		// budget.
		var api *stripeapi.Client
		var fetcher state.Fetcher
		if cfg.StripeAPIKey != "" {
			var err error
			api, err = stripeapi.New(stripeapi.Config{Key: cfg.StripeAPIKey, Base: cfg.StripeAPIBase, Rate: max(int(cfg.StripeAPIRate), 1), Livemode: cfg.StripeLivemode})
			if err != nil {
				return fmt.Errorf("stripe api: %w", err)
			}
			fetcher = stripefetch.NewFrom(api)
		}
		var rl *relay.Relay
		storeOpts := state.Options{Policy: cfg.Policy, Fetcher: fetcher, Logger: log, OutboxWritten: func() { rl.Kick() }}
		consumerOpts := host.ConsumerOptions()
		consumerOpts.DrainTimeout = cfg.ShutdownGrace
		// Events of one customer go to one worker, in order.
		consumerOpts.PartitionKey = billingv1.EncodedCustomerID
		if cfg.AsyncCommit {
			gate := state.NewFlushGate(host.Pool, state.FlushGateOptions{ForceAfter: cfg.FlushForceAfter, Registry: reg})
			storeOpts.Durable, consumerOpts.AckAfter = gate.Wait, gate.After
			// Started first, stopped last: a clean stop sends the acks of
			// everything the consumer and the relay finished.
			host.Go("flush gate", gate.Run)
		}
		store := state.New(host.Pool, storeOpts)
		consumerOpts.DeadLettered = func(ctx context.Context, d *bus.Delivery) { recordDeadLetter(ctx, store, log, d) }
		rl = relay.New(store, bus.NewPublisher(host.JS, host.Telemetry.TracerProvider(), bus.WithPublisherRegistry(reg)),
			relay.Options{Poll: cfg.OutboxPoll, Retention: cfg.OutboxRetention, Logger: log, Registry: reg})
		m := newMetrics(reg)
		m.registerGauges(reg, store)
		// The relay outlives the consumer, so that the changes of its last
		// events are published before the stop.
		host.Go("outbox relay", rl.Run)
		host.GoConsumer("consumer", bus.NewBatchConsumer(host.JS, cfg.Consumer, batchHandler(store, m, cfg, log), consumerOpts))
		host.Go("parked sweep", func(ctx context.Context) error { sweepParked(ctx, store, cfg.ParkSweep, log); return nil })
		return serveGRPC(host, cfg, rl, api)
	})
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
	return state.ApplyOptions{ParkUnresolved: d.Delivered >= uint64(cfg.ParkAfter)} // #nosec G115 -- ParkAfter is clamped to at least 1
}

// lastChance: the event failed on its last delivery only because the
// database is out of reach.
func lastChance(cfg Config, d *bus.Delivery, err error) bool {
	return d.Delivered >= uint64(cfg.Consumer.MaxDeliver) && !errors.Is(err, state.ErrMalformed) && // #nosec G115 -- MaxDeliver is validated to be at least 1
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

// recordDeadLetter marks the customer of a dead-lettered event, so that
// its display says "status unknown" until the event is applied or staff
// reconcile the customer. The dead letter is stored already; a mark that
// cannot be written is logged, not retried.
func recordDeadLetter(ctx context.Context, store *state.Store, log *slog.Logger, d *bus.Delivery) {
	if d.Event == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := store.RecordDeadLetter(rctx, d.Event); err != nil {
		log.WarnContext(ctx, "dead letter not marked on the customer's status", "event_id", d.Event.GetEventId(),
			"customer_id", d.Event.GetCustomerId(), "action", "mark_dead_letter", "error", bus.Redact(err.Error()))
	}
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

// checkStatusPage refuses a page that could not give working links: a
// listener without a public URL or secrets, or a URL that is not https
// (http only on loopback).
func checkStatusPage(c Config) error {
	if c.StatusLinkMaxTTL <= 0 {
		return errors.New("STATUS_LINK_MAX_TTL: must be positive")
	}
	if c.StatusPageAddr == "" && c.StatusPageURL == "" {
		return nil
	}
	if c.StatusPageURL == "" || len(c.StatusLinkSecrets) == 0 {
		return errors.New("STATUS_PAGE_ADDR, STATUS_PAGE_URL and STATUS_LINK_SECRETS: set all three for the status page, or none")
	}
	u, err := url.Parse(c.StatusPageURL)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil ||
		(u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return errors.New("STATUS_PAGE_URL: want https://host[/path] (http only on a loopback host)")
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
