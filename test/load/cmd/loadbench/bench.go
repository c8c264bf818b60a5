package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/harness/scenario"
	"github.com/launchready/launchready/test/load/results"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

// baseTag is replaced in every copy of the event pool, which renames every
// id (event, customer, subscription, invoice, email) consistently.
const baseTag = "bq00000"

// supply hands out webhook bodies: the pool of realistic journeys, copied
// under a new tag each time it runs out, so every body is a new event of a
// new customer.
type supply struct {
	mu   sync.Mutex
	pool [][]byte
	i    int
	copy int
}

func (s *supply) next() []byte {
	s.mu.Lock()
	if s.i == len(s.pool) {
		s.i = 0
		s.copy++
	}
	raw, c := s.pool[s.i], s.copy
	s.i++
	s.mu.Unlock()
	return bytes.ReplaceAll(raw, []byte(baseTag), []byte(fmt.Sprintf("bq%05d", c+1)))
}

// probes measure end to end: a probe flips one customer's subscription
// between active and past_due and times the POST until GetCustomerStatus
// shows the new status.
type probes struct {
	s    *harness.Stack
	d    *harness.Driver
	bs   []*journey.B
	k    []int
	busy []atomic.Bool

	mu       sync.Mutex
	lat      []time.Duration
	timeouts int
	errors   int
	skipped  int
}

func newProbes(t harness.T, s *harness.Stack, g *journey.Gen, n int) *probes {
	p := &probes{s: s, d: harness.NewDriver(s.WebhookURL, s.Secret), k: make([]int, n), busy: make([]atomic.Bool, n)}
	base := time.Now().Add(-time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range n {
		b := g.Customer(fmt.Sprintf("p%04d", i), base)
		c := b.CustomerEvent("customer.created", 0)
		sub := b.Subscription("customer.subscription.created", 0, b.ID("sub"), "active", journey.SubOpts{})
		if b.Err() != nil {
			t.Fatalf("probe customer: %v", b.Err())
		}
		for _, e := range []*journey.Event{c, sub} {
			if _, _, err := p.d.Deliver(ctx, e.Raw); err != nil {
				t.Fatalf("probe setup: %v", err)
			}
		}
		p.bs = append(p.bs, b)
	}
	for _, b := range p.bs {
		if !testkit.Poll(time.Minute, 20*time.Millisecond, func() bool {
			st, err := p.status(b.J.Customer)
			return err == nil && st.GetStatus() == journey.StatusActive
		}) {
			t.Fatalf("probe customer %s never became active", b.J.Customer)
		}
	}
	return p
}

func (p *probes) status(cus string) (*billingv1.CustomerStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.s.Status.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: cus}})
}

func (p *probes) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lat, p.timeouts, p.errors, p.skipped = nil, 0, 0, 0
}

// maxInFlight bounds the probes waiting at once; a tick that finds them
// all busy is skipped (and counted), so the probes' own reads stay a small
// part of the load however large the backlog grows.
const maxInFlight = 10

// run starts rate probes per second until ctx ends, and waits for the
// ones in flight.
func (p *probes) run(ctx context.Context, rate int) {
	var wg sync.WaitGroup
	var inFlight atomic.Int32
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	next := 0
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
		if inFlight.Load() >= maxInFlight {
			p.mu.Lock()
			p.skipped++
			p.mu.Unlock()
			continue
		}
		for range len(p.bs) {
			i := next
			next = (next + 1) % len(p.bs)
			if p.busy[i].CompareAndSwap(false, true) {
				wg.Add(1)
				inFlight.Add(1)
				go func() {
					defer wg.Done()
					defer inFlight.Add(-1)
					defer p.busy[i].Store(false)
					p.probe(i)
				}()
				break
			}
		}
	}
}

