package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// backendPids returns, for each service that runs, a lister of the Postgres
// server processes serving it on db (sessions are named by
// application_name), plus one for the database's other sessions, such as
// this harness's own queries. Each call reads pg_stat_activity afresh, so
// new pool connections count.
func backendPids(pool *pgxpool.Pool, db string, services []string) map[string]func() []int {
	list := func(app string) func() []int {
		return func() []int {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity
				WHERE datname = $1 AND pid <> pg_backend_pid()
				AND CASE WHEN application_name = ANY($2) THEN application_name ELSE '' END = $3`, db, services, app)
			if err != nil {
				return nil
			}
			out, _ := pgx.CollectRows(rows, pgx.RowTo[int32])
			pids := make([]int, len(out))
			for i, p := range out {
				pids[i] = int(p)
			}
			return pids
		}
	}
	m := map[string]func() []int{"postgres, other sessions": list("")}
	for _, sv := range services {
		m["postgres for "+sv] = list(sv)
	}
	return m
}

// waitSampler samples what the database's sessions are doing every 10 ms:
// the off-CPU view a CPU profile cannot give.
type waitSampler struct {
	mu   sync.Mutex
	hist map[string]int
	stop chan struct{}
	done chan struct{}
}

func sampleWaits(pool *pgxpool.Pool, db string) *waitSampler {
	w := &waitSampler{hist: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go every(10*time.Millisecond, w.stop, w.done, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rows, err := pool.Query(ctx, `SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(query, 1000), application_name
				FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND state <> 'idle'`, db)
		if err == nil {
			for rows.Next() {
				var st, wt, we, q, app string
				if rows.Scan(&st, &wt, &we, &q, &app) == nil {
					w.mu.Lock()
					w.hist[classify(st, wt, we, q, app)]++
					w.mu.Unlock()
				}
			}
			rows.Close()
		}
		cancel()
	})
	return w
}

// classify names a session state for the report, with the service the
// session belongs to (its application_name; the outbox relay shares
// billing-state's pool and is told by its statements).
func classify(state, wt, we, q, app string) string {
	svc := app
	switch {
	case app == "billing-state" && strings.Contains(q, "billing.outbox") && !strings.Contains(q, "INSERT"):
		svc = "billing-state outbox relay"
	case app == "":
		svc = "other session, last statement: " + strings.Join(strings.Fields(q), " ")
		if len(svc) > 70 {
			svc = svc[:70]
		}
	}
	switch {
	case state == "idle in transaction" && wt == "Client":
		return "idle in transaction, waiting for the service's next statement (" + svc + ")"
	case state == "idle in transaction":
		return "idle in transaction (" + svc + ")"
	case wt == "":
		return "running on a CPU (" + svc + ")"
	case we == "WALWrite" || we == "WALSync" || we == "WALInsert" || we == "WALBufMapping":
		return "commit: writing and flushing WAL (" + wt + ":" + we + ", " + svc + ")"
	case wt == "Lock" || wt == "LWLock":
		return "lock wait (" + wt + ":" + we + ", " + svc + ")"
	}
	return wt + ":" + we + " (" + svc + ")"
}

func (w *waitSampler) finish() map[string]int {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hist
}

// profiler runs perf record on each process for the phase.
type profiler struct {
	dir   string
	procs map[string]*exec.Cmd
	files map[string]string
	exe   map[string]string // binary name, perf's dso for the process's own code
}

func startPerf(pids map[string]int, d time.Duration) *profiler {
	if _, err := exec.LookPath("perf"); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench: -perf: perf not found; no profiles")
		return nil
	}
	dir, err := os.MkdirTemp("", "loadbench-perf-")
	if err != nil {
		return nil
	}
	p := &profiler{dir: dir, procs: map[string]*exec.Cmd{}, files: map[string]string{}, exe: map[string]string{}}
	for name, pid := range pids {
		if strings.HasPrefix(name, "loadbench") {
			continue
		}
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".data")
		cmd := exec.Command("perf", "record", "-q", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", f, // #nosec G204 -- perf with a pid and file this command chose
			"--", "sleep", strconv.Itoa(int(d.Seconds())))
		if cmd.Start() == nil {
			p.procs[name], p.files[name] = cmd, f
			if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
				p.exe[name] = filepath.Base(exe)
			}
		}
	}
	return p
}

// finish waits for the recordings and returns each process's hottest
// functions (self time).
func (p *profiler) finish() map[string]string {
	out := map[string]string{}
	top := func(n int, args ...string) []string {
		rep, err := exec.Command("perf", append([]string{"report", "--stdio", "--no-children", "-g", "none"}, args...)...).Output() // #nosec G204 -- perf report over the recording this command made
		if err != nil {
			return nil
		}
		var lines []string
		for _, l := range strings.Split(string(rep), "\n") {
			l = strings.Join(strings.Fields(l), " ")
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			lines = append(lines, l)
			if len(lines) == n {
				break
			}
		}
		return lines
	}
	for name, cmd := range p.procs {
		_ = cmd.Wait()
		// Where the CPU went by binary (kernel vs the process's own code),
		// then the process's own hottest functions.
		lines := append([]string{"by object:"}, top(4, "-i", p.files[name], "--sort", "dso")...)
		lines = append(lines, "own code, hottest functions (share of all samples):")
		lines = append(lines, top(10, "-i", p.files[name], "--sort", "symbol", "--dsos", p.exe[name])...)
		out[name] = strings.Join(lines, "\n")
	}
	_ = os.RemoveAll(p.dir)
	return out
}

// topWaits renders the session-state histogram, largest first.
func topWaits(h map[string]int) []string {
	total := 0
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range h {
		total += v
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v })
	var out []string
	for i, x := range kvs {
		if i == 10 {
			break
		}
		out = append(out, fmt.Sprintf("%5.1f%% %s", 100*float64(x.v)/float64(total), x.k))
	}
	return out
}

// metric is a Prometheus histogram's sum and count.
type metric struct{ sum, count float64 }

func (m metric) sub(o metric) metric { return metric{m.sum - o.sum, m.count - o.count} }

// avg is the mean of a histogram that does not measure seconds.
func (m metric) avg() float64 {
	if m.count <= 0 {
		return 0
	}
	return m.sum / m.count
}

func (m metric) mean() time.Duration {
	if m.count <= 0 {
		return 0
	}
	return time.Duration(m.sum / m.count * float64(time.Second))
}

// scrape reads the _sum and _count of every histogram at url, and the value
// of every counter (as sum), each summed over its label sets.
func scrape(url string) map[string]metric {
	out := map[string]metric{}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || strings.HasPrefix(l, "#") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		// Series of one name (one per label set) add up.
		series, _, _ := strings.Cut(f[0], "{")
		if name, ok := strings.CutSuffix(series, "_sum"); ok {
			m := out[name]
			m.sum += v
			out[name] = m
		} else if name, ok := strings.CutSuffix(series, "_count"); ok {
			m := out[name]
			m.count += v
			out[name] = m
		} else if strings.HasSuffix(series, "_total") {
			m := out[series] // a counter: its value in sum
			m.sum += v
			out[series] = m
		}
	}
	return out
}

// commitProber times a one-row autocommit insert every 10 ms, into a table
// of its own that no service touches: how long any commit waits on this
// Postgres, whatever the services do. When it stalls, every service's
// commits stall with it.
type commitProber struct {
	mu   sync.Mutex
	lat  []time.Duration
	stop chan struct{}
	done chan struct{}
}

func probeCommits(pool *pgxpool.Pool) *commitProber {
	c := &commitProber{stop: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.loadbench_commit_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`)
	cancel()
	if err != nil {
		close(c.done)
		return c
	}
	go every(10*time.Millisecond, c.stop, c.done, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		_, err := pool.Exec(ctx, `INSERT INTO public.loadbench_commit_probe DEFAULT VALUES`)
		cancel()
		if err == nil {
			c.mu.Lock()
			c.lat = append(c.lat, time.Since(start))
			c.mu.Unlock()
		}
	})
	return c
}

func (c *commitProber) finish() []time.Duration {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lat
}

// every runs fn each interval until stop closes, then closes done.
func every(interval time.Duration, stop <-chan struct{}, done chan<- struct{}, fn func()) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		fn()
	}
}
