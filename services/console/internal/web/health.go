package web

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/service"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/holdings"
	"github.com/launchready/launchready/services/console/internal/webhookrates"
)

// overviewView is what the overview shows of the whole system; each part
// that could not be read says why instead.
type overviewView struct {
	Replicas     []replicaView
	OpsError     string
	Consumers    []consumerView
	ConsumersErr string
	DeadLetters  []deadLetterCount
	DeadErr      string
	// SmokeLetters are the dead letters of smoke tests' events, left out
	// of DeadLetters' counts.
	SmokeLetters int
	Backfill     *backfillView
	BackfillNote string
	Smoke        []smokeView
	SmokeAt      time.Time
	SmokeNote    string
	Webhooks     *webhooksView
	WebhooksNote string
	Drift        *driftView
	DriftNote    string
	Doctor       *doctorView
	DoctorNote   string
}

// driftView is billing-state's last drift check (billing.drift_checks).
type driftView struct {
	Outcome               string
	Customers             int
	Subscriptions         int
	Error                 string
	StartedAt, FinishedAt time.Time
}

// doctorView is the last report of `launchready doctor`
// (readiness.doctor_reports).
type doctorView struct {
	ID               int64
	At               time.Time
	Pass, Warn, Fail int
	Failing          []string
}

type replicaView struct {
	Target  string
	Ready   bool
	Health  string
	Build   service.RunningBuild
	BuildEr string
}

type consumerView struct {
	Name                          string
	Pending, AckPending, Redelive uint64
	Missing                       bool
}

type deadLetterCount struct {
	Consumer string
	Count    int
}

type backfillView struct {
	ID                     int64
	Types                  string
	WindowStart, WindowEnd time.Time
	Read, Published        int64
	StartedAt, CompletedAt time.Time
}

type smokeView struct {
	Channel   string
	OK        bool
	LatencyMS int64
	Detail    string
}

// consumers are the durables on BILLING_EVENTS.
var consumers = []string{holdings.BillingState, holdings.CRMSync, holdings.SupportDesk, holdings.SupportAlerts}

// readOverview gathers the overview's parts, each bounded by its own
// deadline so one slow dependency leaves the rest of the page.
func (s *Server) readOverview(ctx context.Context) overviewView {
	var v overviewView
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { v.Replicas, v.OpsError = s.readReplicas(ctx) })
	if s.opts.JS != nil {
		wg.Go(func() { v.Consumers, v.ConsumersErr = s.readConsumers(ctx) })
		wg.Go(func() { v.DeadLetters, v.SmokeLetters, v.DeadErr = s.countDeadLetters(ctx) })
	}
	if s.opts.Reader != nil {
		wg.Go(func() { v.Backfill, v.BackfillNote = s.lastBackfill(ctx) })
		wg.Go(func() { v.Smoke, v.SmokeAt, v.SmokeNote = s.lastSmoke(ctx) })
		wg.Go(func() { v.Drift, v.DriftNote = s.lastDriftCheck(ctx) })
		wg.Go(func() { v.Doctor, v.DoctorNote = s.lastDoctorReport(ctx) })
	}
	if s.opts.Webhooks != nil {
		wg.Go(func() { v.Webhooks, v.WebhooksNote = s.webhookFigures(ctx) })
	} else {
		v.WebhooksNote = "Neither CONSOLE_PROMETHEUS_URL nor CONSOLE_OPS_TARGETS is set."
	}
	wg.Wait()
	return v
}

