package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
)

// result is one run's figures.
type result struct {
	startedAt  time.Time
	build      string
	published  time.Duration
	startup    time.Duration // crm-sync restarted until /readyz
	took       time.Duration // crm-sync restarted until every event was recorded
	processed  int
	deadLetter int
	contacts   int
	deals      int
	wrong      []string // customers whose CRM state is not their final one
	requests   int
	byPath     map[string]int
	tooMany    int
	maxWindow  int
	cpu        float64 // crm-sync's CPU seconds over the catch-up
	loadAvg    string
}

// correct: every customer in its final state, once, and nothing
// dead-lettered.
func (r *result) correct() bool { return r.deadLetter == 0 && len(r.wrong) == 0 }

func (r *result) met() bool { return r.correct() && r.took <= 60*time.Second }

func run(ctx context.Context, t *programT, o options) (*result, error) {
	r := &result{startedAt: time.Now().UTC(), build: gitRev(), loadAvg: loadAvg()}
	env := map[string]string{
		"CRM_RATE_LIMIT":  fmt.Sprint(o.limit),
		"CRM_RATE_WINDOW": o.window.String(),
	}
	for _, kv := range strings.Split(o.env, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	fmt.Fprintf(os.Stderr, "crmbench: building and starting nats-server and crm-sync\n")
	s := harness.StartStack(t, harness.StackOptions{
		Services:   []string{"crm-sync"},
		ServiceEnv: map[string]map[string]string{"crm-sync": env},
		LogLevel:   "warn",
	})
	s.HubSpot.SetRateLimit(o.limit, o.window)
	s.HubSpot.Server.SetLatency(o.latency)
	cs := s.Procs["crm-sync"]
	cs.Stop()

	evs, err := backlog(o.events, o.customers)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "crmbench: publishing %d events over %d customers with crm-sync stopped\n", len(evs), o.customers)
	began := time.Now()
	if err := publish(ctx, s, evs, o.publishers); err != nil {
		return nil, err
	}
	r.published = time.Since(began)

	fmt.Fprintf(os.Stderr, "crmbench: starting crm-sync on the backlog\n")
	began = time.Now()
	if err := cs.Resume(); err != nil {
		return nil, err
	}
	cpu0 := harness.CPUSeconds(cs.Pid())
	if err := s.ReadyErr("crm-sync", time.Minute); err != nil {
		return nil, err
	}
	r.startup = time.Since(began)
	last := time.Now()
	if !testkit.Poll(o.timeout, 250*time.Millisecond, func() bool {
		r.processed = s.Count(`SELECT count(*) FROM crm.processed_events`)
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "  %5.1fs  %d of %d events synced, %d HubSpot requests\n",
				time.Since(began).Seconds(), r.processed, len(evs), len(s.HubSpot.Requests()))
		}
		return r.processed >= len(evs)
	}) {
		logs := filepath.Join(t.TempDir(), "crm-sync.log")
		if f, err := os.CreateTemp("", "crmbench-crm-sync-*.log"); err == nil {
			_, _ = f.WriteString(cs.Output())
			_ = f.Close()
			logs = f.Name()
		}
		return nil, fmt.Errorf("crm-sync synced %d of %d events in %s; its log is in %s", r.processed, len(evs), o.timeout, logs)
	}
	r.took = time.Since(began)
	r.cpu = harness.CPUSeconds(cs.Pid()) - cpu0

	dls, err := bus.ListDeadLetters(ctx, s.JS, "crm-sync", 1000)
	if err != nil {
		return nil, err
	}
	r.deadLetter = len(dls)
	r.check(s, o)
	return r, nil
}

// check compares what the fake holds with each customer's final state.
func (r *result) check(s *harness.Stack, o options) {
	contacts := map[string]map[string]string{}
	contactID := map[string]string{}
	for _, c := range s.HubSpot.Contacts() {
		cus := c.Properties["stripe_customer_id"]
		if _, twice := contacts[cus]; twice {
			r.wrong = append(r.wrong, cus+": two contacts")
		}
		contacts[cus], contactID[cus] = c.Properties, c.ID
	}
	r.contacts = len(contacts)
	deals := s.HubSpot.Deals()
	r.deals = len(deals)
	dealOf := map[string]string{}
	for _, d := range deals {
		dealOf[d.Properties["stripe_subscription_id"]] = d.ID
	}
	for i := range o.customers {
		cus, sub := customerID(i), subscriptionID(i)
		c := contacts[cus]
		switch {
		case c == nil:
			r.wrong = append(r.wrong, cus+": no contact")
		case c["billing_status"] != "active" || c["email"] != email(i) || c["plan"] != plan(i) || c["mrr"] != "29.00":
			r.wrong = append(r.wrong, fmt.Sprintf("%s: contact %v", cus, c))
		case dealOf[sub] == "":
			r.wrong = append(r.wrong, cus+": no deal")
		default:
			if as := s.HubSpot.Associated(dealOf[sub]); len(as) != 1 || as[0] != contactID[cus] {
				r.wrong = append(r.wrong, fmt.Sprintf("%s: deal associated with %v", cus, as))
			}
		}
	}
	reqs := s.HubSpot.Requests()
	r.requests = len(reqs)
	r.byPath = map[string]int{}
	for _, q := range reqs {
		r.byPath[q.Method+" "+q.Path]++
		if q.Status == http.StatusTooManyRequests {
			r.tooMany++
		}
	}
	r.maxWindow = s.HubSpot.MaxInWindow(o.window)
}

