package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Consumer runs a Handler over a durable pull consumer.
//
// The work is split by job, one file each: consumer_config.go (settings),
// pull.go (the durable and the fetch loop), dispatch.go (which handler gets
// a message), worker.go (batches), attempt.go (one delivery from arrival to
// settlement), handler_call.go (the handler call, its deadline and panics),
// settle.go (ack, retry or dead letter), backoff.go and keepalive.go.
type Consumer struct {
	js      jetstream.JetStream
	cfg     ConsumerConfig
	handler BatchHandler
	log     *slog.Logger
	tracer  trace.Tracer
	metrics *consumerMetrics
	drain   time.Duration
	// ackAfter: see ConsumerOptions.AckAfter.
	ackAfter func(ack func())
	// partitionKey: see ConsumerOptions.PartitionKey.
	partitionKey func(data []byte) string
	// stallAfter and progress: see ConsumerOptions.StallAfter and Stalled.
	stallAfter time.Duration
	progress   progress
	// deadLettered: see ConsumerOptions.DeadLettered.
	deadLettered func(ctx context.Context, d *Delivery)
	// partial bounds the handlers running partial batches; nil when
	// PartialBatches does not bound them (see ConsumerConfig).
	partial *partialGate

	// doubleAck waits for the server to confirm each ack. Off: a lost ack
	// only causes a redelivery, which the handlers' processed_events check
	// absorbs, and waiting costs a round trip per message (see
	// BenchmarkConsume).
	doubleAck bool
}

// NewConsumer prepares a consumer whose handler takes one delivery at a
// time; nothing talks to NATS until Run.
func NewConsumer(js jetstream.JetStream, cfg ConsumerConfig, h Handler, opts ConsumerOptions) *Consumer {
	var bh BatchHandler
	if h != nil {
		bh = func(_ context.Context, ds []*Delivery) []error {
			errs := make([]error, len(ds))
			for i, d := range ds {
				errs[i] = h(d.Context(), d)
			}
			return errs
		}
	}
	cfg.BatchSize = 1
	return newConsumer(js, cfg, bh, opts)
}

// NewBatchConsumer prepares a consumer whose handler takes up to
// cfg.BatchSize deliveries per call.
func NewBatchConsumer(js jetstream.JetStream, cfg ConsumerConfig, h BatchHandler, opts ConsumerOptions) *Consumer {
	return newConsumer(js, cfg, h, opts)
}

func newConsumer(js jetstream.JetStream, cfg ConsumerConfig, h BatchHandler, opts ConsumerOptions) *Consumer {
	cfg = cfg.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{
		js:           js,
		cfg:          cfg,
		handler:      h,
		log:          log.With("consumer", cfg.Durable),
		tracer:       tracerFrom(opts.TracerProvider),
		drain:        opts.DrainTimeout,
		ackAfter:     opts.AckAfter,
		partitionKey: opts.PartitionKey,
		stallAfter:   opts.StallAfter,
		deadLettered: opts.DeadLettered,
	}
	if c.drain <= 0 {
		c.drain = 25 * time.Second
	}
	if c.stallAfter <= 0 {
		c.stallAfter = defaultStallAfter
	}
	if cfg.BatchSize > 1 && cfg.PartialBatches > 0 && cfg.PartialBatches < cfg.Concurrency {
		c.partial = newPartialGate(cfg.PartialBatches)
	}
	if opts.Registry != nil && ValidSubjectToken(cfg.Durable) == nil {
		c.metrics = newConsumerMetrics(opts.Registry, cfg.Durable)
		registerBacklog(opts.Registry, newBacklogCollector(js, cfg.Stream, cfg.Durable))
	}
	return c
}

// registerBacklog replaces the collector of an earlier consumer with the
// same name, which would otherwise keep querying through a stale handle.
func registerBacklog(reg prometheus.Registerer, b *backlogCollector) {
	err := reg.Register(b)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		reg.Unregister(are.ExistingCollector)
		_ = reg.Register(b)
	}
}

// Config returns the configuration in use, defaults applied.
func (c *Consumer) Config() ConsumerConfig { return c.cfg }

// Run creates or updates the durable consumer and processes messages until
// ctx ends. It then stops pulling (once the pull request in flight ends, at
// most a second later), waits for handlers in flight (bounded by the drain
// timeout) and returns nil. It returns an error only when the consumer
// cannot be set up or the connection is closed under it.
//
// A handler that is still running a second after its context ended
// (HandlerTimeout, or the drain timeout at shutdown) has its deliveries
// settled without it: the runner stops their InProgress and naks them, and
// drops whatever the handler answers later. Go cannot stop a goroutine, so
// a handler that ignores its context keeps running; its worker waits for
// it before taking more messages, so such handlers never pile up beyond
// Concurrency, and a partitioned consumer never runs two handlers for one
// key. While it waits, lr_consumer_overdue_handlers counts it. At shutdown
// Run returns without it five seconds after the drain timeout.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.cfg.validate(); err != nil {
		return fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
	}
	if c.handler == nil {
		return fmt.Errorf("consumer %s: nil handler", c.cfg.Durable)
	}
	// Handlers outlive ctx so that shutdown finishes their work instead of
	// failing it; they are cancelled only when the drain timeout expires.
	handlerCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()

	// Up to window() messages are held at once: each takes a slot, fetched
	// messages wait in a queue for a free handler, which takes what is
	// there. Partitioned, each handler has a queue of its own.
	var workers sync.WaitGroup
	window := c.window()
	slots := make(chan struct{}, window)
	queues := make([]chan jetstream.Msg, 1)
	if c.partitionKey != nil {
		queues = make([]chan jetstream.Msg, c.cfg.Concurrency)
	}
	for i := range queues {
		queues[i] = make(chan jetstream.Msg, window)
	}
	running := make([]atomic.Pointer[handlerCall], c.cfg.Concurrency)
	for i := range c.cfg.Concurrency {
		workers.Go(func() { c.worker(handlerCtx, queues[i%len(queues)], slots, &running[i], len(queues) == 1) })
	}
	c.markMoved()
	reset := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watcher sync.WaitGroup
	watcher.Go(func() { c.watchProgress(watchCtx, func() int { return len(slots) }, reset) })
	err := c.pullUntilDone(ctx, slots, newDispatcher(queues, c.partitionKey), reset)
	stopWatch()
	watcher.Wait()
	for _, q := range queues {
		close(q)
	}
	c.waitHandlers(handlerCtx, &workers, hardStop, running)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
	}
	return nil
}

// waitHandlers waits for handlers in flight; past the drain timeout it
// cancels their context and gives them a short while to return. The
// deliveries of those that do not return within overdueGrace are settled
// without them, so that no InProgress outlives Run and another replica can
// take them at once.
func (c *Consumer) waitHandlers(handlerCtx context.Context, workers *sync.WaitGroup, hardStop context.CancelFunc, running []atomic.Pointer[handlerCall]) {
	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()
	t := time.NewTimer(c.drain)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	c.log.Warn("handlers still running after the drain timeout; cancelling them", "drain_timeout", c.drain.String())
	hardStop()
	t.Reset(overdueGrace)
	select {
	case <-done:
		return
	case <-t.C:
	}
	for i := range running {
		if hc := running[i].Load(); hc != nil {
			c.settleOverdue(handlerCtx, hc)
		}
	}
	t.Reset(5*time.Second - overdueGrace)
	select {
	case <-done:
	case <-t.C:
		c.log.Error("handlers ignored cancellation; returning without them")
	}
}
