// Package dev runs the whole system in one process for a laptop: an
// embedded JetStream server with its data under .data/, the local Postgres,
// and every service, each under its own name and ports, as in production.
package dev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	billingstate "github.com/launchready/launchready/services/billing-state"
	"github.com/launchready/launchready/services/console"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	"github.com/launchready/launchready/services/ingress"
	"github.com/launchready/launchready/services/launchready/internal/cli"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

// Main runs `launchready dev`.
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", ".data", "directory for the embedded JetStream store and dev secrets")
	natsPort := fs.Int("nats-port", 4223, "port of the embedded NATS server (4222 is often taken by a system server)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := run(ctx, getenv, *dataDir, *natsPort, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "launchready dev: %v\n", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, getenv config.Getenv, dataDir string, natsPort int, stdout, stderr io.Writer) error {
	env := config.New(getenv)
	// On a terminal, short text lines; JSON anywhere else (LOG_FORMAT).
	logs, err := logging.FromEnv(stderr, getenv)
	if err != nil {
		return err
	}
	log := logs.Logger("launchready")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dataDir, err)
	}
	secrets, err := loadDevSecrets(filepath.Join(dataDir, "dev-secrets.json"))
	if err != nil {
		return err
	}

	// ---- Profiles: opt-in, so that a load run can be split by service.
	if addr := env.String("LR_PPROF_ADDR", ""); addr != "" {
		if _, err := serveProfiles(ctx, addr, log); err != nil {
			return fmt.Errorf("LR_PPROF_ADDR: %w", err)
		}
	}

	// ---- NATS: the given NATS_URL, or an embedded JetStream under .data/
	// with production's users; the streams provisioned either way.
	var broker *devNATS
	withProfileLabel(ctx, "nats-server", func(ctx context.Context) {
		broker, err = startNATS(ctx, env, dataDir, natsPort, log)
	})
	if err != nil {
		return err
	}
	defer broker.stop()

	// ---- Postgres: DATABASE_URL or the local server; created if missing.
	dbURL := env.String("DATABASE_URL", pg.DefaultURL)
	ectx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = pg.EnsureDatabase(ectx, dbURL)
	cancel()
	if err != nil {
		return fmt.Errorf("postgres at %s: %w", config.MaskURL(dbURL), err)
	}

	webhookSecret := env.String("STRIPE_WEBHOOK_SECRET", secrets.WebhookSecret)
	tokens := env.String("STATUS_API_TOKENS", "dev="+secrets.APIToken+":read+admin")
	ingressAddr := env.String("INGRESS_ADDR", "127.0.0.1:8080")
	grpcAddr := env.String("GRPC_ADDR", "127.0.0.1:9090")
	// The customer status page, its links signed with the dev secret; its
	// button opens the billing portal when STRIPE_API_KEY is set, leading
	// back to the page.
	statusPageAddr := env.String("STATUS_PAGE_ADDR", DefaultStatusPageAddr)
	statusPageURL := env.String("STATUS_PAGE_URL", "http://"+cli.Dialable(statusPageAddr))
	statusPage := map[string]string{"STATUS_PAGE_ADDR": statusPageAddr, "STATUS_PAGE_URL": statusPageURL,
		"STATUS_LINK_SECRETS": env.String("STATUS_LINK_SECRETS", secrets.StatusLinkSecret),
		"PORTAL_RETURN_URLS":  env.String("PORTAL_RETURN_URLS", strings.TrimSuffix(statusPageURL, "/")+"/s/")}
	services := []service{
		{name: "ingress", env: map[string]string{"INGRESS_ADDR": ingressAddr, "STRIPE_WEBHOOK_SECRET": webhookSecret, "HTTP_ADDR": env.String("INGRESS_HTTP_ADDR", "127.0.0.1:8084")}, run: runIngress},
		{name: "billing-state", env: withEnv(map[string]string{"GRPC_ADDR": grpcAddr, "STATUS_API_TOKENS": tokens, "HTTP_ADDR": env.String("BILLING_STATE_HTTP_ADDR", "127.0.0.1:8081")}, statusPage), run: runBillingState},
		{name: "crm-sync", env: map[string]string{"HTTP_ADDR": env.String("CRM_SYNC_HTTP_ADDR", "127.0.0.1:8082")}, run: runCRMSync},
		{name: "support-notify", env: map[string]string{"HTTP_ADDR": env.String("SUPPORT_NOTIFY_HTTP_ADDR", "127.0.0.1:8083")}, run: runSupportNotify},
		{name: "console", env: map[string]string{"CONSOLE_ADDR": env.String("CONSOLE_ADDR", console.DefaultAddr), "HTTP_ADDR": env.String("CONSOLE_HTTP_ADDR", "127.0.0.1:8085"),
			"CONSOLE_BILLING_GRPC_ADDR": cli.Dialable(grpcAddr), "CONSOLE_BILLING_GRPC_TOKEN": env.String("CONSOLE_BILLING_GRPC_TOKEN", secrets.APIToken)}, run: runConsole},
	}
	for i, s := range services {
		// Each service connects as its own NATS user; its own settings
		// come last.
		own := broker.serviceEnv(s.name)
		maps.Copy(own, s.env)
		services[i].env = own
	}
	// The console's overview reads every service's ops listener.
	var opsTargets []string
	for _, s := range services {
		opsTargets = append(opsTargets, s.env["HTTP_ADDR"])
	}
	for _, s := range services {
		if s.name == "console" {
			s.env["CONSOLE_OPS_TARGETS"] = strings.Join(opsTargets, ",")
		}
	}
	l := &launcher{
		log: log, logs: logs, getenv: getenv,
		common:    map[string]string{"DATABASE_URL": dbURL},
		firstWait: firstRestartWait, maxWait: maxRestartWait, stableAfter: stableRun,
	}

	// Run them all; once every service serves, tell the user what to do.
	var (
		mu     sync.Mutex
		addrs  = map[string]map[string]string{}
		allUp  = make(chan struct{})
		upOnce sync.Once
	)
	launched := make(chan error, 1)
	go func() {
		launched <- l.run(ctx, services, func(name string, a map[string]string) {
			mu.Lock()
			defer mu.Unlock()
			if _, again := addrs[name]; again {
				log.Info("service serving again", "service_name", name)
			}
			addrs[name] = a
			if len(addrs) == len(services) {
				upOnce.Do(func() { close(allUp) })
			}
		})
	}()
	select {
	case <-allUp:
	case err := <-launched:
		return err
	}
	mu.Lock()
	webhookURL := "http://" + cli.Dialable(addrs["ingress"]["webhook"]) + "/webhooks/stripe"
	grpcShown := cli.Dialable(addrs["billing-state"]["grpc"])
	consoleURL := "http://" + cli.Dialable(addrs["console"]["console"]) + "/login"
	statusPageShown := "http://" + cli.Dialable(addrs["billing-state"]["status page"]) + "/s/<link token>"
	var ops []string
	for _, s := range services {
		ops = append(ops, s.name+" "+cli.Dialable(addrs[s.name]["http"]))
	}
	mu.Unlock()
	fmt.Fprintf(stdout, `
Launch Ready is running.
  webhook URL     %s
  gRPC address    %s
  staff console   %s  (add yourself: launchready staff add --email you@example.com --role owner)
  status page     %s  (a link: launchready status --link cus_...)
  NATS            %s
  Postgres        %s
  webhook secret  %s
  API token       %s  (send as "authorization: Bearer <token>")
  ops ports       %s  (/healthz /readyz /metrics)

Forward real test-mode events from Stripe with:
  stripe listen --forward-to %s
and restart with STRIPE_WEBHOOK_SECRET set to the whsec_... it prints
(a comma list keeps this dev secret too: STRIPE_WEBHOOK_SECRET=whsec_new,%s).

Or send a fixture signed with the dev secret:
  go run ./services/launchready/cmd/launchready send ../shared/fixtures/stripe/stripe-sync-engine/subscription_created.json

ready
`, webhookURL, grpcShown, consoleURL, statusPageShown, broker.banner(), config.MaskURL(dbURL), webhookSecret, apiTokenOf(tokens), strings.Join(ops, ", "),
		strings.TrimPrefix(webhookURL, "http://"), webhookSecret)

	if err := <-launched; err != nil {
		return err
	}
	fmt.Fprintln(stdout, "stopped")
	return nil
}

