package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/launchready/launchready/pkg/wait"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pullUntilDone keeps pulling until ctx ends, setting the durable up again
// when it disappears (a broker restarted on memory storage, an operator's
// mistake) or when the watchdog finds the pull stuck (see watchProgress).
func (c *Consumer) pullUntilDone(ctx context.Context, slots chan struct{}, work *dispatcher, reset <-chan struct{}) error {
	first := true
	retry := 250 * time.Millisecond
	for {
		cons, err := c.ensureConsumer(ctx, first)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if first {
			c.log.Info("consumer running", "stream", c.cfg.Stream, "filter", c.cfg.FilterSubjects,
				"concurrency", c.cfg.Concurrency, "max_deliver", c.cfg.MaxDeliver, "ack_wait", c.cfg.AckWait.String(),
				"handler_timeout", c.cfg.HandlerTimeout.String())
		}
		first = false
		err = c.fetchIntoQueues(ctx, cons, slots, work, reset)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
			return err
		}
		if errors.Is(err, errStalled) {
			// The watchdog has said why; set up again at once.
			retry = 250 * time.Millisecond
			continue
		}
		c.log.Warn("consumer lost; setting it up again", "error", Redact(fmt.Sprint(err)))
		if !wait.Sleep(ctx, retry) {
			return nil
		}
		retry = min(2*retry, 5*time.Second)
	}
}

// durableConfig is the JetStream side of the consumer.
func (c *Consumer) durableConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.cfg.Durable,
		Description:    "launchready " + c.cfg.Durable,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		FilterSubjects: c.cfg.FilterSubjects,
		// The runner enforces MaxDeliver itself: if the server stopped
		// delivering at the limit, a message whose dead-letter publish
		// failed on its last attempt would be stranded, unacked, forever.
		MaxDeliver:    -1,
		MaxAckPending: max(4*c.window(), 256),
	}
}

// ensureConsumer creates or updates the durable. At start, a refusal (no
// stream, bad config) is returned at once and only "broker not answering"
// is retried; when recovering, everything is retried until ctx ends.
func (c *Consumer) ensureConsumer(ctx context.Context, first bool) (jetstream.Consumer, error) {
	delay := 250 * time.Millisecond
	for {
		cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, c.durableConfig())
		if err == nil {
			return cons, nil
		}
		if first && !connectionTrouble(err) {
			return nil, fmt.Errorf("create consumer on %s: %w", c.cfg.Stream, err)
		}
		c.log.Warn("cannot set up consumer yet; retrying", "error", Redact(err.Error()), "retry_in", delay.String())
		if !wait.Sleep(ctx, delay) {
			return nil, ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// fetchWait bounds one pull request. Shutdown waits for the request in
// flight to end rather than abandoning it, because a message the server
// sends to an abandoned request is stuck until AckWait; so this also bounds
// how long Run takes to stop pulling.
const fetchWait = time.Second

// window is how many messages the runner holds at once. With batches it
// holds two per handler, so that a handler finishing a batch finds the next
// one already waiting instead of what trickled in meanwhile.
func (c *Consumer) window() int {
	if c.cfg.BatchSize > 1 {
		return 2 * c.cfg.Concurrency * c.cfg.BatchSize
	}
	return c.cfg.Concurrency
}

// fetchIntoQueues pulls only as many messages as there are free slots, so
// little sits in a client buffer with its AckWait running, and queues each
// for the handlers as soon as it arrives.
//
// It uses one Fetch per batch rather than the Messages iterator: under load
// the iterator's pull accounting can drift and stall until its heartbeat
// check fires (30 s), which we reproduced on the embedded server.
//
// Every failure is retried, whatever it is (no responders while a leader
// is elected, a leadership change, a reconnect in progress, a pull that
// gets no answer), and the watchdog stops a loop that no longer takes
// messages while some are waiting, through reset.
func (c *Consumer) fetchIntoQueues(ctx context.Context, cons jetstream.Consumer, slots chan struct{}, work *dispatcher, reset <-chan struct{}) error {
	failures := 0
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-reset:
			return errStalled
		case <-ctx.Done():
			return nil
		}
		select {
		case <-reset:
			<-slots
			return errStalled
		default:
		}
		n := 1
		for n < cap(slots) {
			select {
			case slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}

		got, err := c.fetch(cons, n, work)
		for range n - got {
			<-slots
		}
		if got > 0 {
			c.markMoved()
		}
		if err == nil {
			if failures > 0 {
				c.log.Info("pulling messages again", "after_failures", failures)
			}
			failures = 0
			continue
		}
		c.progress.pullFailed(err)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrConnectionClosed) {
			return err
		}
		// The broker is unreachable or refused the pull (no responders while
		// a leader is elected or JetStream restarts, a leadership change, a
		// reconnect in progress): back off, and make sure there is still a
		// consumer to pull from.
		failures++
		if failures == 1 || failures%10 == 0 {
			c.log.Warn("cannot pull messages; retrying", "error", Redact(err.Error()), "failures", failures)
		}
		select {
		case <-time.After(pullRetryDelay(failures)):
		case <-reset:
			return errStalled
		case <-ctx.Done():
			return nil
		}
		if failures%4 == 0 {
			if gone := c.consumerGone(ctx, cons); gone != nil {
				return gone
			}
		}
	}
	return nil
}

// pullRetryDelay is the wait after the n-th failed pull in a row: short at
// first, since an election is over in a second or two, then up to 2 s.
func pullRetryDelay(n int) time.Duration {
	return min(time.Duration(n)*100*time.Millisecond, 2*time.Second)
}

// fetch asks for up to n messages and queues each one as it arrives; the
// caller holds n slots and the workers release one per message. It returns
// the number of messages queued.
func (c *Consumer) fetch(cons jetstream.Consumer, n int, work *dispatcher) (int, error) {
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		work.enqueue(msg)
	}
	return got, batch.Error()
}

// consumerGone returns an error when the durable no longer exists.
func (c *Consumer) consumerGone(ctx context.Context, cons jetstream.Consumer) error {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := cons.Info(ictx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return nil
}
