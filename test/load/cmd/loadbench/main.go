// Command loadbench measures Launch Ready end to end, each service and
// nats-server as its own process (test/harness), against fake HubSpot,
// Zendesk and Slack that answer in -vendor-latency, and measures the naive
// baseline (test/load/naive) against the same fakes in the same run.
//
// Phases, each -d long:
//
//  1. light: -light-rate webhooks/s, open loop, to show the pipeline's own
//     latency when nothing queues;
//  2. steady: -rate webhooks/s, open loop; end-to-end latency from the POST
//     until GetCustomerStatus shows the new status, sampled by probe
//     customers whose subscription flips between active and past_due;
//  3. max: -c senders back to back (closed loop), same probes;
//  4. naive: the baseline at the same -c, same events, same vendor latency.
//  5. alert burst: ingress and support-notify alone, -alerts failed payments
//     over -alerts-over with the Slack fake taking one message per
//     -slack-pace; every alert must be accepted within two minutes of its
//     event and no 429 left unanswered (-alerts-only runs just this and
//     replaces its section of the report).
//
// It prints a Markdown report and writes it to -out (test/load/RESULTS.md
// by default): webhooks accepted/s, ack p50/p95/p99, end-to-end p50/p95/p99,
// applied events/s, CPU-seconds per 1,000 events and peak RSS per process.
//
//	go run ./test/load/cmd/loadbench                 # defaults: -d 20s -c 16 -rate 500
//	go run ./test/load/cmd/loadbench -d 10s -no-naive
//	go run ./test/load/cmd/loadbench -alerts-only    # 600 failed payments in 60 s, Slack at 1/s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/load/naive"
)

type options struct {
	duration      time.Duration
	queueFor      time.Duration
	conc          int
	rate          int
	lightRate     int
	vendorLatency time.Duration
	probes        int
	probeRate     int
	out           string
	logLevel      string
	noNaive       bool
	verbose       bool
	perf          bool
	services      string
	env           string
	nice          string
	alertCount    int
	alertOver     time.Duration
	alertPace     time.Duration
	alertsOnly    bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-naive-serve" {
		if err := serveNaive(); err != nil {
			fmt.Fprintln(os.Stderr, "naive:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	fs := flag.NewFlagSet("loadbench", flag.ExitOnError)
	fs.DurationVar(&o.duration, "d", 20*time.Second, "length of each measured phase")
	fs.DurationVar(&o.queueFor, "queue", 5*time.Second, "how long ingress queues webhooks with the consumers stopped, before billing-state alone applies the backlog (0: skip)")
	fs.IntVar(&o.conc, "c", 16, "concurrent senders in the max-rate and naive phases")
	fs.IntVar(&o.rate, "rate", 500, "webhooks/s in the steady phase")
	fs.IntVar(&o.lightRate, "light-rate", 100, "webhooks/s in a first, light phase that shows the pipeline's own latency (0: skip)")
	fs.DurationVar(&o.vendorLatency, "vendor-latency", 200*time.Millisecond, "how long HubSpot, Zendesk and Slack take to answer")
	fs.IntVar(&o.probes, "probes", 50, "probe customers for end-to-end latency")
	fs.IntVar(&o.probeRate, "probe-rate", 20, "end-to-end probes per second (part of the load)")
	fs.StringVar(&o.out, "out", "", "Markdown report path (default test/load/RESULTS.md in the checkout; - for none)")
	fs.StringVar(&o.logLevel, "log-level", "info", "LOG_LEVEL of the services")
	fs.BoolVar(&o.noNaive, "no-naive", false, "skip the naive baseline")
	fs.BoolVar(&o.verbose, "v", false, "log harness progress")
	fs.StringVar(&o.services, "services", "", "comma list of services to run (default all four; e.g. ingress,billing-state to isolate the status path)")
	fs.StringVar(&o.nice, "nice", "", "lower services' CPU priority, name=increment,... (e.g. crm-sync=10,support-notify=10: the side-effect workers yield the CPU to the status path)")
	fs.StringVar(&o.env, "env", "", "extra environment for every service, K=V,K=V (e.g. CONSUMER_CONCURRENCY=32), or for one, service:K=V (billing-state:CONSUMER_CONCURRENCY=4)")
	fs.BoolVar(&o.perf, "perf", false, "profile every process with perf(1) during the max-rate phase and add the top functions to the report")
	fs.IntVar(&o.alertCount, "alerts", 600, "invoice.payment_failed webhooks in the alert burst (0: skip it)")
	fs.DurationVar(&o.alertOver, "alerts-over", time.Minute, "how long the alert burst's webhooks take to send")
	fs.DurationVar(&o.alertPace, "slack-pace", time.Second, "the Slack fake takes one message per this during the alert burst")
	fs.BoolVar(&o.alertsOnly, "alerts-only", false, "run only the alert burst and replace its section of the report")
	_ = fs.Parse(os.Args[1:])
	if o.duration <= 0 || o.conc < 1 || o.rate < 1 || o.probes < 1 {
		fmt.Fprintln(os.Stderr, "loadbench: -d, -c, -rate and -probes must be positive")
		os.Exit(2)
	}
	if o.out == "" {
		root, err := harness.RepoRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			os.Exit(1)
		}
		o.out = filepath.Join(root, "test", "load", "RESULTS.md")
	}
	t := newBenchT(o.verbose)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		t.Fatalf("interrupted")
	}()
	run := run
	if o.alertsOnly {
		run = runAlertsOnly
	}
	err := run(context.Background(), t, o)
	t.runCleanups()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// benchT is the harness.T of a program: cleanups run at exit, Fatalf
// cleans up and exits.
type benchT struct {
	verbose bool
	mu      sync.Mutex
	cleanup []func()
	failed  bool
	dir     string
	parent  *benchT
}

func newBenchT(verbose bool) *benchT { return &benchT{verbose: verbose} }

func (b *benchT) Helper() {}

func (b *benchT) Cleanup(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanup = append(b.cleanup, f)
}

func (b *benchT) Logf(format string, args ...any) {
	if b.verbose {
		fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
	}
}

func (b *benchT) Fatalf(format string, args ...any) {
	b.mu.Lock()
	b.failed = true
	b.mu.Unlock()
	if b.parent != nil {
		b.parent.mu.Lock()
		b.parent.failed = true
		b.parent.mu.Unlock()
	}
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
	b.runCleanups()
	if b.parent != nil {
		b.parent.runCleanups()
	}
	os.Exit(1)
}

func (b *benchT) Failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}

