// Command ingressbench measures ingress: signed, realistic Stripe payloads
// (the shared fixtures, each request with a fresh event id) at a fixed
// concurrency for a fixed time, reporting accepted events/s, the latency of
// the 200 answer (which ingress sends only after the JetStream PubAck), and
// ingress's memory.
//
// Without -url it hosts everything itself: an embedded NATS server with
// JetStream on file storage in a temporary directory, and ingress built with
// `go build` and run as a separate process, so the RSS and CPU it reports
// are ingress's alone and not the load generator's.
//
//	go run ./test/load/cmd/ingressbench -c 16 -d 30s
//	go run ./test/load/cmd/ingressbench -url http://host:8080/webhooks/stripe -secret whsec_... -pid 1234
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/natsembed"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/testkit"
)

type options struct {
	url        string
	secret     string
	pid        int
	conc       int
	duration   time.Duration
	warmup     time.Duration
	fixtures   string
	ingressBin string
	keep       bool
	cpuProfile string
	ingressEnv envList
}

// envList collects repeated -ingress-env K=V flags.
type envList []string

func (l *envList) String() string { return strings.Join(*l, " ") }

func (l *envList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q is not K=V", v)
	}
	*l = append(*l, v)
	return nil
}

func main() {
	// The load generator and the embedded NATS server allocate briskly with
	// little alive; fewer collections leave more of the shared cores to the
	// ingress being measured. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ingressbench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("ingressbench", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "webhook URL of a running ingress; empty hosts NATS and ingress itself")
	fs.StringVar(&o.secret, "secret", os.Getenv("STRIPE_WEBHOOK_SECRET"), "signing secret of the running ingress (with -url)")
	fs.IntVar(&o.pid, "pid", 0, "pid of the running ingress, to report its RSS (with -url)")
	fs.IntVar(&o.conc, "c", 16, "concurrent requests")
	fs.DurationVar(&o.duration, "d", 30*time.Second, "measured duration")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before measuring starts (connections, JIT of the file store, GC pacing)")
	fs.StringVar(&o.fixtures, "fixtures", "", "Stripe fixture directory (default FIXTURES_DIR or shared/fixtures/stripe above the working directory)")
	fs.StringVar(&o.ingressBin, "ingress-bin", "", "ingress binary to run (default: go build ./services/ingress/cmd/ingress)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (JetStream store, ingress log)")
	fs.Var(&o.ingressEnv, "ingress-env", "extra K=V for the ingress process (repeatable), e.g. GOMAXPROCS=1")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write this process's CPU profile (load generator and embedded NATS) to a file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.conc < 1 || o.duration <= 0 {
		return errors.New("-c must be >= 1 and -d > 0")
	}
	if o.fixtures == "" {
		dir, err := testkit.FindFixturesDir()
		if err != nil {
			return err
		}
		o.fixtures = dir
	}
	payloads, err := loadPayloads(o.fixtures)
	if err != nil {
		return err
	}

	var env *selfHosted
	if o.url == "" {
		env, err = startSelfHosted(ctx, &o, out)
		if err != nil {
			return err
		}
		defer env.stop(out)
	} else if o.secret == "" {
		return errors.New("-url needs -secret (or STRIPE_WEBHOOK_SECRET)")
	}

	mean := 0
	for _, p := range payloads {
		mean += p.size()
	}
	mean /= len(payloads)
	fmt.Fprintf(out, "ingressbench: %d fixture envelopes from %s, mean body %d bytes\n", len(payloads), o.fixtures, mean)
	fmt.Fprintf(out, "ingressbench: c=%d for %s after %s warm-up against %s\n", o.conc, o.duration, o.warmup, o.url)

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	// CPU is sampled around the measured window only, once warm-up is over.
	var cpuBefore, selfBefore, cpuAfter, selfAfter, busyBefore, busyAfter time.Duration
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		select {
		case <-time.After(o.warmup):
		case <-ctx.Done():
			return
		}
		if o.pid > 0 {
			cpuBefore, _ = processCPU(o.pid)
		}
		selfBefore, _ = processCPU(os.Getpid())
		busyBefore, _ = machineBusy()
	}()
	res := load(ctx, o, payloads)
	<-sampled
	if o.pid > 0 {
		cpuAfter, _ = processCPU(o.pid)
	}
	selfAfter, _ = processCPU(os.Getpid())
	busyAfter, _ = machineBusy()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	res.print(out, o)
	if o.pid > 0 {
		printProcess(out, o.pid, cpuAfter-cpuBefore, res.elapsed, res.accepted)
	}
	what := "load generator"
	if env != nil {
		what = "load generator + embedded NATS"
	}
	self := selfAfter - selfBefore
	fmt.Fprintf(out, "this proc  %s CPU %.1fs (%.0f%% of one core)\n", what, self.Seconds(), 100*self.Seconds()/res.elapsed.Seconds())
	if o.pid > 0 {
		capacity := res.elapsed.Seconds() * float64(runtime.NumCPU())
		ours := (self + cpuAfter - cpuBefore).Seconds()
		others := max((busyAfter-busyBefore).Seconds()-ours, 0)
		fmt.Fprintf(out, "machine    %d cores: the two processes above used %.0f%%, other processes %.0f%%; load average %s\n",
			runtime.NumCPU(), 100*ours/capacity, 100*others/capacity, loadAvg())
	}
	if env != nil {
		if err := env.checkStream(ctx, res, out); err != nil {
			return err
		}
	}
	return nil
}

