// Package backfill is `launchready backfill`: it reads what webhooks missed
// from Stripe's API and publishes it into BILLING_EVENTS, the stream
// webhooks feed, as the NATS user backfill. Each event keeps its id as
// Nats-Msg-Id, so the stream and every consumer's processed_events
// deduplicate it against the webhook that did arrive and against earlier
// runs: a second run changes nothing.
//
// Stripe lists events newest first, but the consumers must see a
// problem's start before its end, as webhooks would have brought them. A
// run therefore lists its whole window into a spool in the backfill
// schema, recording with each page the part of the window it has fully
// read, and then publishes the spool oldest first, recording each event as
// JetStream acknowledges it. An interrupted run is continued by the next
// invocation before the new window is read: a run stopped while listing
// lists the rest of its window, older events included, then publishes; a
// run stopped while publishing publishes what is left. A run without
// --since starts where the last complete run over the same types ended.
package backfill

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/services/launchready/internal/cli"
	"github.com/launchready/launchready/services/launchready/internal/natscreds"
)

const usage = `usage: launchready backfill [--since 72h|TIME] [--until 1h|TIME] [--types T1,T2] [--dry-run]
       launchready backfill --objects [--since TIME] [--dry-run]

Reads GET /v1/events for a window and publishes every event into the
stream webhooks feed, with the event id as Nats-Msg-Id: the consumers
apply each event once, whether its webhook arrived or not, and a second
run changes nothing. The window is read whole (Stripe lists newest first)
and published oldest first, as webhooks would have come. Interrupted runs
are continued first, from where they stopped. Stripe keeps events for 30
days.

--objects is for older history: it lists customers, subscriptions (all
statuses, canceled ones included), invoices, checkout sessions, charges,
refunds and disputes, and publishes each as a snapshot that billing-state
applies as the newest truth about that object. Snapshots update status and
the CRM; they open no ticket and send no alert. With --since it lists only
objects created since then.

--since and --until take a duration before now (72h) or an RFC 3339 time.
Without --since the run starts where the last complete run (over the same
--types) ended. --until defaults to now.

Needs STRIPE_API_KEY (a restricted key that can read events is enough),
DATABASE_URL for the runs' progress (schema backfill) and NATS as the user
backfill (NATS_URL and its credentials, else the nkey "launchready dev"
keeps in <data>/nats/backfill.nk). STRIPE_API_RATE caps requests a second
(default 20); STRIPE_LIVEMODE=test refuses a live key. Exits 1 on failure,
2 on bad usage.

`