func (b *benchT) TempDir() string {
	b.mu.Lock()
	if b.dir == "" {
		d, err := os.MkdirTemp("", "loadbench-")
		if err != nil {
			b.mu.Unlock()
			b.Fatalf("temp dir: %v", err)
		}
		b.dir = d
		b.cleanup = append(b.cleanup, func() { _ = os.RemoveAll(d) })
	}
	d := b.dir
	b.mu.Unlock()
	return d
}

// sub returns a T whose cleanups run when its runCleanups is called, so a
// stack can be torn down before the next phase.
func (b *benchT) sub() *benchT { return &benchT{verbose: b.verbose, parent: b} }

func (b *benchT) runCleanups() {
	b.mu.Lock()
	fs := b.cleanup
	b.cleanup = nil
	b.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// serveNaive runs the baseline as its own process (so its CPU and memory
// are its own), configured through the environment.
func serveNaive() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := naive.New(ctx, naive.Config{
		DatabaseURL: os.Getenv("LR_NAIVE_DATABASE_URL"), WebhookSecret: os.Getenv("LR_NAIVE_SECRET"),
		HubSpotURL: os.Getenv("LR_NAIVE_HUBSPOT_URL"), HubSpotToken: os.Getenv("LR_NAIVE_HUBSPOT_TOKEN"),
		ZendeskURL: os.Getenv("LR_NAIVE_ZENDESK_URL"), ZendeskEmail: os.Getenv("LR_NAIVE_ZENDESK_EMAIL"),
		ZendeskToken: os.Getenv("LR_NAIVE_ZENDESK_TOKEN"), SlackURL: os.Getenv("LR_NAIVE_SLACK_URL"),
	})
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", os.Getenv("LR_NAIVE_ADDR"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

// cpuPressure is the kernel's CPU pressure (PSI) over the last minute: the
// share of time some runnable task waited for a CPU.
func cpuPressure() string {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return "?"
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "avg60="); ok {
			return v + "%"
		}
	}
	return "?"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
