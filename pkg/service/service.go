// Package service is what every service shares, so that each writes only
// its own parts.
//
// Supervise builds one service's environment, the way every service needs
// it: telemetry, the ops server (/healthz, /readyz, /metrics), the Postgres
// pool with its metrics and migrations, the NATS connection and the
// streams, all started under one start-up policy. It hands that to the
// service's wiring, runs the parts the wiring starts, and ends in one select
// with one shutdown order. A NATS connection closed for good fails
// /healthz and the service, so its supervisor restarts the process. A part
// that needs a pool or a NATS connection of its own asks the Host for it
// (OpenPool, Connect), and it is set up, measured and stopped like the
// service's own.
//
// Main is what every service's command does around its Run: the logger
// (LOG_LEVEL, LOG_FORMAT), the Go memory limit from the container's, the
// configuration read from the environment, a context that ends on SIGINT or
// SIGTERM, and exit status 1 when the configuration is wrong or the service
// fails.
package service

import (
	"context"
	"errors"
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
var Env = []string{logging.LevelVar, logging.FormatVar}

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
	if err := runService(ctx, name, fromEnv, run, os.Stdout, os.Getenv, true); err != nil {
		stop()
		os.Exit(1)
	}
}

// Run is Main without the process: logs go to w, the environment is
// getenv, the memory limit is left alone, and the error is returned (it has
// been logged).
func Run[C Config[C]](ctx context.Context, name string, fromEnv func(config.Getenv) (C, error), run func(context.Context, C) error, w io.Writer, getenv config.Getenv) error {
	return runService(ctx, name, fromEnv, run, w, getenv, false)
}

func runService[C Config[C]](ctx context.Context, name string, fromEnv func(config.Getenv) (C, error), run func(context.Context, C) error, w io.Writer, getenv config.Getenv, process bool) error {
	logs, logErr := logging.FromEnv(w, getenv)
	log := logs.Logger(name)
	if process {
		SetMemoryLimit(getenv, log)
	}
	cfg, err := fromEnv(getenv)
	if err = errors.Join(err, logErr); err != nil {
		log.Error("configuration", "error", err.Error())
		return err
	}
	if err := run(ctx, cfg.WithLogger(log)); err != nil {
		log.Error(name+" stopped", "error", err.Error())
		return err
	}
	return nil
}