// readReplicas asks every ops listener of OpsTargets for /readyz and the
// build it runs (lr_build_info, as `launchready doctor` reads it).
func (s *Server) readReplicas(ctx context.Context) ([]replicaView, string) {
	if len(s.opts.OpsTargets) == 0 {
		return nil, "CONSOLE_OPS_TARGETS is not set (the services' ops listeners, host:port)."
	}
	hc := &http.Client{Timeout: 3 * time.Second}
	out := make([]replicaView, len(s.opts.OpsTargets))
	var wg sync.WaitGroup
	for i, t := range s.opts.OpsTargets {
		wg.Go(func() {
			r := replicaView{Target: t}
			if _, _, err := net.SplitHostPort(t); err != nil {
				r.Health = "not host:port"
				out[i] = r
				return
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t+"/readyz", nil)
			resp, err := hc.Do(req)
			switch {
			case err != nil:
				r.Health = "unreachable"
			case resp.StatusCode == http.StatusOK:
				r.Ready, r.Health = true, "ready"
			default:
				r.Health = "not ready (" + resp.Status + ")"
			}
			if resp != nil {
				_ = resp.Body.Close()
			}
			if r.Build, err = service.ScrapeBuild(ctx, hc, "http://"+t+"/metrics"); err != nil {
				r.BuildEr = "no build information"
			}
			out[i] = r
		})
	}
	wg.Wait()
	return out, ""
}

// readConsumers reads each durable's lag on BILLING_EVENTS.
func (s *Server) readConsumers(ctx context.Context) ([]consumerView, string) {
	var out []consumerView
	for _, name := range consumers {
		c, err := s.opts.JS.Consumer(ctx, bus.StreamEvents, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			out = append(out, consumerView{Name: name, Missing: true})
			continue
		}
		if err != nil {
			return out, "NATS did not answer: " + err.Error()
		}
		info := c.CachedInfo()
		out = append(out, consumerView{Name: name, Pending: info.NumPending, AckPending: uint64(max(0, info.NumAckPending)), // #nosec G115 -- clamped at zero first
			Redelive: uint64(max(0, info.NumRedelivered))}) // #nosec G115 -- clamped at zero first
	}
	return out, ""
}

// countDeadLetters counts BILLING_DLQ's letters by consumer, leaving out
// (and counting apart) those of a smoke test's events.
func (s *Server) countDeadLetters(ctx context.Context) ([]deadLetterCount, int, string) {
	dls, err := bus.ListDeadLetters(ctx, s.opts.JS, "", 10000)
	if err != nil {
		return nil, 0, "NATS did not answer: " + err.Error()
	}
	n := map[string]int{}
	smoke := 0
	for _, dl := range dls {
		var ev billingv1.BillingEvent
		if proto.Unmarshal(dl.Data, &ev) == nil && ev.GetSmokeRun() != "" {
			smoke++
			continue
		}
		n[dl.Consumer]++
	}
	out := make([]deadLetterCount, 0, len(n))
	for c, k := range n {
		out = append(out, deadLetterCount{Consumer: c, Count: k})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Consumer < out[j].Consumer })
	return out, smoke, ""
}