func (p *probes) probe(i int) {
	b := p.bs[i]
	p.k[i]++
	from, to, want := "active", "past_due", journey.StatusPastDue
	if p.k[i]%2 == 0 {
		from, to, want = "past_due", "active", journey.StatusActive
	}
	// One second later than the last flip: a newer snapshot, never a tie.
	ev := b.Subscription("customer.subscription.updated", 60+p.k[i], b.ID("sub"), to, journey.SubOpts{Prev: map[string]any{"status": from}})
	if b.Err() != nil {
		p.fail(false)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, _, err := p.d.Deliver(ctx, ev.Raw); err != nil {
		p.fail(false)
		return
	}
	// Poll every pollEvery at first, backing off to 50 ms: the precision
	// stays within a few percent of the latency measured, and a backlog does
	// not turn the probes into a storm of status reads.
	wait := pollEvery
	for n := 0; ctx.Err() == nil; n++ {
		st, err := p.status(b.J.Customer)
		if err == nil && st.GetStatus() == want {
			p.mu.Lock()
			p.lat = append(p.lat, time.Since(start))
			p.mu.Unlock()
			return
		}
		time.Sleep(wait) // polling interval
		if n >= 10 {
			wait = min(wait*2, 50*time.Millisecond)
		}
	}
	p.fail(true)
}

// pollEvery is the probes' first polling interval. Each poll is a gRPC
// call and a Postgres read on the box being measured; at 2 ms the probes'
// own reads were a measurable share of its CPU, and 5 ms still resolves
// the 100 ms target to 5%.
const pollEvery = 5 * time.Millisecond

func (p *probes) fail(timeout bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if timeout {
		p.timeouts++
	} else {
		p.errors++
	}
}

// procStat tracks one process's CPU and peak RSS over a phase. The
// Postgres backends serving one service are one row: their CPU is summed,
// and their RSS (mostly shared buffers) is not reported.
type procStat struct {
	name     string
	pid      int
	backends func() []int
	cpu0     map[int]float64
	cpu      float64
	rssPeak  int64
	rssFinal int64
}

func (p *procStat) pids() []int {
	if p.backends != nil {
		return p.backends()
	}
	return []int{p.pid}
}

type sampler struct {
	stats []*procStat
	stop  chan struct{}
	done  chan struct{}
}

func sample(procs map[string]int, backends map[string]func() []int) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	for _, n := range slices.Sorted(maps.Keys(procs)) {
		s.stats = append(s.stats, &procStat{name: n, pid: procs[n]})
	}
	for _, n := range slices.Sorted(maps.Keys(backends)) {
		s.stats = append(s.stats, &procStat{name: n, backends: backends[n]})
	}
	for _, st := range s.stats {
		st.cpu0 = map[int]float64{}
		for _, pid := range st.pids() {
			st.cpu0[pid] = harness.CPUSeconds(pid)
		}
		if st.backends == nil {
			st.rssPeak = harness.RSSOf(st.pid)
		}
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			for _, st := range s.stats {
				if st.backends == nil {
					st.rssPeak = max(st.rssPeak, harness.RSSOf(st.pid))
				} else {
					// Backends that start during the phase count from 0.
					for _, pid := range st.pids() {
						if _, ok := st.cpu0[pid]; !ok {
							st.cpu0[pid] = 0
						}
					}
				}
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() []*procStat {
	close(s.stop)
	<-s.done
	for _, st := range s.stats {
		for _, pid := range st.pids() {
			if c0, ok := st.cpu0[pid]; ok {
				st.cpu += harness.CPUSeconds(pid) - c0
			}
		}
		if st.backends == nil {
			st.rssFinal = harness.RSSOf(st.pid)
			st.rssPeak = max(st.rssPeak, st.rssFinal)
		}
	}
	return s.stats
}

// phase is what one measured phase produced.
type phase struct {
	name      string
	offered   string
	elapsed   time.Duration
	driver    harness.DriverStats
	e2e       []time.Duration
	e2eTO     int
	e2eErr    int
	e2eSkip   int
	applied   int // billing.processed_events rows added during the phase
	drained   time.Duration
	vendorCRM int // crm.processed_events rows added during the phase
	procs     []*procStat
	waits     map[string]int  // Postgres session states sampled
	commits   []time.Duration // the commit prober's insert latencies
	profiles  map[string]string
	// billing-state's own histograms over the phase (sum, count).
	apply, outboxLag, batch, wait metric
	// billing-state's pool: acquires that waited, and seconds acquiring
	poolWaited, poolSeconds float64
}

func (ph *phase) acceptedPerSec() float64 {
	return float64(ph.driver.Accepted) / ph.elapsed.Seconds()
}

func (ph *phase) appliedPerSec() float64 { return float64(ph.applied) / ph.elapsed.Seconds() }

// drive sends until ctx ends: open loop at rate (> 0), or closed loop with
// conc senders.
func drive(ctx context.Context, d *harness.Driver, sup *supply, rate, conc int) {
	var wg sync.WaitGroup
	if rate > 0 {
		work := make(chan []byte, 4096)
		for range max(conc, 64) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for body := range work {
					_, _, _ = d.Deliver(ctx, body)
				}
			}()
		}
		start := time.Now()
		sent := 0
		tick := time.NewTicker(5 * time.Millisecond)
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case now := <-tick.C:
				due := int(now.Sub(start).Seconds() * float64(rate))
				for ; sent < due; sent++ {
					select {
					case work <- sup.next():
					default: // senders saturated: this offered load is not met
					}
				}
			}
		}
		tick.Stop()
		close(work)
		wg.Wait()
		return
	}
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, _, _ = d.Deliver(ctx, sup.next())
			}
		}()
	}
	wg.Wait()
}

