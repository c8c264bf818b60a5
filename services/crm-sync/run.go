package crmsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/telemetry"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/services/crm-sync/internal/store"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
)

// Run runs crm-sync until ctx ends: ops HTTP first (so /healthz answers
// while dependencies come up), then migrations (retried while Postgres is
// away), NATS, the streams and the consumer.
func Run(ctx context.Context, cfg Config) error {
	// --- logging, metrics, tracing ---
	log := cfg.Logger
	if log == nil {
		log = logging.Discard()
	}
	reg := cfg.Registry
	if reg == nil {
		reg = httpserver.NewRegistry()
	}
	log.InfoContext(ctx, "crm-sync starting", slog.Any("config", cfg))
	tel, err := telemetry.Setup(ctx, cfg.Telemetry)
	if err != nil {
		return fmt.Errorf("crm-sync telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()

	// --- database ---
	concurrency := cfg.Consumer.Concurrency
	if concurrency <= 0 {
		concurrency = 8
	}
	// A worker holds a connection only for its short intent and outcome
	// transactions, never during a CRM call; a few spare serve /readyz.
	pool, err := pg.Open(ctx, cfg.DatabaseURL, pg.WithMaxConns(int32(concurrency+4)), pg.WithTracer(tel.PgxTracer()), pg.WithApplicationName("crm-sync"))
	if err != nil {
		return fmt.Errorf("crm-sync database: %w", err)
	}
	defer pool.Close()
	if err := pg.RegisterPoolMetrics(reg, pool, "crm-sync"); err != nil {
		return fmt.Errorf("crm-sync database: %w", err)
	}

	// --- CRM ---
	adapter, err := NewAdapter(cfg, log, tel.TracerProvider(), reg)
	if err != nil {
		return err
	}

	// --- ops HTTP ---
	var migrated atomic.Bool
	var conn atomic.Pointer[nats.Conn]
	mux := http.NewServeMux()
	httpserver.Ops(mux, reg, map[string]httpserver.Check{
		"postgres": func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return errors.New("unreachable")
			}
			if !migrated.Load() {
				return errors.New("migrations pending")
			}
			return nil
		},
		"nats": func(context.Context) error {
			if nc := conn.Load(); nc == nil || !nc.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		},
	})
	ln, err := httpserver.Listen(cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("crm-sync ops: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- httpserver.Serve(ctx, srv, ln, 5*time.Second) }()
	running := 1
	if cfg.Ready != nil {
		cfg.Ready(map[string]string{"http": ln.Addr().String()})
	}

	stop := func(err error) error {
		cancel()
		for ; running > 0; running-- {
			if e := <-errc; e != nil && err == nil {
				err = e
			}
		}
		return err
	}

	// --- schema ---
	if err := migrateUntilReady(ctx, pool, log); err != nil {
		return stop(err)
	}
	migrated.Store(true)

	// --- NATS and the consumer ---
	nc, js, err := bus.Connect(ctx, cfg.NATSURL, Durable, log)
	if err != nil {
		return stop(fmt.Errorf("crm-sync nats: %w", err))
	}
	defer nc.Close()
	conn.Store(nc)
	if err := bus.EnsureStreams(ctx, js, cfg.Streams); err != nil {
		return stop(fmt.Errorf("crm-sync streams: %w", err))
	}
	sy := syncer.New(syncer.Options{
		Pool:      pool,
		Adapter:   adapter,
		Policy:    cfg.Policy,
		Logger:    log,
		Tracer:    tel.Tracer("crm-sync"),
		Timeout:   3*cfg.Timeout + 10*time.Second,
		AfterPush: cfg.afterPush,
	})
	consumer := bus.NewConsumer(js, cfg.Consumer, sy.SyncDelivery, bus.ConsumerOptions{
		Logger:         log,
		TracerProvider: tel.TracerProvider(),
		Registry:       reg,
		DrainTimeout:   cfg.DrainTimeout,
	})
	go func() { errc <- consumer.Run(ctx) }()
	running++
	log.InfoContext(ctx, "crm-sync running", slog.String("provider", adapter.Name()), slog.String("http", ln.Addr().String()))

	// --- until shutdown or a failure ---
	var first error
	select {
	case first = <-errc:
		running--
		if first == nil && ctx.Err() == nil {
			first = errors.New("crm-sync: a component stopped unexpectedly")
		}
	case <-ctx.Done():
	}
	err = stop(first)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.InfoContext(context.WithoutCancel(ctx), "crm-sync stopped")
	return err
}

// NewAdapter builds the adapter CRM_PROVIDER names, on one shared client.
func NewAdapter(cfg Config, log *slog.Logger, tp trace.TracerProvider, reg prometheus.Registerer) (crm.Adapter, error) {
	if log == nil {
		log = logging.Discard()
	}
	client := crm.NewClient(crm.ClientConfig{
		Vendor:         cfg.Provider,
		Timeout:        cfg.Timeout,
		Limit:          cfg.RateLimit,
		Window:         cfg.RateWindow,
		TracerProvider: tp,
		Metrics:        crm.NewMetrics(reg),
		Secrets:        []string{cfg.HubSpot.Token.Reveal(), cfg.Webhook.Secret.Reveal(), cfg.Webhook.URL},
		HideURLPath:    cfg.Provider == ProviderWebhook,
	})
	switch cfg.Provider {
	case ProviderHubSpot:
		return crm.NewHubSpot(client, crm.HubSpotConfig{
			BaseURL:  cfg.HubSpot.BaseURL,
			Token:    cfg.HubSpot.Token.Reveal(),
			Pipeline: cfg.HubSpot.Pipeline,
			Stages:   cfg.HubSpot.Stages,
		}), nil
	case ProviderWebhook:
		return crm.NewWebhook(client, crm.WebhookConfig{URL: cfg.Webhook.URL, Secret: cfg.Webhook.Secret.Reveal()}), nil
	case ProviderLog, "":
		return crm.NewLog(log), nil
	}
	return nil, fmt.Errorf("crm-sync: unknown CRM_PROVIDER %q", cfg.Provider)
}

// migrateUntilReady applies the schema, waiting for Postgres if it is not
// up yet: a service that starts before its database is normal in compose
// and Kubernetes.
func migrateUntilReady(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	wait := 250 * time.Millisecond
	for {
		err := store.Migrate(ctx, pool)
		if err == nil {
			return nil
		}
		if !pg.IsUnavailable(err) || ctx.Err() != nil {
			return fmt.Errorf("crm-sync migrate: %w", err)
		}
		log.WarnContext(ctx, "postgres not ready; retrying migrations", slog.String("error", err.Error()), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("crm-sync migrate: %w", ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}
