package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/pg"
	lrservice "github.com/launchready/launchready/pkg/service"
	billingstate "github.com/launchready/launchready/services/billing-state"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	"github.com/launchready/launchready/services/launchready/internal/natscreds"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

// durables are the consumers that must exist on BILLING_EVENTS.
var durables = []string{billingstate.Durable, crmsync.Durable, supportnotify.TicketsDurable, supportnotify.AlertsDurable}

// checkNATS connects as the read-only user (NATS_URL, else the dev server) and compares the streams and
// durable consumers with what NATS_STREAM_REPLICAS asks for; it reports
// each consumer's lag (DOCTOR_MAX_LAG, default 10000, warns above).
func (d *Doctor) checkNATS(ctx context.Context) ([]Check, error) {
	cc := natscreds.Conn(d.env, d.DataDir, natsauth.Reader)
	nc, js, err := bus.Connect(ctx, cc, "launchready-doctor", logging.Discard())
	if err != nil {
		return []Check{fail("nats", "cannot connect as "+cc.User+": "+oneLine(err.Error()),
			"check NATS_URL and the reader user's credentials (NATS_USER=reader, NATS_PASSWORD or NATS_CREDS)")}, nil
	}
	defer nc.Close()
	want := bus.StreamConfigFromEnv(d.env)
	var out []Check
	for _, sc := range bus.StreamConfigs(want) {
		name := "nats/stream " + sc.Name
		st, err := js.Stream(ctx, sc.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			out = append(out, fail(name, "missing", "run the provisioning step: `launchready provision` (the k8s Job, the compose one-off)"))
			continue
		}
		if err != nil {
			out = append(out, fail(name, oneLine(err.Error()), "check the reader user's permissions"))
			continue
		}
		info := st.CachedInfo()
		have, wantR := info.Config.Replicas, sc.Replicas
		running := 1
		if info.Cluster != nil {
			running = 1 + len(info.Cluster.Replicas)
		}
		switch {
		case have != wantR:
			out = append(out, fail(name, fmt.Sprintf("%d replica(s) where NATS_STREAM_REPLICAS asks for %d", have, wantR),
				fmt.Sprintf("run `launchready provision` with NATS_STREAM_REPLICAS=%d against a cluster of at least %d servers", wantR, wantR)))
		case running < wantR:
			out = append(out, warn(name, fmt.Sprintf("%d replicas configured, %d reachable", have, running), "a NATS server is down: restart it before the next one fails"))
		default:
			out = append(out, pass(name, fmt.Sprintf("%d replica(s), %d messages", have, info.State.Msgs)))
		}
	}
	maxLag := uint64(max(0, d.env.Int("DOCTOR_MAX_LAG", 10000))) // #nosec G115 -- clamped at zero first

	for _, dur := range durables {
		name := "nats/consumer " + dur
		c, err := js.Consumer(ctx, bus.StreamEvents, dur)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			out = append(out, fail(name, "missing: the service has never started, or its durable was deleted", "start the service; it creates its own durable"))
			continue
		}
		if err != nil {
			out = append(out, fail(name, oneLine(err.Error()), "check the reader user's permissions"))
			continue
		}
		info := c.CachedInfo()
		lag := info.NumPending + uint64(max(0, info.NumAckPending)) // #nosec G115 -- clamped at zero first
		detail := fmt.Sprintf("%d waiting, %d in flight, %d redelivered", info.NumPending, info.NumAckPending, info.NumRedelivered)
		if lag > maxLag {
			out = append(out, warn(name, detail, "the consumer is behind: look at its /readyz, logs and dead letters"))
			continue
		}
		out = append(out, pass(name, detail))
	}
	return out, nil
}

// checkBuilds reads lr_build_info from every replica of every service
// named in DOCTOR_OPS_TARGETS (host:port of each service's ops listener,
// comma separated; a name resolving to several addresses, such as a
// headless Service, is every replica) and fails when a service's replicas
// run different builds.
func (d *Doctor) checkBuilds(ctx context.Context) ([]Check, error) {
	targets := d.env.List("DOCTOR_OPS_TARGETS")
	if len(targets) == 0 {
		return nil, skip("DOCTOR_OPS_TARGETS is not set (the ops listeners, host:port, of the services)")
	}
	revs := map[string]map[string][]string{} // service → revision → replicas
	var out []Check
	for _, t := range targets {
		host, port, err := net.SplitHostPort(t)
		if err != nil {
			out = append(out, fail("builds "+t, "not host:port", "fix DOCTOR_OPS_TARGETS"))
			continue
		}
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			out = append(out, fail("builds "+t, oneLine(err.Error()), "fix DOCTOR_OPS_TARGETS"))
			continue
		}
		for _, a := range addrs {
			replica := net.JoinHostPort(a, port)
			svc, rev, err := d.scrapeBuild(ctx, "http://"+replica+"/metrics")
			if err != nil {
				out = append(out, fail("builds "+replica, oneLine(err.Error()), "the ops listener must be reachable from where the doctor runs"))
				continue
			}
			if revs[svc] == nil {
				revs[svc] = map[string][]string{}
			}
			revs[svc][rev] = append(revs[svc][rev], replica)
		}
	}
	services := make([]string, 0, len(revs))
	for s := range revs {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, s := range services {
		byRev := revs[s]
		if len(byRev) == 1 {
			for rev, reps := range byRev {
				out = append(out, pass("builds "+s, fmt.Sprintf("%d replica(s), all on %s", len(reps), short(rev))))
			}
			continue
		}
		var parts []string
		for rev, reps := range byRev {
			parts = append(parts, fmt.Sprintf("%s on %s", strings.Join(reps, ", "), short(rev)))
		}
		sort.Strings(parts)
		out = append(out, fail("builds "+s, "replicas run different builds: "+strings.Join(parts, "; "),
			"finish or roll back the deploy (kubectl rollout status)"))
	}
	return out, nil
}

func (d *Doctor) scrapeBuild(ctx context.Context, url string) (service, revision string, err error) {
	b, err := lrservice.ScrapeBuild(ctx, d.HTTP, url)
	return b.Service, b.Revision, err
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// schemas are the services' Postgres schemas and their migrations.
var schemas = []func() (string, fs.FS){billingstate.Schema, crmsync.Schema, supportnotify.Schema}

// checkMigrations compares each service's embedded migrations with those
// its schema records as applied. A service migrates at start, so a pending
// migration means it has not started on this build, or its migration failed.
func (d *Doctor) checkMigrations(ctx context.Context) ([]Check, error) {
	url := d.env.Lookup("DATABASE_URL")
	if url == "" {
		return nil, skip("DATABASE_URL is not set")
	}
	pool, err := pg.Open(ctx, url, pg.WithMaxConns(1), pg.WithApplicationName("launchready-doctor"))
	if err != nil {
		return []Check{fail("migrations", "cannot connect: "+oneLine(err.Error()), "check DATABASE_URL")}, nil
	}
	defer pool.Close()
	var out []Check
	for _, s := range schemas {
		schema, files := s()
		name := "migrations " + schema
		pending, err := pg.Pending(ctx, pool, schema, files)
		switch {
		case err != nil:
			out = append(out, fail(name, oneLine(err.Error()), "check DATABASE_URL and the role's rights"))
		case len(pending) > 0:
			out = append(out, fail(name, "not applied: "+strings.Join(pending, ", "),
				"start the service on this build (it migrates at start) and read its log if it fails"))
		default:
			out = append(out, pass(name, "every migration of this build is applied"))
		}
	}
	return out, nil
}
