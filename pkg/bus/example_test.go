package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
)

// A consumer service: connect as its own NATS user, wait for the streams
// the provisioning step makes, and run a handler until SIGTERM. Returning
// nil acks; Permanent dead-letters at once; RetryAfter honours a vendor's
// Retry-After; anything else is retried with backoff and dead-lettered
// after CONSUMER_MAX_DELIVER attempts.
func ExampleConsumer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	env := config.New(os.Getenv)
	conn := bus.ConnConfigFromEnv(env, "crm-sync")
	streams := bus.StreamConfigFromEnv(env)
	consumer := bus.ConsumerConfigFromEnv(env, "crm-sync")
	if err := env.Err(); err != nil {
		log.Error("bad configuration", "error", err)
		return
	}

	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, js, err := bus.Connect(connectCtx, conn, "crm-sync", log)
	if err != nil {
		log.Error("nats", "error", err)
		return
	}
	defer nc.Close()
	if err := bus.EnsureStreams(connectCtx, js, streams); err != nil {
		log.Error("streams", "error", err)
		return
	}

	errRateLimited := errors.New("429 from the CRM")
	c := bus.NewConsumer(js, consumer, func(ctx context.Context, d *bus.Delivery) error {
		switch d.Event.GetType() {
		case "customer.created", "customer.updated":
			// Upsert the contact here, recording d.Event.EventId in the
			// same transaction so a redelivery is a no-op.
			return bus.RetryAfter(errRateLimited, 10*time.Second)
		default:
			return nil // not ours: ack and move on
		}
	}, bus.ConsumerOptions{Logger: log, Registry: prometheus.NewRegistry()})
	if err := c.Run(ctx); err != nil {
		log.Error("consumer", "error", err)
	}
}
