package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/config"
)

// ConsumerConfig describes one durable consumer.
type ConsumerConfig struct {
	// Stream defaults to BILLING_EVENTS.
	Stream string
	// Durable names the consumer; it is one subject token (no dots).
	Durable string
	// FilterSubjects defaults to DefaultFilterSubjects(Durable).
	FilterSubjects []string
	// Concurrency is the number of handlers running at once (8).
	Concurrency int
	// BatchSize is the most deliveries one BatchHandler call gets (1 means
	// the service's default). A batch is what is waiting when a handler
	// becomes free: nothing waits to fill it, so a quiet stream still gets
	// each event at once. Handlers that take one delivery ignore it.
	BatchSize int
	// PartialBatches, when set below Concurrency, is how many handlers may
	// run at once with a batch that is not full; another partial batch
	// waits for one of them to end (at most a second while none ends),
	// taking what arrives meanwhile. Events that trickle in then share
	// transactions instead of each taking an idle handler, while a
	// backlog, which fills every batch, still uses every handler. 0 leaves
	// every handler free to take a partial batch. Handlers that take one
	// delivery ignore it.
	PartialBatches int
	// MaxDeliver is the number of attempts before a dead letter (10).
	MaxDeliver int
	// AckWait is how long JetStream waits for an outcome before it
	// redelivers (30s); a running handler keeps its message alive.
	AckWait time.Duration
	// BackoffBase and BackoffMax bound the delay before a retry: the n-th
	// failure waits a random time in [b/2, b], b = min(Max, Base*2^(n-1)).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// HandlerTimeout bounds one handler call (0 means 60s). The handler's
	// context carries the deadline. Once it passes, the runner stops
	// keeping the call's messages alive and settles them as a transient
	// failure (a retry after the usual backoff, a dead letter past
	// MaxDeliver), whether or not the handler has returned; see
	// Consumer.Run for what becomes of a handler that ignores it.
	//
	// It does not compete with AckWait. AckWait is how long a replica may
	// stay silent before JetStream hands its messages to another one; a
	// live handler sends InProgress every AckWait/3, so it may run longer
	// than AckWait, until HandlerTimeout. A message is thus held for at most
	// HandlerTimeout while its process lives, and at most AckWait after it
	// dies.
	HandlerTimeout time.Duration
}

// Bounds of CONSUMER_HANDLER_TIMEOUT. Below the minimum a normal handler
// would time out on a busy database; above the maximum a hung handler
// holds its worker, and a partitioned consumer's customers, for longer than
// anyone would wait for one event.
const (
	defaultHandlerTimeout = 60 * time.Second
	minHandlerTimeout     = 100 * time.Millisecond
	maxHandlerTimeout     = time.Hour
)

// ConsumerConfigFromEnv reads CONSUMER_CONCURRENCY (8), CONSUMER_BATCH_SIZE
// (0: the service's default), CONSUMER_PARTIAL_BATCHES (0: the service's
// default), CONSUMER_MAX_DELIVER (10), CONSUMER_ACK_WAIT
// (30s), CONSUMER_BACKOFF_BASE (500ms), CONSUMER_BACKOFF_MAX (5m) and
// CONSUMER_HANDLER_TIMEOUT (60s, between 100ms and 1h; there is no way to
// turn it off). Problems are collected in e.
func ConsumerConfigFromEnv(e *config.Env, durable string) ConsumerConfig {
	c := ConsumerConfig{
		Stream:      StreamEvents,
		Durable:     durable,
		Concurrency: e.Int("CONSUMER_CONCURRENCY", 8),
		BatchSize:   e.Int("CONSUMER_BATCH_SIZE", 0),
		// Left at zero when unset: the service's default applies.
		PartialBatches: e.Int("CONSUMER_PARTIAL_BATCHES", 0),
		MaxDeliver:     e.Int("CONSUMER_MAX_DELIVER", 10),
		AckWait:        e.Duration("CONSUMER_ACK_WAIT", 30*time.Second),
		BackoffBase:    e.Duration("CONSUMER_BACKOFF_BASE", 500*time.Millisecond),
		BackoffMax:     e.Duration("CONSUMER_BACKOFF_MAX", 5*time.Minute),
		// Left at zero when unset: the runner applies the default.
		HandlerTimeout: e.Duration("CONSUMER_HANDLER_TIMEOUT", 0),
	}
	if c.HandlerTimeout == 0 && e.Lookup("CONSUMER_HANDLER_TIMEOUT") != "" {
		if _, err := time.ParseDuration(e.Lookup("CONSUMER_HANDLER_TIMEOUT")); err == nil {
			e.Fail("CONSUMER_HANDLER_TIMEOUT: 0 would mean no timeout; it can be at most %s", maxHandlerTimeout)
		}
	}
	if err := c.validate(); err != nil {
		e.Fail("%v", err)
	}
	return c
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Stream == "" {
		c.Stream = StreamEvents
	}
	if len(c.FilterSubjects) == 0 {
		c.FilterSubjects = DefaultFilterSubjects(c.Durable)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = 500 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = defaultHandlerTimeout
	}
	return c
}

