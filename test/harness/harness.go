// Package harness runs Launch Ready as a user's cluster would: each service
// and nats-server as its own process, built from this checkout, started,
// killed with SIGKILL and restarted by the tests.
//
// Everything takes a T, which *testing.T satisfies, so the load benchmark
// (a main program) drives the same stack as the tests. A failing test
// prints the tail of every process's output; LR_E2E_LOGDIR=dir keeps the
// whole of it in files.
package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// T is what the harness needs from a test: *testing.T and *testing.B
// satisfy it, and cmd/loadbench has its own.
type T interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	TempDir() string
}

// Services are the four service binaries, in start order.
var Services = []string{"ingress", "billing-state", "crm-sync", "support-notify"}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// RepoRoot finds the checkout root (the directory holding go.work).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory")
		}
		dir = parent
	}
}

// Binaries builds the four services and nats-server (v2.15, from the module
// the workspace pins) once per process and returns the directory holding
// them.
//
// The directory is stable (under the user cache dir, one per checkout) and
// guarded by a file lock: `go build -o` leaves an up-to-date binary alone, so the e2e, chaos
// and load binaries, which go test may run at the same time, share one
// build instead of linking five binaries each.
func Binaries(t T) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		buildDir, buildErr = buildAll()
		if buildErr == nil {
			t.Logf("harness: binaries ready in %s (%s)", buildDir, time.Since(start).Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatalf("harness: %v", buildErr)
	}
	return buildDir
}

func buildAll() (string, error) {
	pkgs := make([]string, 0, len(Services)+1)
	for _, s := range Services {
		pkgs = append(pkgs, "./services/"+s+"/cmd/"+s)
	}
	// nats-server resolves to the version pkg/go.mod pins.
	pkgs = append(pkgs, "github.com/nats-io/nats-server/v2")
	return build(append(append([]string{}, Services...), "nats-server"), pkgs)
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// Launchready builds the operator's command, `launchready`, once per
// process into the directory Binaries uses, and returns its path. It is
// apart from Binaries because only the tests that run the command need
// it, and it links every service.
func Launchready(t T) string {
	t.Helper()
	cliOnce.Do(func() {
		start := time.Now()
		var dir string
		dir, cliErr = build([]string{"launchready"}, []string{"./services/launchready/cmd/launchready"})
		if cliErr == nil {
			cliPath = filepath.Join(dir, "launchready")
			t.Logf("harness: launchready ready in %s (%s)", dir, time.Since(start).Round(time.Millisecond))
		}
	})
	if cliErr != nil {
		t.Fatalf("harness: %v", cliErr)
	}
	return cliPath
}

// build runs one `go build` of pkgs from the workspace root into this
// checkout's binary directory and checks that names are there.
func build(names, pkgs []string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	// One directory per checkout: two checkouts on one machine must never
	// run each other's binaries.
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(base, "launchready-e2e", hex.EncodeToString(sum[:6]), "bin")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("build dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- a lock file in this checkout's own build directory
	if err != nil {
		return "", fmt.Errorf("build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("build lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway

	// One invocation from the workspace root: the packages share their
	// dependencies' compilation.
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...) // #nosec G204 -- go build of this repository's packages
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("binary %s missing after build: %w", name, err)
		}
	}
	return dir, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not handed out before. The kernel may offer a port
// again as soon as the probe closes it, and two of one stack's processes
// then race for it (seen: billing-state's gRPC port was crm-sync's HTTP
// port, and billing-state exited with "address already in use").
func FreePort(t T) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		handedOut.Lock()
		seen := handedOut.ports[port]
		handedOut.ports[port] = true
		handedOut.Unlock()
		if !seen {
			return port
		}
	}
	t.Fatalf("free port: the kernel kept offering ports already handed out")
	return 0
}

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Proc is one running process with its output kept for failure reports.
type Proc struct {
	Name string
	bin  string
	args []string
	env  []string
	t    T
	log  io.Writer // optional copy of the output (LR_E2E_LOGDIR)

	mu        sync.Mutex
	cur       *run
	out       *lockedBuffer
	supervise bool
	closed    bool
	starts    int
	crashes   int
}

// run is one start of the process.
type run struct {
	cmd      *exec.Cmd
	done     chan struct{}
	intended bool // stopped on purpose: not a crash
}

// Start launches bin with env added to this process's environment.
func Start(t T, name, bin string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, bin: bin, args: args, env: env, t: t, out: &lockedBuffer{}}
	if dir := os.Getenv("LR_E2E_LOGDIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err == nil { // #nosec G703 -- LR_E2E_LOGDIR is set by whoever runs the tests
			if f, err := os.Create(filepath.Join(dir, name+"-"+time.Now().Format("150405.000")+".log")); err == nil { // #nosec G304 G703 -- LR_E2E_LOGDIR is set by whoever runs the tests
				p.log = f
				t.Cleanup(func() { _ = f.Close() })
			}
		}
	}
	if err := p.start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.Kill()
		if t.Failed() {
			t.Logf("---- %s output (tail) ----\n%s", name, p.Tail(8000))
		}
	})
	return p
}