// ---- load

type workerResult struct {
	latencies []time.Duration
	accepted  int
	dups      int
	codes     map[int]int
	netErrs   int
	firstErr  string
}

type result struct {
	elapsed time.Duration
	workerResult
}

func load(ctx context.Context, o options, payloads []payload) result {
	run := make([]byte, 6)
	_, _ = rand.Read(run)
	runID := hex.EncodeToString(run)

	start := time.Now()
	measureFrom := start.Add(o.warmup)
	stopAt := measureFrom.Add(o.duration)
	results := make([]workerResult, o.conc)
	var wg sync.WaitGroup
	for w := range o.conc {
		wg.Go(func() {
			results[w] = worker(ctx, o, payloads, w, runID, measureFrom, stopAt)
		})
	}
	wg.Wait()
	end := time.Now()
	if end.After(stopAt) {
		end = stopAt
	}

	var total workerResult
	total.codes = map[int]int{}
	for _, r := range results {
		total.latencies = append(total.latencies, r.latencies...)
		total.accepted += r.accepted
		total.dups += r.dups
		total.netErrs += r.netErrs
		for c, n := range r.codes {
			total.codes[c] += n
		}
		if total.firstErr == "" {
			total.firstErr = r.firstErr
		}
	}
	slices.Sort(total.latencies)
	return result{elapsed: end.Sub(measureFrom), workerResult: total}
}

func worker(ctx context.Context, o options, payloads []payload, w int, runID string, measureFrom, stopAt time.Time) workerResult {
	r := workerResult{codes: map[int]int{}, latencies: make([]time.Duration, 0, 1<<16)}
	client, err := newRawClient(o.url)
	if err != nil {
		r.netErrs, r.firstErr = 1, err.Error()
		return r
	}
	defer client.close()
	body := make([]byte, 0, 64<<10)
	id := make([]byte, 0, 64)
	answer := make([]byte, 512)
	for seq := 0; ; seq++ {
		if ctx.Err() != nil || time.Now().After(stopAt) {
			return r
		}
		p := payloads[(w+seq)%len(payloads)]
		id = append(id[:0], "evt_bench_"...)
		id = append(id, runID...)
		id = append(id, '_')
		id = strconv.AppendInt(id, int64(w), 10)
		id = append(id, '_')
		id = strconv.AppendInt(id, int64(seq), 10)
		body = p.render(body[:0], id)
		sig := stripeevent.Sign(body, o.secret, time.Now())

		t0 := time.Now()
		code, n, err := client.post(body, sig, answer)
		t1 := time.Now()
		if t0.Before(measureFrom) || t1.After(stopAt) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return r
			}
			r.netErrs++
			if r.firstErr == "" {
				r.firstErr = err.Error()
			}
			continue
		}
		r.codes[code]++
		if code != http.StatusOK {
			if r.firstErr == "" {
				r.firstErr = fmt.Sprintf("%d %s (%s)", code, bytesTrim(answer[:n]), p.name)
			}
			continue
		}
		r.accepted++
		if bytes.Contains(answer[:n], []byte(`"duplicate":true`)) {
			r.dups++
		}
		r.latencies = append(r.latencies, t1.Sub(t0))
	}
}

