package crmsync

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/pkg/service"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/services/crm-sync/internal/store"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
)

// Run runs crm-sync until ctx ends: the shared setup (ops server, Postgres
// and the crm schema, NATS and the streams), then the CRM adapter and the
// consumer.
func Run(ctx context.Context, cfg Config) error {
	concurrency := cfg.Consumer.Concurrency
	if concurrency <= 0 {
		concurrency = 8
	}
	spec := service.Spec{
		Name: Durable, Logger: cfg.Logger, Registry: cfg.Registry, Telemetry: cfg.Telemetry, Settings: cfg,
		OpsAddr: cfg.HTTPAddr, NATS: cfg.NATSURL, Streams: cfg.Streams,
		// A worker holds a connection only for its short intent and outcome
		// transactions, never during a CRM call; a few spare serve /readyz.
		Database:     &service.Database{URL: cfg.DatabaseURL, MaxConns: int32(concurrency + 4), Migrate: store.Migrate},
		StartTimeout: cfg.StartTimeout, Ready: cfg.Ready,
	}
	return service.Supervise(ctx, spec, func(_ context.Context, host *service.Host) error {
		adapter, err := NewAdapter(cfg, host.Log, host.Telemetry.TracerProvider(), host.Registry)
		if err != nil {
			return err
		}
		sy := syncer.New(syncer.Options{
			Pool:    host.Pool,
			Adapter: adapter,
			Policy:  cfg.Policy,
			Logger:  host.Log,
			Tracer:  host.Telemetry.Tracer(Durable),
			// A batch's calls share the rate budget with every other
			// worker's, so it may take as long as the bus lets a handler.
			Timeout:   batchTimeout(cfg),
			AfterPush: cfg.afterPush,
		})
		opts := host.ConsumerOptions()
		opts.DrainTimeout = cfg.DrainTimeout
		// One customer's events go to one worker, so the events waiting
		// for a customer arrive in one batch and fold into one push, and
		// workers seldom wait for each other's turn.
		opts.PartitionKey = billingv1.EncodedCustomerID
		host.GoConsumer("consumer", bus.NewBatchConsumer(host.JS, cfg.Consumer, sy.SyncBatch, opts))
		// Staff resyncs from the console: one push of a customer's
		// current documents per request id.
		resyncs := resync.Log{DB: host.Pool, Schema: store.Schema, StaleAfter: batchTimeout(cfg) + time.Minute}
		host.Go("resync", func(ctx context.Context) error {
			return resync.Run(ctx, host.NC, Durable, batchTimeout(cfg), host.Log, resyncs.Once(sy.Resync))
		})
		return nil
	})
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

// batchTimeout bounds one handler call: the consumer's handler timeout
// (CONSUMER_HANDLER_TIMEOUT, 60 s by default), and never less than three
// attempts at one request.
func batchTimeout(cfg Config) time.Duration {
	t := cfg.Consumer.HandlerTimeout
	if t <= 0 {
		t = 60 * time.Second
	}
	return max(t, 3*cfg.Timeout+10*time.Second)
}
