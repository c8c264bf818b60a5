// Command crm-sync keeps a CRM in step with billing; see package crmsync.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/launchready/launchready/pkg/logging"
	crmsync "github.com/launchready/launchready/services/crm-sync"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := logging.New(os.Stderr, "crm-sync", logging.ParseLevel(os.Getenv("LOG_LEVEL")))
	cfg, err := crmsync.ConfigFromEnv(os.Getenv)
	if err == nil {
		cfg.Logger = log
		err = crmsync.Run(ctx, cfg)
	}
	if err != nil {
		log.Error("crm-sync failed", "error", err.Error())
		fmt.Fprintln(os.Stderr, "crm-sync:", err)
		stop()
		os.Exit(1)
	}
}
