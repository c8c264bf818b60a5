// Command crmbench measures crm-sync catching up on a backlog, the
// first-of-the-month case: -events events over -customers customers wait in
// JetStream (each customer's few events close together, as a renewal run
// produces them), HubSpot (hubspotfake) allows 100 requests per rolling
// 10 s (429 with Retry-After past it) and answers each in 200 ms, and
// crm-sync runs as its own process at its defaults (CRM_RATE_LIMIT=100 per
// CRM_RATE_WINDOW=10s, CONSUMER_CONCURRENCY=8). It is started on the
// backlog and timed until every event is recorded processed; then the fake
// must hold exactly one contact and one deal per customer, associated,
// with the customer's final state, and no event may be dead-lettered;
// otherwise it exits 1. A catch-up slower than the target is reported as
// missed, not as a failure: the box's speed varies.
//
// It prints a Markdown section and writes it into -out (its own section of
// test/load/RESULTS.md by default).
//
//	go run ./test/load/cmd/crmbench                         # 50,000 events over 10,000 customers
//	go run ./test/load/cmd/crmbench -events 5000 -customers 1000 -out -
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/load/results"
)

type options struct {
	events, customers int
	limit             int
	window            time.Duration
	latency           time.Duration
	publishers        int
	timeout           time.Duration
	out               string
	verbose           bool
	env               string
}

func main() {
	var o options
	fs := flag.NewFlagSet("crmbench", flag.ExitOnError)
	fs.IntVar(&o.events, "events", 50000, "events in the backlog")
	fs.IntVar(&o.customers, "customers", 10000, "customers the events belong to (events/customers each)")
	fs.IntVar(&o.limit, "limit", 100, "HubSpot's rolling limit: requests per -window (the fake answers 429 past it; crm-sync's CRM_RATE_LIMIT)")
	fs.DurationVar(&o.window, "window", 10*time.Second, "HubSpot's rolling window (crm-sync's CRM_RATE_WINDOW)")
	fs.DurationVar(&o.latency, "latency", 200*time.Millisecond, "how long the HubSpot fake takes to answer")
	fs.IntVar(&o.publishers, "publishers", 16, "concurrent publishers filling the backlog")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up when the backlog is not synced by then")
	fs.StringVar(&o.out, "out", "", "RESULTS.md to write the section into (default test/load/RESULTS.md in the checkout; - for none)")
	fs.StringVar(&o.env, "env", "", "extra environment for crm-sync, K=V,K=V (e.g. CONSUMER_BATCH_SIZE=200)")
	fs.BoolVar(&o.verbose, "v", false, "log harness progress")
	_ = fs.Parse(os.Args[1:])
	if o.customers < 1 || o.events < o.customers || o.limit < 1 || o.window <= 0 || o.publishers < 1 {
		fmt.Fprintln(os.Stderr, "crmbench: need -customers ≥ 1, -events ≥ -customers, positive -limit, -window and -publishers")
		os.Exit(2)
	}
	if o.out == "" {
		root, err := harness.RepoRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "crmbench:", err)
			os.Exit(1)
		}
		o.out = filepath.Join(root, "test", "load", "RESULTS.md")
	}
	t := &programT{verbose: o.verbose}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		t.Fatalf("interrupted")
	}()
	r, err := run(context.Background(), t, o)
	t.runCleanups()
	if err != nil {
		fmt.Fprintln(os.Stderr, "crmbench:", err)
		os.Exit(1)
	}
	md := r.markdown(o)
	fmt.Println(md)
	if o.out != "-" {
		if err := results.WriteSection(o.out, "crmbench", md); err != nil {
			fmt.Fprintln(os.Stderr, "crmbench:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "crmbench: wrote its section of %s\n", o.out)
	}
	if !r.correct() {
		os.Exit(1)
	}
}

// programT is harness.T for a program: cleanups run at exit, Fatalf cleans
// up and exits.
type programT struct {
	verbose bool
	mu      sync.Mutex
	cleanup []func()
	failed  bool
	dir     string
}

func (p *programT) Helper() {}

func (p *programT) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanup = append(p.cleanup, f)
}

func (p *programT) Logf(format string, args ...any) {
	if p.verbose {
		fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
	}
}

func (p *programT) Fatalf(format string, args ...any) {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
	fmt.Fprintf(os.Stderr, "crmbench: "+format+"\n", args...)
	p.runCleanups()
	os.Exit(1)
}

func (p *programT) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *programT) TempDir() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir == "" {
		d, err := os.MkdirTemp("", "crmbench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "crmbench: temp dir:", err)
			os.Exit(1)
		}
		p.dir = d
		p.cleanup = append(p.cleanup, func() { _ = os.RemoveAll(d) })
	}
	return p.dir
}

func (p *programT) runCleanups() {
	p.mu.Lock()
	fs := p.cleanup
	p.cleanup = nil
	p.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