func (c ConsumerConfig) validate() error {
	var errs []error
	if err := ValidSubjectToken(c.Durable); err != nil {
		errs = append(errs, fmt.Errorf("consumer durable name: %w", err))
	}
	for _, f := range c.FilterSubjects {
		if err := validFilter(f); err != nil {
			errs = append(errs, fmt.Errorf("consumer filter: %w", err))
		}
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		errs = append(errs, fmt.Errorf("CONSUMER_CONCURRENCY: %d is outside 1..%d", c.Concurrency, maxConcurrency))
	}
	if c.PartialBatches < 0 || c.PartialBatches > maxConcurrency {
		errs = append(errs, fmt.Errorf("CONSUMER_PARTIAL_BATCHES: %d is outside 0..%d", c.PartialBatches, maxConcurrency))
	}
	if c.BatchSize < 0 || c.BatchSize > maxBatch {
		errs = append(errs, fmt.Errorf("CONSUMER_BATCH_SIZE: %d is outside 1..%d", c.BatchSize, maxBatch))
	}
	if c.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("CONSUMER_MAX_DELIVER: %d is below 1", c.MaxDeliver))
	}
	if c.AckWait < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("CONSUMER_ACK_WAIT: %s is below 100ms", c.AckWait))
	}
	if c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase {
		errs = append(errs, fmt.Errorf("CONSUMER_BACKOFF_BASE %s / CONSUMER_BACKOFF_MAX %s: need 0 < base <= max", c.BackoffBase, c.BackoffMax))
	}
	if t := c.HandlerTimeout; t != 0 && (t < minHandlerTimeout || t > maxHandlerTimeout) {
		errs = append(errs, fmt.Errorf("CONSUMER_HANDLER_TIMEOUT: %s is outside %s..%s", t, minHandlerTimeout, maxHandlerTimeout))
	}
	return errors.Join(errs...)
}

// maxConcurrency bounds CONSUMER_CONCURRENCY: each handler may hold a
// database connection, and the pool sizes derived from it must fit an int32.
const maxConcurrency = 1000

// maxBatch bounds CONSUMER_BATCH_SIZE: a batch is one transaction, and
// every delivery in it waits for the slowest.
const maxBatch = 1000

// ConsumerOptions are the runner's collaborators.
type ConsumerOptions struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	// Registry, when set, receives the lr_consumer_* and lr_dlq_depth metrics.
	Registry prometheus.Registerer
	// DrainTimeout bounds how long Run waits for handlers in flight once its
	// context ends (25s, inside Kubernetes' default 30 s grace). Handlers
	// still running then see their context cancelled.
	DrainTimeout time.Duration
	// AckAfter, when set, is handed each successful delivery's ack instead
	// of it being sent at once, and sends it when it sees fit: billing-state
	// holds acks until the commits they confirm are on disk (its commits do
	// not wait for the disk). An ack never sent means a redelivery after
	// AckWait, which the handler's processed_events check absorbs.
	AckAfter func(ack func())
	// PartitionKey, when set, sends every message whose payload gives the
	// same non-empty key to the same handler, so that concurrent handlers
	// never wait on each other for a key: billing-state passes
	// billingv1.EncodedCustomerID, because its batches lock their customers
	// until they commit. Messages with an empty key go to any handler. It
	// runs for every message on the goroutine that pulls them, so it must
	// be cheap, and it must not keep data.
	PartitionKey func(data []byte) string
	// StallAfter is how long the runner may take no message while its
	// durable has messages waiting before it counts as stalled (30s):
	// Stalled then fails, the runner logs why and sets its pull up again.
	// A leader election takes a few seconds; it must stay under this.
	StallAfter time.Duration
	// DeadLettered, when set, is told of each delivery once its dead letter
	// is stored in BILLING_DLQ (d.Event is nil when the payload could not
	// be decoded): billing-state marks the customer's status as unknown.
	// It runs on the settling goroutine, so it must return soon.
	DeadLettered func(ctx context.Context, d *Delivery)
}
