package dev

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	runtimepprof "runtime/pprof"
	"time"

	"github.com/launchready/launchready/pkg/httpserver"
)

// profileLabel is the pprof label that names the part of `launchready dev`
// a goroutine works for: a service's name, or "nats-server" for the
// embedded broker. Goroutines inherit it from the one that starts them, so
// a CPU profile of the whole process splits by service with
// `go tool pprof -tags` (or -tagfocus=service=crm-sync).
const profileLabel = "service"

// withProfileLabel runs f with every goroutine it starts labelled as
// part's.
func withProfileLabel(ctx context.Context, part string, f func(context.Context)) {
	runtimepprof.Do(ctx, runtimepprof.Labels(profileLabel, part), f)
}

// serveProfiles serves net/http/pprof on addr (LR_PPROF_ADDR) until ctx
// ends. It is opt-in and for a developer's machine: profiles show code
// paths and timings, so the address should be a loopback one.
func serveProfiles(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := httpserver.Listen(addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	// A CPU profile or trace streams for as long as its ?seconds= asks.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := httpserver.Serve(ctx, srv, ln, time.Second); err != nil {
			log.Warn("pprof listener stopped", "error", err.Error())
		}
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return ln.Addr(), nil
}
