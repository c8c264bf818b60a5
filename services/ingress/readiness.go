package ingress

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
)

// streamCheckTTL is how long a successful stream lookup is trusted. Probes
// come every few seconds from every kubelet and load balancer; the lookup
// is a JetStream API round trip, the connection check is a field read.
const streamCheckTTL = 2 * time.Second

// readiness answers /readyz: ready means connected to NATS and the events
// stream exists, i.e. a publish now would be acked.
type readiness struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	okUntil time.Time
}

func newReadiness(nc *nats.Conn, js jetstream.JetStream) *readiness {
	return &readiness{nc: nc, js: js}
}

func (r *readiness) check(ctx context.Context) error {
	if !r.nc.IsConnected() {
		r.mu.Lock()
		r.okUntil = time.Time{}
		r.mu.Unlock()
		return fmt.Errorf("nats not connected (%s)", r.nc.Status())
	}
	r.mu.Lock()
	fresh := time.Now().Before(r.okUntil)
	r.mu.Unlock()
	if fresh {
		return nil
	}
	if _, err := r.js.Stream(ctx, bus.StreamEvents); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s does not exist", bus.StreamEvents)
		}
		return fmt.Errorf("stream %s: %w", bus.StreamEvents, err)
	}
	r.mu.Lock()
	r.okUntil = time.Now().Add(streamCheckTTL)
	r.mu.Unlock()
	return nil
}
