// Command billing-state runs the billing-state service. Configuration is
// the environment; see package billingstate.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/launchready/launchready/pkg/logging"
	billingstate "github.com/launchready/launchready/services/billing-state"
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
	log := logging.New(os.Stdout, billingstate.Durable, logging.ParseLevel(os.Getenv("LOG_LEVEL")))
	cfg, err := billingstate.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("configuration", "error", err)
		return err
	}
	cfg.Logger = log
	if err := billingstate.Run(ctx, cfg); err != nil {
		log.Error("billing-state stopped", "error", err)
		return err
	}
	return nil
}