// exists reports whether a table is there, for tables another tool
// creates on its first run. It reads the catalogue, which shows a table
// the reader may not read (where to_regclass would say it is absent).
func (s *Server) exists(ctx context.Context, schema, table string) (bool, error) {
	var ok bool
	err := s.opts.Reader.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2)`, schema, table).Scan(&ok)
	return ok, err
}

func (s *Server) lastBackfill(ctx context.Context) (*backfillView, string) {
	if ok, err := s.exists(ctx, "backfill", "runs"); err != nil || !ok {
		return nil, "never run"
	}
	var b backfillView
	var done *time.Time
	err := s.opts.Reader.QueryRow(ctx, `SELECT id, types, window_start, window_end, events_read, published, started_at, completed_at
		FROM backfill.runs ORDER BY id DESC LIMIT 1`).Scan(&b.ID, &b.Types, &b.WindowStart, &b.WindowEnd, &b.Read, &b.Published, &b.StartedAt, &done)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, "never run"
	case pg.IsInsufficientPrivilege(err):
		return nil, "not readable: launchready_console_ro has no SELECT on backfill"
	case err != nil:
		s.opts.Log.WarnContext(ctx, "read the last backfill", "error", err.Error())
		return nil, "could not be read"
	}
	if done != nil {
		b.CompletedAt = *done
	}
	return &b, ""
}

// lastSmoke reads the newest run of `launchready smoke`, when its table
// exists.
func (s *Server) lastSmoke(ctx context.Context) ([]smokeView, time.Time, string) {
	if ok, err := s.exists(ctx, "readiness", "smoke_results"); err != nil || !ok {
		return nil, time.Time{}, "never run"
	}
	rows, err := s.opts.Reader.Query(ctx, `SELECT channel, ok, latency_ms, detail, finished_at FROM readiness.smoke_results
		WHERE run_id = (SELECT run_id FROM readiness.smoke_results ORDER BY finished_at DESC LIMIT 1) ORDER BY channel`)
	if err != nil {
		if pg.IsInsufficientPrivilege(err) {
			return nil, time.Time{}, "not readable: launchready_console_ro has no SELECT on readiness"
		}
		s.opts.Log.WarnContext(ctx, "read the last smoke test", "error", err.Error())
		return nil, time.Time{}, "could not be read"
	}
	var out []smokeView
	var at, last time.Time
	var v smokeView
	_, err = pgx.ForEachRow(rows, []any{&v.Channel, &v.OK, &v.LatencyMS, &v.Detail, &at}, func() error {
		out = append(out, v)
		if at.After(last) {
			last = at
		}
		return nil
	})
	if pg.IsInsufficientPrivilege(err) {
		return nil, time.Time{}, "not readable: launchready_console_ro has no SELECT on readiness"
	}
	if err != nil {
		s.opts.Log.WarnContext(ctx, "read the last smoke test", "error", err.Error())
		return nil, time.Time{}, "could not be read"
	}
	if len(out) == 0 {
		return nil, time.Time{}, "never run"
	}
	return out, last, ""
}

// webhookFigures reads the webhook failure rate and the week's duplicates.
// A partial answer (one of Prometheus' two queries failed) is shown with
// the note.
func (s *Server) webhookFigures(ctx context.Context) (*webhooksView, string) {
	f, err := s.opts.Webhooks.Figures(ctx)
	if err == nil {
		return viewWebhooks(f), ""
	}
	s.opts.Log.WarnContext(ctx, "read the webhook figures", "error", err.Error())
	if f.From == "sampled" {
		return nil, "Not sampled yet: " + err.Error() + "."
	}
	return viewWebhooks(f), "Prometheus did not answer every query; the error is in the console's log."
}

// webhooksView is the overview's webhook figures, put in words.
type webhooksView struct {
	// From says where the figures come from.
	From string
	// Rate is the failure rate ("3.00 %"), Counts what it is of (sampled
	// only), RateWindow the window it covers.
	Rate, Counts, RateWindow string
	Duplicates               []webhookrates.Stage
	DuplicatesTotal          string
	DuplicatesWindow         string
}

// sampleSlack is how far short of its full length a sampled window may be
// and still be called whole: about one sampling interval.
const sampleSlack = time.Minute

func viewWebhooks(f webhookrates.Figures) *webhooksView {
	v := &webhooksView{Duplicates: f.Duplicates, DuplicatesTotal: count(f.DuplicatesTotal),
		RateWindow: "last 15 min", DuplicatesWindow: "last 7 days"}
	switch f.From {
	case "prometheus":
		v.From = "Prometheus: " + webhookrates.FailureRatioSeries + " and " + webhookrates.DuplicatesSeries + ", as the alerts see them."
	default:
		v.From = "Sampled by the console from the ops listeners' counters (CONSOLE_PROMETHEUS_URL is not set): only what happened while it ran."
		v.Counts = count(f.Failed) + " of " + count(f.Requests) + " requests"
		if f.Partial(f.FailureSince, webhookrates.FailureWindow, sampleSlack) {
			v.RateWindow = since(f.FailureSince, f.At)
		}
		if f.Partial(f.DuplicatesSince, webhookrates.DuplicateWindow, sampleSlack) {
			v.DuplicatesWindow = since(f.DuplicatesSince, f.At)
		}
	}
	if f.FailureKnown {
		v.Rate = fmt.Sprintf("%.2f %%", 100*f.FailureRatio)
	}
	return v
}

// count prints a counter's increase, which Prometheus extrapolates to a
// fraction, as a whole number.
func count(n float64) string { return strconv.FormatFloat(math.Round(n), 'f', 0, 64) }

// since says where a window that has not yet reached its length starts:
// "since 14:02 UTC, 6 min".
func since(from, now time.Time) string {
	d := now.Sub(from)
	var long string
	switch {
	case d < time.Minute:
		long = "under a minute"
	case d < time.Hour:
		long = strconv.Itoa(int(d.Minutes())) + " min"
	case d < 48*time.Hour:
		long = strconv.Itoa(int(d.Hours())) + " h"
	default:
		long = strconv.Itoa(int(d.Hours()/24)) + " days"
	}
	at := from.UTC().Format("15:04 UTC")
	if from.UTC().YearDay() != now.UTC().YearDay() || from.Year() != now.Year() {
		at = from.UTC().Format("2006-01-02 15:04 UTC")
	}
	return "since " + at + ", " + long
}

// lastDriftCheck reads billing-state's newest drift check.
func (s *Server) lastDriftCheck(ctx context.Context) (*driftView, string) {
	if ok, err := s.exists(ctx, "billing", "drift_checks"); err != nil || !ok {
		return nil, "never run"
	}
	var d driftView
	err := s.opts.Reader.QueryRow(ctx, `SELECT outcome, customers, subscriptions, error, started_at, finished_at
		FROM billing.drift_checks ORDER BY id DESC LIMIT 1`).Scan(&d.Outcome, &d.Customers, &d.Subscriptions, &d.Error, &d.StartedAt, &d.FinishedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, "never run"
	case pg.IsInsufficientPrivilege(err):
		return nil, "not readable: launchready_console_ro has no SELECT on billing"
	case err != nil:
		s.opts.Log.WarnContext(ctx, "read the last drift check", "error", err.Error())
		return nil, "could not be read"
	}
	return &d, ""
}

// lastDoctorReport reads the newest report of `launchready doctor`: its
// counts by status and the names of the checks that failed.
func (s *Server) lastDoctorReport(ctx context.Context) (*doctorView, string) {
	if ok, err := s.exists(ctx, "readiness", "doctor_reports"); err != nil || !ok {
		return nil, "never run"
	}
	var d doctorView
	err := s.opts.Reader.QueryRow(ctx, `SELECT r.id, r.created_at,
			count(*) FILTER (WHERE c->>'status' = 'pass'), count(*) FILTER (WHERE c->>'status' = 'warn'),
			count(*) FILTER (WHERE c->>'status' = 'fail'),
			coalesce(array_agg(c->>'name' ORDER BY c->>'name') FILTER (WHERE c->>'status' = 'fail'), '{}')
		FROM (SELECT id, created_at, report FROM readiness.doctor_reports ORDER BY id DESC LIMIT 1) r
		LEFT JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(r.report->'checks') WHEN 'array' THEN r.report->'checks' ELSE '[]' END) c ON true
		GROUP BY r.id, r.created_at`).Scan(&d.ID, &d.At, &d.Pass, &d.Warn, &d.Fail, &d.Failing)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, "never run"
	case pg.IsInsufficientPrivilege(err):
		return nil, "not readable: launchready_console_ro has no SELECT on readiness"
	case err != nil:
		s.opts.Log.WarnContext(ctx, "read the doctor's last report", "error", err.Error())
		return nil, "could not be read"
	}
	return &d, ""
}