// Main runs the command; args follow the word "backfill".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := cli.FlagSet("backfill", usage, stderr)
	env := config.New(getenv)
	since := fs.String("since", "", "start of the window: a duration before now (72h) or an RFC 3339 time")
	until := fs.String("until", "", "end of the window: a duration before now or an RFC 3339 time (default now)")
	types := fs.String("types", "", "only these event types, comma-separated (at most 20)")
	dryRun := fs.Bool("dry-run", false, "count the events that would be published, by type; publish and record nothing")
	objects := fs.Bool("objects", false, "publish snapshots of Stripe's objects (older history) instead of events")
	dataDir := fs.String("data", ".data", "the dev data directory holding nats/backfill.nk")
	if code, ok := cli.ParseFlagsOnly(fs, args); !ok {
		return code
	}
	now := time.Now()
	opts := EventOptions{DryRun: *dryRun}
	var err error
	if opts.Since, err = ParseTime(*since, now); err != nil {
		fmt.Fprintf(stderr, "launchready backfill: --since: %v\n", err)
		return 2
	}
	if opts.Until, err = ParseTime(*until, now); err != nil {
		fmt.Fprintf(stderr, "launchready backfill: --until: %v\n", err)
		return 2
	}
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			opts.Types = append(opts.Types, t)
		}
	}
	if *objects && (*until != "" || len(opts.Types) > 0) {
		fmt.Fprintln(stderr, "launchready backfill: --objects takes --since and --dry-run only")
		return 2
	}
	if len(opts.Types) > stripeapi.MaxTypes {
		fmt.Fprintf(stderr, "launchready backfill: --types: %d types, Stripe filters on at most %d\n", len(opts.Types), stripeapi.MaxTypes)
		return 2
	}
	apiCfg := stripeapi.ConfigFromEnv(env)
	dbURL := env.String("DATABASE_URL", pg.DefaultURL)
	conn := natscreds.Conn(env, *dataDir, natsauth.Backfill)
	if err := env.Err(); err != nil {
		fmt.Fprintf(stderr, "launchready backfill: %v\n", err)
		return 2
	}
	if !apiCfg.Configured() {
		fmt.Fprintln(stderr, "launchready backfill: STRIPE_API_KEY is not set: it needs a Stripe secret key, or a restricted key that can read events (and, for --objects, customers, subscriptions, invoices, checkout sessions, charges, refunds and disputes)")
		return 2
	}
	api, err := stripeapi.New(apiCfg)
	if err != nil {
		fmt.Fprintf(stderr, "launchready backfill: %v\n", err)
		return 2
	}
	logs, err := logging.FromEnv(stderr, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "launchready backfill: %v\n", err)
		return 2
	}
	log := logs.Logger("launchready-backfill")

	b := &Backfiller{API: api, Log: log}
	var pm *meter
	if logging.IsTerminal(stderr) {
		pm = &meter{w: stderr}
		b.Progress = pm.show
	}

	// The database holds the runs; a dry run uses it only to find where
	// the last run ended, and only when --since is not given.
	if !*objects && (!opts.DryRun || opts.Since.IsZero()) {
		pool, err := pg.Open(ctx, dbURL, pg.WithMaxConns(4), pg.WithApplicationName("launchready-backfill"))
		if err != nil {
			fmt.Fprintf(stderr, "launchready backfill: database: %v\n", err)
			return 1
		}
		defer pool.Close()
		if err := Migrate(ctx, pool); err != nil {
			fmt.Fprintf(stderr, "launchready backfill: database: %v\n", err)
			return 1
		}
		b.store = &store{pool: pool}
	}
	if !opts.DryRun {
		if b.store != nil {
			release, err := b.store.lock(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "launchready backfill: %v\n", err)
				return 1
			}
			defer release()
		}
		nc, js, err := bus.Connect(ctx, conn, "launchready-backfill", log)
		if err != nil {
			fmt.Fprintf(stderr, "launchready backfill: nats: %v\n", err)
			return 1
		}
		defer func() { _ = nc.Drain() }()
		b.Pub = bus.NewPublisher(js, nil)
	}

	var p Progress
	noun := "events"
	if *objects {
		noun = "objects"
		p, err = b.Objects(ctx, ObjectOptions{Since: opts.Since, DryRun: opts.DryRun})
	} else {
		p, err = b.Events(ctx, opts)
	}
	if pm != nil {
		pm.done()
	}
	summary(stdout, p, noun, opts.DryRun, api)
	if err != nil {
		fmt.Fprintf(stderr, "launchready backfill: %v\n", err)
		if !opts.DryRun && !*objects {
			fmt.Fprintln(stderr, "launchready backfill: what was read is recorded; run it again to continue from there")
		}
		return 1
	}
	return 0
}

// ParseTime reads a flag's time: empty (zero), a duration before now, or
// an RFC 3339 time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration before now must be positive", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (72h) nor an RFC 3339 time (2026-01-02T15:04:05Z)", s)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("%q is in the future", s)
	}
	return t, nil
}

func summary(w io.Writer, p Progress, noun string, dryRun bool, api *stripeapi.Client) {
	took := time.Since(p.Started).Round(time.Millisecond)
	if dryRun {
		fmt.Fprintf(w, "dry run: %d %s would be published (nothing was published) in %s\n", p.Read, noun, took)
	} else {
		if p.Resumed > 0 {
			fmt.Fprintf(w, "continued %d interrupted run(s)\n", p.Resumed)
		}
		fmt.Fprintf(w, "read %d %s in %s: %d published, %d already known, %d skipped\n", p.Read, noun, took, p.Published, p.Known, p.Skipped)
	}
	fmt.Fprintf(w, "stripe: %d requests (at most %d/s), %d rate-limited answers waited out\n", api.Requests(), api.Rate(), api.RateLimited())
	if len(p.ByType) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\t"+strings.ToUpper(noun))
	for _, t := range slices.Sorted(maps.Keys(p.ByType)) {
		fmt.Fprintf(tw, "%s\t%d\n", t, p.ByType[t])
	}
	_ = tw.Flush()
}

// meter redraws one progress line on a terminal, at most a few times a
// second.
type meter struct {
	w    io.Writer
	mu   sync.Mutex
	last time.Time
	any  bool
}

func (m *meter) show(p Progress) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.last) < 200*time.Millisecond {
		return
	}
	m.last, m.any = time.Now(), true
	fmt.Fprintf(m.w, "\r\033[Kread %d · published %d · already known %d · %.0f events/s", p.Read, p.Published, p.Known, p.Rate())
}

func (m *meter) done() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.any {
		fmt.Fprint(m.w, "\r\033[K")
	}
}
