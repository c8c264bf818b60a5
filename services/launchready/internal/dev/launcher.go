package dev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
)

// service is one service as the launcher sees it: its name, its own
// settings over the shared ones, and a function that builds its config
// from the environment and runs it.
type service struct {
	name string
	env  map[string]string
	run  func(ctx context.Context, getenv config.Getenv, log *slog.Logger, ready func(map[string]string)) error
}

// launcher runs the services side by side in one process, as a container
// runtime runs them apart. A service that fails after it has served (its
// NATS connection closed for good, a part that stopped) is restarted alone,
// after a pause that doubles with each failure in a row, from firstWait up
// to maxWait; a run that lasted stableAfter starts the count again. A
// service that fails before it ever served ends the launch: the cause is
// then its configuration or a port in use, which a restart would only
// repeat.
type launcher struct {
	log    *slog.Logger
	logs   *logging.Setup
	getenv config.Getenv
	common map[string]string

	firstWait, maxWait, stableAfter time.Duration
}

// Restart pauses of `launchready dev`.
const (
	firstRestartWait = time.Second
	maxRestartWait   = 30 * time.Second
	stableRun        = time.Minute
)

// run runs every service until ctx ends or one fails before serving.
// ready is called with each service's addresses whenever it serves, so
// again after each restart.
func (l *launcher) run(ctx context.Context, services []service, ready func(name string, addrs map[string]string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.keep(ctx, s, func(a map[string]string) { ready(s.name, a) }); err != nil {
				once.Do(func() { firstErr = fmt.Errorf("%s: %w", s.name, err) })
				l.log.Error("service stopped before it served", "service_name", s.name, "error", err.Error())
				cancel()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// keep runs s, restarting it after failures once it has served.
func (l *launcher) keep(ctx context.Context, s service, ready func(map[string]string)) error {
	over := map[string]string{"OTEL_SERVICE_NAME": s.name}
	for k, v := range l.common {
		over[k] = v
	}
	for k, v := range s.env {
		over[k] = v
	}
	getenv := config.Overlay(l.getenv, over)
	var served atomic.Bool
	wait := l.firstWait
	for restarts := 0; ; restarts++ {
		began := time.Now()
		var err error
		withProfileLabel(ctx, s.name, func(ctx context.Context) {
			err = s.run(ctx, getenv, l.logs.Logger(s.name), func(a map[string]string) {
				served.Store(true)
				ready(a)
			})
		})
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped on its own")
		}
		if !served.Load() {
			return err
		}
		if time.Since(began) >= l.stableAfter {
			wait = l.firstWait
		}
		l.log.Error("service failed; restarting it", "service_name", s.name, "error", err.Error(),
			"restart_in", wait.String(), "restarts", restarts+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, l.maxWait)
	}
}
