// Command support-notify turns billing events into Zendesk tickets and
// Slack alerts. Configuration is the environment; see package supportnotify.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/launchready/launchready/pkg/logging"
	supportnotify "github.com/launchready/launchready/services/support-notify"
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
	log := logging.New(os.Stdout, supportnotify.ServiceName, logging.ParseLevel(os.Getenv("LOG_LEVEL")))
	cfg, err := supportnotify.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("configuration", "error", err)
		return err
	}
	cfg.Logger = log
	if err := supportnotify.Run(ctx, cfg); err != nil {
		log.Error("support-notify stopped", "error", err)
		return err
	}
	return nil
}
