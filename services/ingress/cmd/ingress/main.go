// Command ingress receives Stripe webhooks and publishes them to JetStream.
// Configuration is the environment; see package ingress.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/services/ingress"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	log := logging.New(os.Stdout, ingress.ServiceName, logging.ParseLevel(os.Getenv("LOG_LEVEL")))
	cfg, err := ingress.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("configuration", "error", err)
		return err
	}
	cfg.Logger = log
	if err := ingress.Run(ctx, cfg); err != nil {
		log.Error("ingress stopped", "error", err)
		return err
	}
	return nil
}