func count(s *harness.Stack, q string) int {
	n, err := s.CountErr(q)
	if err != nil {
		return -1
	}
	return n
}

func pids(s *harness.Stack) map[string]int {
	out := map[string]int{"nats-server": s.NATS.Proc.Pid(), "loadbench (load generator)": os.Getpid()}
	for n, p := range s.Procs {
		out[n] = p.Pid()
	}
	return out
}

// serviceNames lists the stack's services that use Postgres.
func serviceNames(s *harness.Stack) []string {
	var out []string
	for n := range s.Procs {
		if n != "ingress" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// fullPhase runs one phase against the stack.
func fullPhase(s *harness.Stack, p *probes, sup *supply, o options, name string, rate, conc int) *phase {
	ph := &phase{name: name}
	if rate > 0 {
		ph.offered = strconv.Itoa(rate) + "/s open loop"
	} else {
		ph.offered = fmt.Sprintf("c=%d closed loop", conc)
	}
	d := harness.NewDriver(s.WebhookURL, s.Secret)
	p.reset()
	p.d.ResetStats()
	applied0 := count(s, `SELECT count(*) FROM billing.processed_events`)
	m0 := scrape(s.Ops["billing-state"] + "/metrics")
	crm0 := count(s, `SELECT count(*) FROM crm.processed_events`)
	smp := sample(pids(s), backendPids(s.DB, s.DatabaseName, serviceNames(s)))
	waits := sampleWaits(s.DB, s.DatabaseName)
	commits := probeCommits(s.DB)
	var prof *profiler
	if o.perf && rate == 0 {
		prof = startPerf(pids(s), o.duration)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.run(ctx, o.probeRate) }()
	drive(ctx, d, sup, rate, conc)
	cancel()
	ph.elapsed = time.Since(start)
	ph.procs = smp.finish()
	ph.waits = waits.finish()
	ph.commits = commits.finish()
	if prof != nil {
		ph.profiles = prof.finish()
	}
	ph.applied = count(s, `SELECT count(*) FROM billing.processed_events`) - applied0
	m1 := scrape(s.Ops["billing-state"] + "/metrics")
	ph.apply = m1["lr_billing_state_apply_seconds"].sub(m0["lr_billing_state_apply_seconds"])
	ph.outboxLag = m1["lr_billing_state_outbox_lag_seconds"].sub(m0["lr_billing_state_outbox_lag_seconds"])
	ph.batch = m1["lr_billing_state_batch_size"].sub(m0["lr_billing_state_batch_size"])
	ph.wait = m1["lr_consumer_wait_seconds"].sub(m0["lr_consumer_wait_seconds"])
	ph.poolWaited = m1["lr_db_pool_acquires_waited_total"].sub(m0["lr_db_pool_acquires_waited_total"]).sum
	ph.poolSeconds = m1["lr_db_pool_acquire_seconds_total"].sub(m0["lr_db_pool_acquire_seconds_total"]).sum
	ph.vendorCRM = count(s, `SELECT count(*) FROM crm.processed_events`) - crm0
	wg.Wait()
	// Probes are webhooks too.
	ph.driver = d.Stats()
	ps := p.d.Stats()
	ph.driver.Accepted += ps.Accepted
	ph.driver.Attempts += ps.Attempts
	ph.driver.AckLatencies = append(ph.driver.AckLatencies, ps.AckLatencies...)
	for k, v := range ps.Statuses {
		ph.driver.Statuses[k] += v
	}
	p.mu.Lock()
	ph.e2e, ph.e2eTO, ph.e2eErr, ph.e2eSkip = append([]time.Duration(nil), p.lat...), p.timeouts, p.errors, p.skipped
	p.mu.Unlock()
	// How long billing-state needs to apply what was accepted.
	t0 := time.Now()
	testkit.Poll(5*time.Minute, 100*time.Millisecond, func() bool {
		n, err := s.ConsumerBacklog("billing-state")
		return err == nil && n == 0
	})
	ph.drained = time.Since(t0)
	return ph
}

func run(ctx context.Context, t *benchT, o options) error {
	began := time.Now()
	startLoad, startPressure := loadAvg(), cpuPressure()
	dir, err := testkit.FindFixturesDir()
	if err != nil {
		return err
	}
	g, err := journey.NewGen(dir, baseTag)
	if err != nil {
		return err
	}
	g.DaySeconds = 3600
	js, err := scenario.Mix(g, 200, 2000, time.Now().Add(-72*time.Hour))
	if err != nil {
		return err
	}
	sup := &supply{}
	for _, e := range scenario.InOrder(js) {
		sup.pool = append(sup.pool, e.Raw)
	}

	fmt.Fprintf(os.Stderr, "loadbench: building and starting the system (nats-server, ingress, billing-state, crm-sync, support-notify)\n")
	st := t.sub()
	so := harness.StackOptions{LogLevel: o.logLevel}
	if o.services != "" {
		so.Services = strings.Split(o.services, ",")
	}
	if o.nice != "" {
		so.Nice = map[string]int{}
		for _, kv := range strings.Split(o.nice, ",") {
			k, v, ok := strings.Cut(kv, "=")
			n, err := strconv.Atoi(v)
			if !ok || err != nil || n < 1 || n > 19 {
				return fmt.Errorf("-nice: %q is not name=1..19", kv)
			}
			so.Nice[k] = n
		}
	}
	if o.env != "" {
		so.Env = map[string]string{}
		for _, kv := range strings.Split(o.env, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("-env: %q is not K=V", kv)
			}
			// "service:K=V" sets K for that service only.
			if svc, kk, one := strings.Cut(k, ":"); one {
				if so.ServiceEnv == nil {
					so.ServiceEnv = map[string]map[string]string{}
				}
				if so.ServiceEnv[svc] == nil {
					so.ServiceEnv[svc] = map[string]string{}
				}
				so.ServiceEnv[svc][kk] = v
				continue
			}
			so.Env[k] = v
		}
	}
	s := harness.StartStack(st, so)
	for _, f := range []interface{ SetLatency(time.Duration) }{s.HubSpot, s.Zendesk, s.Slack} {
		f.SetLatency(o.vendorLatency)
	}
	pg, err := journey.NewGen(dir, "pr"+harness.Random(2))
	if err != nil {
		return err
	}
	p := newProbes(st, s, pg, o.probes)

	var light *phase
	if o.lightRate > 0 {
		fmt.Fprintf(os.Stderr, "loadbench: light %d/s for %s\n", o.lightRate, o.duration)
		light = fullPhase(s, p, sup, o, "light", o.lightRate, 0)
		report(os.Stderr, light)
	}
	fmt.Fprintf(os.Stderr, "loadbench: steady %d/s for %s\n", o.rate, o.duration)
	steady := fullPhase(s, p, sup, o, "steady", o.rate, 0)
	report(os.Stderr, steady)
	fmt.Fprintf(os.Stderr, "loadbench: max rate, %d senders, for %s\n", o.conc, o.duration)
	maxPh := fullPhase(s, p, sup, o, "max rate", 0, o.conc)
	report(os.Stderr, maxPh)
	vendors := vendorSummary(s)
	var dr *drainResult
	if _, ok := s.Procs["billing-state"]; ok && o.queueFor > 0 {
		fmt.Fprintf(os.Stderr, "loadbench: billing-state alone on a backlog: consumers stopped, %d senders for %s, then billing-state started\n", o.conc, o.queueFor)
		if dr, err = drainPhase(s, sup, o); err != nil {
			return err
		}
	}
	st.runCleanups()

	var nv *phase
	if !o.noNaive {
		fmt.Fprintf(os.Stderr, "loadbench: naive baseline, %d senders, for %s\n", o.conc, o.duration)
		nv, err = naivePhase(t, sup, o)
		if err != nil {
			return err
		}
		report(os.Stderr, nv)
	}
	md := markdown(o, light, steady, maxPh, nv, dr, vendors, startLoad, startPressure, time.Since(began))
	if o.alertCount > 0 {
		ar, err := alertBurst(t, o)
		if err != nil {
			return err
		}
		md = strings.TrimRight(md, "\n") + "\n\n" + alertMarkdown(ar)
	}
	fmt.Println(md)
	if o.out != "-" {
		// Sections other benchmarks own (crmbench's, ...) are kept.
		if err := results.WriteBody(o.out, md); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "loadbench: wrote %s\n", o.out)
	}
	return nil
}