func (p *Proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...) // #nosec G204 -- the binaries this package built
	cmd.Env = append(os.Environ(), p.env...)
	var w io.Writer = p.out
	if p.log != nil {
		w = io.MultiWriter(p.out, p.log)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	// Own process group, and SIGKILL if the test binary dies, so no
	// service outlives the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(w, "\n==== %s started pid %d at %s ====\n", p.Name, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano))
	r := &run{cmd: cmd, done: make(chan struct{})}
	p.cur = r
	go p.wait(r)
	return nil
}

// wait reaps the process and, when supervised and not stopped on purpose,
// starts it again as a container runtime would.
func (p *Proc) wait(r *run) {
	err := r.cmd.Wait()
	p.mu.Lock()
	restart := p.supervise && !r.intended && !p.closed && p.cur == r
	if !r.intended {
		p.crashes++
	}
	p.mu.Unlock()
	close(r.done)
	fmt.Fprintf(p.out, "\n==== %s pid %d exited at %s: %v ====\n", p.Name, r.cmd.Process.Pid, time.Now().Format(time.RFC3339Nano), err)
	if !restart {
		return
	}
	// Back off a little, like a restart policy, so a process that cannot
	// start does not spin.
	time.Sleep(500 * time.Millisecond) // restart back-off, not a wait for a condition
	p.mu.Lock()
	again := !p.closed && p.cur == r
	p.mu.Unlock()
	if again {
		if err := p.start(); err != nil {
			fmt.Fprintf(p.out, "\n==== %s restart failed: %v ====\n", p.Name, err)
		}
	}
}

// Supervise makes the harness restart the process whenever it exits on its
// own (a crash or a start-up failure), as Kubernetes' restart policy would.
// Kill, Stop and Restart are not crashes.
func (p *Proc) Supervise() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.supervise = true
}

// Crashes counts exits that nobody asked for; Starts counts every start.
func (p *Proc) Crashes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashes
}

// Starts counts every start of the process, restarts included.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM and waits up to 30 s, then kills.
func (p *Proc) Stop() {
	if !p.signal(syscall.SIGTERM, 30*time.Second) {
		p.Kill()
	}
}

func (p *Proc) signal(sig syscall.Signal, wait time.Duration) bool {
	p.mu.Lock()
	r := p.cur
	if r != nil {
		r.intended = true
	}
	p.mu.Unlock()
	if r == nil {
		return true
	}
	select {
	case <-r.done:
		return true
	default:
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// Restart kills the process (SIGKILL) and starts it again with the same
// command line.
func (p *Proc) Restart() error {
	p.Kill()
	return p.Resume()
}

// Resume starts a process that was killed or stopped. It is safe to call
// from any goroutine.
func (p *Proc) Resume() error {
	if p.Running() {
		return nil
	}
	if err := p.start(); err != nil {
		return fmt.Errorf("restart %s: %w", p.Name, err)
	}
	return nil
}

// Running reports whether the process is still alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// ExitCode returns the exit status of the current process once it has
// ended (-1 when a signal ended it); exited is false while it runs.
func (p *Proc) ExitCode() (code int, exited bool) {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil {
		return 0, false
	}
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}

// Pid returns the process id of the current process.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.cmd.Process.Pid
}

// Tail returns the last n bytes of the process output.
func (p *Proc) Tail(n int) string {
	s := p.out.String()
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Output returns everything the process printed (bounded; see
// lockedBuffer).
func (p *Proc) Output() string { return p.out.String() }

// RSS returns the resident set size in bytes, read from /proc.
func (p *Proc) RSS() int64 { return RSSOf(p.Pid()) }

// CPU returns the user+system CPU seconds of the current process.
func (p *Proc) CPU() float64 { return CPUSeconds(p.Pid()) }

// RSSOf reads VmRSS of pid from /proc (0 when unavailable).
func RSSOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			_, _ = fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

// CPUSeconds returns user+system CPU time of pid from /proc/<pid>/stat.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which may contain spaces, in parentheses.
	i := strings.LastIndex(s, ")")
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	var utime, stime float64
	_, _ = fmt.Sscanf(f[11], "%f", &utime)
	_, _ = fmt.Sscanf(f[12], "%f", &stime)
	return (utime + stime) / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// WaitHTTP polls url until it answers 200 or the deadline passes. A
// process in procs that exits meanwhile fails at once (unless supervised).
func WaitHTTP(t T, url string, timeout time.Duration, procs ...*Proc) {
	t.Helper()
	if err := PollHTTP(url, timeout, procs...); err != nil {
		t.Fatalf("%v", err)
	}
}

// PollHTTP is WaitHTTP returning an error.
func PollHTTP(url string, timeout time.Duration, procs ...*Proc) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		} else {
			last = err.Error()
		}
		for _, p := range procs {
			p.mu.Lock()
			sup := p.supervise
			p.mu.Unlock()
			if !sup && !p.Running() {
				return fmt.Errorf("%s exited while waiting for %s:\n%s", p.Name, url, p.Tail(4000))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s (last answer: %s)", url, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NumCPU is reported in benchmark output so figures can be compared.
func NumCPU() int { return runtime.NumCPU() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Keep memory bounded on long chaos runs: drop the oldest half past 8 MiB.
	if l.b.Len() > 8<<20 {
		keep := l.b.Bytes()[l.b.Len()/2:]
		nb := bytes.Buffer{}
		nb.Write(keep)
		l.b = nb
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