func (r result) print(out io.Writer, o options) {
	secs := r.elapsed.Seconds()
	errs := r.netErrs
	for c, n := range r.codes {
		if c != http.StatusOK {
			errs += n
		}
	}
	fmt.Fprintf(out, "requests   %d answered 200 (%d of them duplicates), %d errors", r.accepted, r.dups, errs)
	if errs > 0 {
		fmt.Fprintf(out, " (status counts %v, transport errors %d; first: %s)", r.codes, r.netErrs, r.firstErr)
	}
	fmt.Fprintln(out)
	rate := float64(r.accepted) / secs
	fmt.Fprintf(out, "accepted   %.0f events/s over %.1fs\n", rate, secs)
	p50, p95, p99, pmax := pct(r.latencies, 50), pct(r.latencies, 95), pct(r.latencies, 99), pct(r.latencies, 100)
	fmt.Fprintf(out, "ack        p50 %s  p95 %s  p99 %s  max %s\n", ms(p50), ms(p95), ms(p99), ms(pmax))
	verdict := "met"
	if rate < 5000 || p99 > 20*time.Millisecond || errs > 0 {
		verdict = "MISSED"
	}
	fmt.Fprintf(out, "target     >= 5000 events/s, p99 <= 20ms, no errors: %s\n", verdict)
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// ---- the process under test

func printProcess(out io.Writer, pid int, cpu, elapsed time.Duration, accepted int) {
	rss, hwm := procStatus(pid, "VmRSS"), procStatus(pid, "VmHWM")
	perEvent := time.Duration(0)
	if accepted > 0 {
		perEvent = cpu / time.Duration(accepted)
	}
	fmt.Fprintf(out, "ingress    pid %d  RSS %s  peak RSS %s  CPU %.1fs (%.0f%% of one core, %s per event)\n",
		pid, rss, hwm, cpu.Seconds(), 100*cpu.Seconds()/elapsed.Seconds(), perEvent.Round(time.Microsecond))
}

// machineBusy is the non-idle CPU time of the whole machine, from the cpu
// line of /proc/stat (user nice system idle iowait irq softirq steal ...).
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat")
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	const clkTck = 100
	return time.Duration(busy) * time.Second / clkTck, nil
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

// procStatus reads one field of /proc/<pid>/status, e.g. "VmRSS" -> "23.4 MiB".
func procStatus(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				return strings.TrimSpace(rest)
			}
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "unknown"
}

// processCPU is user+system time from /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// ---- self-hosted NATS and ingress

type selfHosted struct {
	dir     string
	keep    bool
	nats    *server.Server
	natsURL string
	cmd     *exec.Cmd
	exited  chan error
}

