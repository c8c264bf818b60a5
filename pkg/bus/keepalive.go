package bus

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keepAliveTimer sends InProgress while a handler works so that JetStream
// does not redeliver a message that is merely slow, and calls overdue, once,
// if the handler is still working at overdueAt. It uses one timer per
// handler call rather than a goroutine per message.
type keepAliveTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// start sends InProgress for msgs every period until stop or overdueAt,
// when it stops by itself and calls overdue.
func (k *keepAliveTimer) start(msgs []jetstream.Msg, every time.Duration, overdueAt time.Time, overdue func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.t = time.AfterFunc(min(every, time.Until(overdueAt)), func() {
		k.mu.Lock()
		if k.stopped {
			k.mu.Unlock()
			return
		}
		now := time.Now()
		if !now.Before(overdueAt) {
			k.stopped = true
			k.mu.Unlock()
			overdue()
			return
		}
		for _, msg := range msgs {
			_ = msg.InProgress()
		}
		k.t.Reset(min(every, overdueAt.Sub(now)))
		k.mu.Unlock()
	})
}

// stop ends the InProgress; once it returns, none is sent any more. It may
// be called more than once.
func (k *keepAliveTimer) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.t.Stop()
}