// Each customer's events, in the order a renewal run emits them: the
// customer, its subscription (incomplete until paid), the invoice paid,
// the subscription active, the charge. Customers are interleaved in
// blocks of 20, so a customer's events sit within about a hundred
// events of each other in the stream, as they would arriving together.
const block = 20

func customerID(i int) string     { return fmt.Sprintf("cus_bench%06d", i) }
func subscriptionID(i int) string { return fmt.Sprintf("sub_bench%06d", i) }
func email(i int) string          { return fmt.Sprintf("renewal%06d@example.com", i) }
func plan(i int) string           { return fmt.Sprintf("price_bench_%d", i%7) }

func backlog(events, customers int) ([]*billingv1.BillingEvent, error) {
	per := events / customers
	extra := events - per*customers
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	lists := make([][]map[string]any, customers)
	for i := range customers {
		n := per
		if i < extra {
			n++
		}
		lists[i] = customerEvents(i, n, t0.Add(time.Duration(i)*50*time.Millisecond))
	}
	var out []*billingv1.BillingEvent
	seq := 0
	for start := 0; start < customers; start += block {
		end := min(start+block, customers)
		for k := 0; ; k++ {
			more := false
			for i := start; i < end; i++ {
				if k >= len(lists[i]) {
					continue
				}
				more = true
				seq++
				env := lists[i][k]
				env["id"] = fmt.Sprintf("evt_bench%08d", seq)
				raw, err := json.Marshal(env)
				if err != nil {
					return nil, err
				}
				ev, err := stripeevent.Normalize(raw)
				if err != nil {
					return nil, fmt.Errorf("normalize %s: %w", env["type"], err)
				}
				out = append(out, ev)
			}
			if !more {
				break
			}
		}
	}
	return out, nil
}

// customerEvents is customer i's renewal, n events long (five, then as
// many further invoice.paid events as asked).
func customerEvents(i, n int, at time.Time) []map[string]any {
	cus, sub := customerID(i), subscriptionID(i)
	periodEnd := at.AddDate(0, 1, 0)
	subscription := func(status string) map[string]any {
		return map[string]any{
			"id": sub, "object": "subscription", "customer": cus, "status": status,
			"created": at.Unix(), "current_period_end": periodEnd.Unix(), "cancel_at_period_end": false,
			"currency": "usd", "metadata": map[string]any{},
			"items": map[string]any{"object": "list", "data": []any{map[string]any{
				"id": "si_" + sub, "object": "subscription_item", "quantity": 1,
				"price": map[string]any{"id": plan(i), "object": "price", "unit_amount": 2900, "currency": "usd",
					"recurring": map[string]any{"interval": "month", "interval_count": 1}},
			}}},
		}
	}
	invoice := func(k int) map[string]any {
		return map[string]any{
			"id": fmt.Sprintf("in_bench%06d_%d", i, k), "object": "invoice", "customer": cus, "subscription": sub,
			"status": "paid", "total": 2900, "amount_due": 2900, "amount_paid": 2900, "currency": "usd",
			"charge": fmt.Sprintf("ch_bench%06d_%d", i, k), "payment_intent": fmt.Sprintf("pi_bench%06d_%d", i, k),
			"billing_reason": "subscription_cycle",
		}
	}
	event := func(typ string, at time.Time, object, previous map[string]any) map[string]any {
		data := map[string]any{"object": object}
		if previous != nil {
			data["previous_attributes"] = previous
		}
		return map[string]any{
			"object": "event", "api_version": "2023-10-16", "created": at.Unix(), "livemode": false,
			"pending_webhooks": 1, "type": typ, "data": data,
		}
	}
	evs := []map[string]any{
		event("customer.created", at, map[string]any{"id": cus, "object": "customer", "email": email(i),
			"name": fmt.Sprintf("Renewal Customer %d", i), "metadata": map[string]any{}}, nil),
		event("customer.subscription.created", at.Add(time.Second), subscription("incomplete"), nil),
		event("invoice.paid", at.Add(2*time.Second), invoice(0), nil),
		event("customer.subscription.updated", at.Add(2*time.Second), subscription("active"), map[string]any{"status": "incomplete"}),
		event("charge.succeeded", at.Add(2*time.Second), map[string]any{
			"id": fmt.Sprintf("ch_bench%06d_0", i), "object": "charge", "customer": cus,
			"payment_intent": fmt.Sprintf("pi_bench%06d_0", i), "invoice": fmt.Sprintf("in_bench%06d_0", i),
			"amount": 2900, "amount_refunded": 0, "refunded": false, "status": "succeeded", "paid": true, "currency": "usd",
		}, nil),
	}
	for k := 1; len(evs) < n; k++ {
		evs = append(evs, event("invoice.paid", at.Add(time.Duration(2+k)*time.Second), invoice(k), nil))
	}
	return evs[:n]
}