func vendorSummary(s *harness.Stack) string {
	return fmt.Sprintf("HubSpot %d calls, Zendesk %d, Slack %d while the phases ran (each answering in %s); crm-sync backlog at the end %s, support-notify %s",
		s.HubSpot.CallCount(), s.Zendesk.CallCount(), s.Slack.CallCount(), s.HubSpot.Latency(),
		backlog(s, "crm-sync"), backlog(s, "support-notify"))
}

func backlog(s *harness.Stack, durable string) string {
	n, err := s.ConsumerBacklog(durable)
	if err != nil {
		return "?"
	}
	return strconv.FormatUint(n, 10)
}

func naivePhase(t *benchT, sup *supply, o options) (*phase, error) {
	nt := t.sub()
	defer nt.runCleanups()
	hubToken := "pat-" + harness.Random(16)
	hub := fakes.NewHubSpot(hubToken)
	nt.Cleanup(hub.Close)
	zd := fakes.NewZendesk("ops@example.com", harness.Random(16))
	nt.Cleanup(zd.Close)
	sl := fakes.NewSlack("/services/T0/B0/" + harness.Random(12))
	nt.Cleanup(sl.Close)
	for _, f := range []interface{ SetLatency(time.Duration) }{hub, zd, sl} {
		f.SetLatency(o.vendorLatency)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	secret := "whsec_" + harness.Random(24)
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(nt))
	proc := harness.Start(nt, "naive", exe, []string{
		"LR_NAIVE_ADDR=" + addr, "LR_NAIVE_DATABASE_URL=" + harness.NewDatabase(nt), "LR_NAIVE_SECRET=" + secret,
		"LR_NAIVE_HUBSPOT_URL=" + hub.URL(), "LR_NAIVE_HUBSPOT_TOKEN=" + hubToken,
		"LR_NAIVE_ZENDESK_URL=" + zd.URL(), "LR_NAIVE_ZENDESK_EMAIL=" + zd.Email, "LR_NAIVE_ZENDESK_TOKEN=" + zd.Token,
		"LR_NAIVE_SLACK_URL=" + sl.URL(),
	}, "-naive-serve")
	harness.WaitHTTP(nt, "http://"+addr+"/healthz", 30*time.Second, proc)

	ph := &phase{name: "naive baseline", offered: fmt.Sprintf("c=%d closed loop", o.conc)}
	d := harness.NewDriver("http://"+addr+"/webhooks/stripe", secret)
	smp := sample(map[string]int{"naive": proc.Pid(), "loadbench (load generator)": os.Getpid()}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	start := time.Now()
	drive(ctx, d, sup, 0, o.conc)
	cancel()
	ph.elapsed = time.Since(start)
	ph.procs = smp.finish()
	ph.driver = d.Stats()
	// The baseline answers only once everything is done: its state is
	// visible when it acks, and everything it accepted is applied.
	ph.e2e = append([]time.Duration(nil), ph.driver.AckLatencies...)
	ph.applied = ph.driver.Accepted - ph.driver.Duplicates
	ph.vendorCRM = hub.CallCount()
	return ph, nil
}
