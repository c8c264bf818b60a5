// Package provision is `launchready provision`: the provisioning step
// (package services/provision) from an operator's shell, with the admin
// credentials found as every command finds them (package natscreds).
package provision

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/services/launchready/internal/cli"
	"github.com/launchready/launchready/services/launchready/internal/natscreds"
	"github.com/launchready/launchready/services/provision"
)

const usage = `usage: launchready provision [--data DIR] [--timeout D]

Creates BILLING_EVENTS, BILLING_DLQ and BILLING_STATUS, or updates them to
NATS_STREAM_REPLICAS, NATS_DUPLICATE_WINDOW, NATS_MAX_AGE and NATS_STORAGE.
Safe to run again. It connects as NATS_USER (admin) to NATS_URL with the
NATS_* credentials, else with the admin nkey "launchready dev" keeps in
<data>/nats/admin.nk. Exits 1 on failure, 2 on bad usage.

`

// Main runs the command; args follow the word "provision".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := cli.FlagSet("provision", usage, stderr)
	dataDir := fs.String("data", ".data", "the dev data directory holding nats/admin.nk")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long (the server may still be starting)")
	if code, ok := cli.ParseFlagsOnly(fs, args); !ok {
		return code
	}
	env := config.New(getenv)
	cfg := provision.Config{
		NATS:    natscreds.Conn(env, *dataDir, natsauth.Admin),
		Streams: bus.StreamConfigFromEnv(env),
		Timeout: *timeout,
	}
	if err := env.Err(); err != nil {
		fmt.Fprintf(stderr, "launchready provision: %v\n", err)
		return 2
	}
	if err := provision.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "launchready provision: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "provisioned %s, %s and %s on %s as %s\n",
		bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus, config.MaskURL(cfg.NATS.URL), cfg.NATS.User)
	return 0
}