// DefaultStatusPageAddr is where `launchready dev` serves the customer
// status page, as docker compose does.
const DefaultStatusPageAddr = "127.0.0.1:8095"

// withEnv is env with more's entries added.
func withEnv(env, more map[string]string) map[string]string {
	maps.Copy(env, more)
	return env
}

// apiTokenOf shows the first token of a STATUS_API_TOKENS value.
func apiTokenOf(tokens string) string {
	first := strings.Split(tokens, ",")[0]
	if i := strings.Index(first, "="); i >= 0 {
		first = first[i+1:]
	}
	if i := strings.LastIndex(first, ":"); i >= 0 {
		first = first[:i]
	}
	return first
}

// devSecrets are made once per checkout and kept under .data/, so the
// secret a user configured in `stripe listen` or a client stays valid across
// restarts.
type devSecrets struct {
	WebhookSecret string `json:"webhook_secret"`
	APIToken      string `json:"api_token"`
	// StatusLinkSecret signs status page links (STATUS_LINK_SECRETS).
	StatusLinkSecret string `json:"status_link_secret"`
}

func loadDevSecrets(path string) (devSecrets, error) {
	var s devSecrets
	b, err := os.ReadFile(path) // #nosec G304 -- the dev secrets file in the data directory launchready dev owns
	switch {
	case err == nil && json.Unmarshal(b, &s) == nil && s.WebhookSecret != "" && s.APIToken != "":
		if s.StatusLinkSecret != "" {
			return s, nil
		}
		// A file from before the status page: its other secrets stay.
		s.StatusLinkSecret = randomHex(32)
	default:
		s = devSecrets{WebhookSecret: "whsec_" + randomHex(24), APIToken: "lr_dev_" + randomHex(16), StatusLinkSecret: randomHex(32)}
	}
	b, _ = json.MarshalIndent(s, "", "  ") // #nosec G117 -- the dev secrets file is this struct, written with mode 0600
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return s, fmt.Errorf("save dev secrets: %w", err)
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func runIngress(ctx context.Context, getenv config.Getenv, log *slog.Logger, ready func(map[string]string)) error {
	cfg, err := ingress.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Ready = log, ready
	return ingress.Run(ctx, cfg)
}

func runBillingState(ctx context.Context, getenv config.Getenv, log *slog.Logger, ready func(map[string]string)) error {
	cfg, err := billingstate.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Ready = log, ready
	return billingstate.Run(ctx, cfg)
}

func runCRMSync(ctx context.Context, getenv config.Getenv, log *slog.Logger, ready func(map[string]string)) error {
	cfg, err := crmsync.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Ready = log, ready
	return crmsync.Run(ctx, cfg)
}

func runSupportNotify(ctx context.Context, getenv config.Getenv, log *slog.Logger, ready func(map[string]string)) error {
	cfg, err := supportnotify.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Ready = log, ready
	return supportnotify.Run(ctx, cfg)
}

func runConsole(ctx context.Context, getenv config.Getenv, log *slog.Logger, ready func(map[string]string)) error {
	cfg, err := console.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.Ready = log, ready
	return console.Run(ctx, cfg)
}
