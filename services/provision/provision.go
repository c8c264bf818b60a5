// Package provision is the provisioning step as a library: it creates the
// JetStream streams, or brings them to the NATS_* stream settings, as the
// NATS admin user, and returns. It runs once per deployment before the
// services start (a Kubernetes Job, a one-off compose service, and
// `launchready provision` or `launchready dev` by hand): the services'
// users may not create streams, and each service waits for them.
package provision

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
)

// Name names the step in logs and on the NATS connection.
const Name = "provision"

// Config is everything Run needs.
type Config struct {
	// NATS is NATS_URL and the admin user's credentials (NATS_USER
	// defaults to admin).
	NATS bus.ConnConfig
	// Streams are the NATS_* stream settings to apply.
	Streams bus.StreamConfig
	// Timeout (PROVISION_TIMEOUT, 2m) bounds the whole step, including the
	// wait for a server that is still starting.
	Timeout time.Duration
	// Logger receives the step's logs; nil discards them.
	Logger *slog.Logger
}

// WithLogger returns the configuration with its logs going to log.
func (c Config) WithLogger(log *slog.Logger) Config {
	c.Logger = log
	return c
}

// ConfigFromEnv reads NATS_URL and the NATS_* credentials, the NATS_*
// stream settings and PROVISION_TIMEOUT. Every problem is reported at once.
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	cfg := Config{
		NATS:    bus.ConnConfigFromEnv(e, natsauth.Admin),
		Streams: bus.StreamConfigFromEnv(e),
		Timeout: e.Duration("PROVISION_TIMEOUT", 2*time.Minute),
	}
	if cfg.Timeout <= 0 {
		e.Fail("PROVISION_TIMEOUT: must be positive, got %s", cfg.Timeout)
	}
	if err := e.Err(); err != nil {
		return Config{}, fmt.Errorf("provision config: %w", err)
	}
	return cfg, nil
}

// Run provisions the streams and returns nil once they are there.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = logging.Discard()
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	log.Info("provisioning streams", "nats", cfg.NATS, "replicas", max(cfg.Streams.Replicas, 1),
		"duplicate_window", cfg.Streams.DuplicateWindow.String(), "max_age", cfg.Streams.MaxAge.String())
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := bus.Provision(ctx, cfg.NATS, cfg.Streams, log); err != nil {
		return err
	}
	log.Info("streams provisioned", "streams", []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus})
	return nil
}