// publish fills the stream as ingress does, with Nats-Msg-Id = event id.
func publish(ctx context.Context, s *harness.Stack, evs []*billingv1.BillingEvent, workers int) error {
	nc, js, err := bus.Connect(ctx, s.NATS.Conn(natsauth.Ingress), "crmbench", nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	pub := bus.NewPublisher(js, nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(evs) {
					return
				}
				if _, err := pub.PublishEvent(ctx, evs[i]); err != nil {
					errs <- fmt.Errorf("publish %s: %w", evs[i].GetEventId(), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func gitRev() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func (r *result) markdown(o options) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	verdict := "**met**"
	if !r.met() {
		verdict = "**missed**"
	}
	w("## CRM catch-up (crmbench)")
	w("")
	w("Written by `go run ./test/load/cmd/crmbench -events %d -customers %d` (part of `make bench`) on %s, build %s, %s, %d CPUs; load average at start %s.",
		o.events, o.customers, r.startedAt.Format("2006-01-02 15:04 UTC"), r.build, runtime.Version(), runtime.NumCPU(), r.loadAvg)
	w("")
	w("A backlog of %d events over %d customers (each: customer.created, customer.subscription.created, invoice.paid, customer.subscription.updated to active, charge.succeeded; customers interleaved in blocks of %d) waits in JetStream; crm-sync, its own process at its defaults (`CONSUMER_CONCURRENCY=8`, `CONSUMER_BATCH_SIZE=500`, `CRM_RATE_LIMIT=%d`, `CRM_RATE_WINDOW=%s`), starts on it. The HubSpot fake allows %d requests per rolling %s (429 with `Retry-After` past it) and answers each in %s.",
		o.events, o.customers, block, o.limit, o.window, o.limit, o.window, o.latency)
	w("")
	w("| | measured | |")
	w("|---|---|---|")
	w("| backlog fully synced (start until every event recorded) | **%.1f s** (%.0f events/s, %.0f customers/s; /readyz after %.1f s) | target ≤ 60 s: %s |",
		r.took.Seconds(), float64(r.processed)/r.took.Seconds(), float64(o.customers)/r.took.Seconds(), r.startup.Seconds(), verdict)
	w("| HubSpot requests | %d (%s) | |", r.requests, paths(r.byPath))
	w("| most requests in any %s window | %d (limit %d); %d answered 429 | |", o.window, r.maxWindow, o.limit, r.tooMany)
	w("| in HubSpot afterwards | %d contacts, %d deals; %d customers not in their final state | |", r.contacts, r.deals, len(r.wrong))
	w("| dead letters | %d | |", r.deadLetter)
	w("| crm-sync CPU | %.1f s (%.3f CPU-ms per event) | |", r.cpu, 1000*r.cpu/float64(r.processed))
	w("| publishing the backlog (not timed) | %.1f s | |", r.published.Seconds())
	if len(r.wrong) > 0 {
		w("")
		for i, s := range r.wrong {
			if i == 10 {
				w("- ... %d more", len(r.wrong)-10)
				break
			}
			w("- %s", s)
		}
	}
	return b.String()
}

func paths(m map[string]int) string {
	var parts []string
	for _, p := range []string{
		"POST /crm/v3/objects/contacts/batch/upsert", "POST /crm/v3/objects/contacts/batch/update",
		"POST /crm/v3/objects/deals/batch/upsert", "POST /crm/v4/associations/deals/contacts/batch/associate/default",
	} {
		if m[p] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(p, "POST "), m[p]))
		}
	}
	return strings.Join(parts, ", ")
}