func startSelfHosted(ctx context.Context, o *options, out io.Writer) (_ *selfHosted, err error) {
	dir, err := os.MkdirTemp("", "ingressbench-")
	if err != nil {
		return nil, err
	}
	env := &selfHosted{dir: dir, keep: o.keep}
	defer func() {
		if err != nil {
			env.stop(out)
		}
	}()

	env.nats, err = natsembed.Start(natsembed.Options{Port: -1, StoreDir: filepath.Join(dir, "jetstream"), ServerName: "ingressbench"})
	if err != nil {
		return nil, err
	}
	env.natsURL = env.nats.ClientURL()

	bin := o.ingressBin
	if bin == "" {
		bin = filepath.Join(dir, "ingress")
		if err := buildIngress(ctx, bin); err != nil {
			return nil, err
		}
	}
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	o.secret = "whsec_" + hex.EncodeToString(secret)

	logFile, err := os.Create(filepath.Join(dir, "ingress.log")) // #nosec G304 -- a log file in the benchmark's own temporary directory
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin) // #nosec G204 -- the ingress binary this command just built
	cmd.Env = append(os.Environ(),
		"INGRESS_ADDR=127.0.0.1:0",
		"HTTP_ADDR=127.0.0.1:0",
		"NATS_URL="+env.natsURL,
		"STRIPE_WEBHOOK_SECRET="+o.secret,
		"STRIPE_LIVEMODE=",
		"LOG_LEVEL=info",
		"LOG_FORMAT=json", // the serving line is read as JSON
		"OTEL_EXPORTER_OTLP_ENDPOINT=",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=",
	)
	cmd.Env = append(cmd.Env, o.ingressEnv...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ingress: %w", err)
	}
	env.cmd = cmd
	env.exited = make(chan error, 1)

	addrc := make(chan string, 1)
	go func() {
		// The serving line gives the bound port; everything is kept in
		// the log file for a post-mortem.
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			fmt.Fprintln(logFile, string(line))
			var rec struct {
				Msg     string `json:"msg"`
				Webhook string `json:"webhook"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "ingress serving" && rec.Webhook != "" {
				select {
				case addrc <- rec.Webhook:
				default:
				}
			}
		}
		env.exited <- cmd.Wait()
		_ = logFile.Close()
	}()

	select {
	case addr := <-addrc:
		host, port, _ := net.SplitHostPort(addr)
		if host == "" || host == "::" || host == "0.0.0.0" {
			host = "127.0.0.1"
		}
		o.url = "http://" + net.JoinHostPort(host, port) + "/webhooks/stripe"
	case err := <-env.exited:
		env.cmd = nil
		return nil, fmt.Errorf("ingress exited before listening (%v); log in %s", err, logFile.Name())
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("ingress did not report its address within 60s; log in %s", logFile.Name())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	o.pid = cmd.Process.Pid
	fmt.Fprintf(out, "ingressbench: ingress pid %d (separate process, %s) at %s; NATS embedded in the load generator at %s, JetStream file store in %s\n",
		o.pid, bin, o.url, env.natsURL, filepath.Join(dir, "jetstream"))
	return env, nil
}

// buildIngress builds the ingress command from the workspace that holds the
// working directory.
func buildIngress(ctx context.Context, bin string) error {
	root, err := workspaceRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./services/ingress/cmd/ingress") // #nosec G204 -- go build of this repository's ingress
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ingress in %s: %w", root, err)
	}
	return nil
}

func workspaceRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	work := strings.TrimSpace(string(b))
	if work == "" || work == "off" {
		return "", errors.New("not inside the go.work workspace; run from the repository or pass -ingress-bin")
	}
	return filepath.Dir(work), nil
}

// checkStream confirms every 200 left exactly one message: the stream must
// hold at least the accepted count (warm-up requests add to it), and the
// ingress log must show no errors.
func (e *selfHosted) checkStream(ctx context.Context, res result, out io.Writer) error {
	nc, err := nats.Connect(e.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, "BILLING_EVENTS")
	if err != nil {
		return fmt.Errorf("stream BILLING_EVENTS: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "stream     BILLING_EVENTS holds %d messages, %.1f MiB on file storage (accepted in the measured window: %d)\n",
		info.State.Msgs, float64(info.State.Bytes)/(1<<20), res.accepted)
	if info.State.Msgs < uint64(res.accepted-res.dups) { // #nosec G115 -- accepted counts are never negative
		return fmt.Errorf("stream holds %d messages but %d events were accepted", info.State.Msgs, res.accepted-res.dups)
	}
	return nil
}

func (e *selfHosted) stop(out io.Writer) {
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-e.exited:
			if err != nil {
				fmt.Fprintf(out, "ingressbench: ingress exited: %v (log in %s)\n", err, filepath.Join(e.dir, "ingress.log"))
			}
		case <-time.After(30 * time.Second):
			_ = e.cmd.Process.Kill()
			fmt.Fprintln(out, "ingressbench: ingress did not stop within 30s of SIGTERM; killed")
		}
	}
	if e.nats != nil {
		e.nats.Shutdown()
		e.nats.WaitForShutdown()
	}
	if e.keep {
		fmt.Fprintf(out, "ingressbench: kept %s\n", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}
