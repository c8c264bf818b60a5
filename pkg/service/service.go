// Package service is what every service's command does around its Run:
// a JSON logger at LOG_LEVEL on stdout, the configuration read from the
// environment, a context that ends on SIGINT or SIGTERM, and exit status 1
// when the configuration is wrong or the service fails.
package service

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
)

// Env lists the variables Main reads itself, besides those the service's
// configuration reads.
var Env = []string{logLevelVar}

// logLevelVar sets the logs' level: debug, info (default), warn, error.
const logLevelVar = "LOG_LEVEL"

// Config is a service's configuration: it takes the logger Main makes.
type Config[C any] interface {
	WithLogger(log *slog.Logger) C
}

// Main runs a service as a process's main: fromEnv reads its
// configuration, run runs it until SIGINT or SIGTERM. It exits 1 if either
// fails.
func Main[C Config[C]](name string, fromEnv func(config.Getenv) (C, error), run func(context.Context, C) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, name, fromEnv, run, os.Stdout, os.Getenv); err != nil {
		stop()
		os.Exit(1)
	}
}

// Run is Main without the process: logs go to w, the environment is
// getenv, and the error is returned (it has been logged).
func Run[C Config[C]](ctx context.Context, name string, fromEnv func(config.Getenv) (C, error), run func(context.Context, C) error, w io.Writer, getenv config.Getenv) error {
	log := logging.New(w, name, logging.ParseLevel(getenv(logLevelVar)))
	cfg, err := fromEnv(getenv)
	if err != nil {
		log.Error("configuration", "error", err.Error())
		return err
	}
	if err := run(ctx, cfg.WithLogger(log)); err != nil {
		log.Error(name+" stopped", "error", err.Error())
		return err
	}
	return nil
}
