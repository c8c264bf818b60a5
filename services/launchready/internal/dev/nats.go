package dev

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natsembed"
	"github.com/launchready/launchready/services/launchready/internal/natscreds"
)

// devNATS is the broker `launchready dev` runs the services on: by default
// an embedded server that authenticates as production does (every user of
// pkg/natsauth with its permissions, each with an nkey kept under
// <data>/nats/), or the server NATS_URL names, reached with the NATS_*
// credentials of the environment.
type devNATS struct {
	url string
	// keyDir holds each user's nkey seed; empty for a server of NATS_URL.
	keyDir string
	stop   func()
}

// startNATS starts the broker and provisions the streams as the admin
// user, as a deployment's provisioning step does before its services start.
func startNATS(ctx context.Context, env *config.Env, dataDir string, port int, log *slog.Logger) (*devNATS, error) {
	streams := bus.StreamConfigFromEnv(env)
	if err := env.Err(); err != nil {
		return nil, err
	}
	d := &devNATS{url: env.String("NATS_URL", ""), stop: func() {}}
	admin := bus.ConnConfigFromEnv(env, natsauth.Admin)
	if d.url == "" {
		keyDir, err := filepath.Abs(natscreds.Dir(dataDir))
		if err != nil {
			return nil, err
		}
		logins, err := natsauth.NKeyFiles(keyDir)
		if err != nil {
			return nil, err
		}
		_, nkeys, err := natsauth.ServerUsers(logins)
		if err != nil {
			return nil, err
		}
		srv, err := natsembed.Start(natsembed.Options{Host: "127.0.0.1", Port: port, StoreDir: filepath.Join(dataDir, "jetstream"),
			ServerName: "launchready-dev", NKeys: nkeys})
		if err != nil {
			return nil, fmt.Errorf("embedded NATS on port %d: %w (set NATS_URL to use another server, or -nats-port)", port, err)
		}
		d.url, d.keyDir = srv.ClientURL(), keyDir
		d.stop = func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		}
		admin = d.conn(natsauth.Admin)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.Provision(pctx, admin, streams, log); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// conn is how user reaches the embedded server.
func (d *devNATS) conn(user string) bus.ConnConfig {
	return bus.ConnConfig{URL: d.url, User: user, NKeyFile: natsauth.NKeyFile(d.keyDir, user)}
}

// serviceEnv is the NATS part of a service's environment: the server, and
// on the embedded server the service's own user and key (any other
// credentials of the shell are blanked, so they cannot be mixed in).
func (d *devNATS) serviceEnv(service string) map[string]string {
	env := map[string]string{"NATS_URL": d.url}
	if d.keyDir != "" {
		c := d.conn(service)
		env["NATS_USER"], env["NATS_NKEY"] = c.User, c.NKeyFile
		env["NATS_PASSWORD"], env["NATS_TOKEN"], env["NATS_CREDS"] = "", "", ""
	}
	return env
}

// banner says where the broker is and, on the embedded server, where the
// keys are.
func (d *devNATS) banner() string {
	if d.keyDir == "" {
		return config.MaskURL(d.url)
	}
	return fmt.Sprintf("%s  (each service its own user; nkeys in %s)", d.url, d.keyDir)
}
