package main

import (
	"context"
	"fmt"
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

// backendPids lists the Postgres server processes serving db (other than
// the observer's own), read at each call so new pool connections count.
func backendPids(pool *pgxpool.Pool, db string) func() []int {
	return func() []int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
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
	go func() {
		defer close(w.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rows, err := pool.Query(ctx, `SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, ''), left(query, 48)
				FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND state <> 'idle'`, db)
			if err == nil {
				for rows.Next() {
					var st, wt, we, q string
					if rows.Scan(&st, &wt, &we, &q) == nil {
						w.mu.Lock()
						w.hist[classify(st, wt, we, q)]++
						w.mu.Unlock()
					}
				}
				rows.Close()
			}
			cancel()
		}
	}()
	return w
}

// classify names a session state for the report; the schema in the last
// statement says which service the session belongs to.
func classify(state, wt, we, q string) string {
	svc := "?"
	switch {
	case strings.Contains(q, "billing."):
		svc = "billing-state"
	case strings.Contains(q, "crm."), strings.Contains(q, "pg_advisory_xact_lock(hashtext("):
		svc = "crm-sync"
	case strings.Contains(q, "support."), strings.Contains(q, "hashtextextended("):
		svc = "support-notify"
	}
	switch {
	case state == "idle in transaction" && wt == "Client":
		return "idle in transaction, waiting for the service's next statement (" + svc + ")"
	case state == "idle in transaction":
		return "idle in transaction (" + svc + ")"
	case wt == "":
		return "running on a CPU"
	case we == "WALWrite" || we == "WALSync" || we == "WALInsert" || we == "WALBufMapping":
		return "commit: writing and flushing WAL (" + wt + ":" + we + ")"
	case wt == "Lock" || wt == "LWLock":
		return "lock wait (" + wt + ":" + we + ")"
	}
	return wt + ":" + we
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
	p := &profiler{dir: dir, procs: map[string]*exec.Cmd{}, files: map[string]string{}}
	for name, pid := range pids {
		if strings.HasPrefix(name, "loadbench") {
			continue
		}
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".data")
		cmd := exec.Command("perf", "record", "-q", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", f,
			"--", "sleep", strconv.Itoa(int(d.Seconds())))
		if cmd.Start() == nil {
			p.procs[name], p.files[name] = cmd, f
		}
	}
	return p
}

// finish waits for the recordings and returns each process's hottest
// functions (self time).
func (p *profiler) finish() map[string]string {
	out := map[string]string{}
	for name, cmd := range p.procs {
		_ = cmd.Wait()
		rep, err := exec.Command("perf", "report", "-i", p.files[name], "--stdio", "--no-children",
			"--sort", "symbol", "-g", "none", "--percent-limit", "1.5").Output()
		if err != nil {
			continue
		}
		var lines []string
		for _, l := range strings.Split(string(rep), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			lines = append(lines, l)
			if len(lines) == 12 {
				break
			}
		}
		out[name] = strings.Join(lines, "\n")
	}
	os.RemoveAll(p.dir)
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
