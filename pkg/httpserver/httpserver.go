// Package httpserver serves a service's operational endpoints (/healthz,
// /readyz, /metrics) and shuts HTTP servers down without dropping requests
// in flight.
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// NewRegistry returns a Prometheus registry with the Go and process
// collectors, one per service so that services sharing a process keep their
// metrics apart.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Probes are the checks behind the two probes. Live says whether the
// process is worth keeping: a failing /healthz gets it restarted, so only
// what a restart cures belongs there (a connection closed for good). Ready
// says whether it may take work now (dependencies reachable).
type Probes struct {
	Live, Ready *Checks
}

// OpsProbes registers /healthz (Live), /readyz (Ready) and /metrics on mux.
// Each answers 200, or 503 naming the failing checks; a nil set always
// passes.
func OpsProbes(mux *http.ServeMux, reg *prometheus.Registry, p Probes) {
	mux.HandleFunc("GET /healthz", probe(p.Live, "ok"))
	mux.HandleFunc("GET /readyz", probe(p.Ready, "ready"))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

// PublicReady answers like /readyz, 200 or 503, without naming the
// failing checks: for a listener that faces the outside, where a load
// balancer or a benchmark may ask whether to send traffic, but the state of
// the dependencies is nobody else's business.
func PublicReady(checks *Checks) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if failed := checks.run(ctx); len(failed) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

func probe(checks *Checks, okStatus string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if failed := checks.run(ctx); len(failed) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": okStatus})
	}
}

// Checks is a set of named checks that may grow while it is served: a
// service adds the checks of what it wires as it wires it.
type Checks struct {
	mu     sync.Mutex
	checks map[string]Check
}

// Add adds or replaces the check called name.
func (c *Checks) Add(name string, check Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]Check{}
	}
	c.checks[name] = check
}

// run runs every check, in name order, and returns the failing ones.
func (c *Checks) run(ctx context.Context) map[string]string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	names := make([]string, 0, len(c.checks))
	for n := range c.checks {
		names = append(names, n)
	}
	checks := maps.Clone(c.checks)
	c.mu.Unlock()
	sort.Strings(names)
	failed := map[string]string{}
	for _, n := range names {
		if err := checks[n](ctx); err != nil {
			failed[n] = err.Error()
		}
	}
	return failed
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Listen opens addr; a separate step so a caller can learn the bound port
// (addr ":0") before serving.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// Serve runs srv on ln until ctx is done, then stops accepting and waits up
// to grace for requests in flight to finish.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
