package bus

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keepAliveTimer sends InProgress while a handler works so that JetStream
// does not redeliver a message that is merely slow. It uses one timer per
// handler call rather than a goroutine per message.
type keepAliveTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// startKeepAlive sends InProgress for msgs every period until stop.
func startKeepAlive(msgs []jetstream.Msg, every time.Duration) *keepAliveTimer {
	k := &keepAliveTimer{}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.t = time.AfterFunc(every, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.stopped {
			return
		}
		for _, msg := range msgs {
			_ = msg.InProgress()
		}
		k.t.Reset(every)
	})
	return k
}

// stop ends the InProgress; once it returns, none is sent any more. It may
// be called more than once.
func (k *keepAliveTimer) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.t.Stop()
}
