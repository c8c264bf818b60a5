package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/pkg/config"
)

// Delivery is one message handed to a Handler.
type Delivery struct {
	Event *billingv1.BillingEvent
	// Subject is billing.events.<type>, or billing.replay.<durable>.<type>
	// for a replayed dead letter.
	Subject string
	// Delivered counts deliveries of this message to this consumer, from 1.
	Delivered uint64
	// StreamSeq is the message's sequence in BILLING_EVENTS.
	StreamSeq uint64
	// Replay is true for a dead letter put back by an operator.
	Replay bool
	Header nats.Header

	ctx       context.Context
	duplicate bool
}

// Context carries the delivery's consumer span. A BatchHandler uses it for
// the work it does on this delivery, so that each event keeps its own trace.
func (d *Delivery) Context() context.Context {
	if d.ctx == nil {
		return context.Background()
	}
	return d.ctx
}

// MarkDuplicate tells the runner the handler found the event already
// processed (its processed_events row exists). The delivery is still acked;
// the runner counts it in lr_consumer_duplicates_total so every consumer
// reports duplicates the same way.
func (d *Delivery) MarkDuplicate() { d.duplicate = true }

// Handler processes one delivery. nil acks it (also for events the handler
// ignores); Permanent(err) dead-letters it at once; RetryAfter(err, d) asks
// for another attempt after d; any other error retries with exponential
// backoff until MaxDeliver, then dead-letters. ctx carries the consumer
// span and is cancelled only if the handler outlives the shutdown grace.
type Handler func(ctx context.Context, d *Delivery) error

// BatchHandler processes several deliveries in one call, so that their
// work can share a database transaction. It returns one error per
// delivery, each with a Handler's meaning; a delivery's span is in
// d.Context(). A panic dead-letters nothing at once: the runner calls the
// handler again with each delivery alone, to find the one that panics.
type BatchHandler func(ctx context.Context, ds []*Delivery) []error

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
	// PartitionByCustomer sends every delivery of one customer to the same
	// handler, so that concurrent handlers never wait on each other for a
	// customer (billing-state's batches lock their customers until they
	// commit). Deliveries that name no customer go to any handler.
	PartitionByCustomer bool
	// BatchSize is the most deliveries one BatchHandler call gets (1 means
	// the service's default). A batch is what is waiting when a handler
	// becomes free: nothing waits to fill it, so a quiet stream still gets
	// each event at once. Handlers that take one delivery ignore it.
	BatchSize int
	// MaxDeliver is the number of attempts before a dead letter (10).
	MaxDeliver int
	// AckWait is how long JetStream waits for an outcome before it
	// redelivers (30s); a running handler keeps its message alive.
	AckWait time.Duration
	// BackoffBase and BackoffMax bound the delay before a retry: the n-th
	// failure waits a random time in [b/2, b], b = min(Max, Base*2^(n-1)).
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// ConsumerConfigFromEnv reads CONSUMER_CONCURRENCY (8), CONSUMER_BATCH_SIZE
// (0: the service's default), CONSUMER_MAX_DELIVER (10), CONSUMER_ACK_WAIT
// (30s), CONSUMER_BACKOFF_BASE (500ms) and CONSUMER_BACKOFF_MAX (5m).
// Problems are collected in e.
func ConsumerConfigFromEnv(e *config.Env, durable string) ConsumerConfig {
	c := ConsumerConfig{
		Stream:      StreamEvents,
		Durable:     durable,
		Concurrency: e.Int("CONSUMER_CONCURRENCY", 8),
		BatchSize:   e.Int("CONSUMER_BATCH_SIZE", 0),
		MaxDeliver:  e.Int("CONSUMER_MAX_DELIVER", 10),
		AckWait:     e.Duration("CONSUMER_ACK_WAIT", 30*time.Second),
		BackoffBase: e.Duration("CONSUMER_BACKOFF_BASE", 500*time.Millisecond),
		BackoffMax:  e.Duration("CONSUMER_BACKOFF_MAX", 5*time.Minute),
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
	return c
}

func (c ConsumerConfig) validate() error {
	var errs []error
	if err := validName(c.Durable); err != nil {
		errs = append(errs, fmt.Errorf("consumer durable name: %w", err))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("CONSUMER_CONCURRENCY: %d is below 1", c.Concurrency))
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
	return errors.Join(errs...)
}

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
}

// Consumer runs a Handler over a durable pull consumer.
type Consumer struct {
	js      jetstream.JetStream
	cfg     ConsumerConfig
	handler BatchHandler
	// batch: handler takes several deliveries (NewBatchConsumer).
	batch   bool
	log     *slog.Logger
	tracer  trace.Tracer
	metrics *consumerMetrics
	drain   time.Duration
	// ackAfter: see ConsumerOptions.AckAfter.
	ackAfter func(ack func())

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
	return newConsumer(js, cfg, bh, false, opts)
}

// NewBatchConsumer prepares a consumer whose handler takes up to
// cfg.BatchSize deliveries per call.
func NewBatchConsumer(js jetstream.JetStream, cfg ConsumerConfig, h BatchHandler, opts ConsumerOptions) *Consumer {
	return newConsumer(js, cfg, h, true, opts)
}

func newConsumer(js jetstream.JetStream, cfg ConsumerConfig, h BatchHandler, batch bool, opts ConsumerOptions) *Consumer {
	cfg = cfg.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{
		js:      js,
		cfg:     cfg,
		handler: h,
		batch:   batch,
		log:     log.With("consumer", cfg.Durable),
		tracer:  tracerFrom(opts.TracerProvider),
		drain:   opts.DrainTimeout,

		ackAfter: opts.AckAfter,
	}
	if c.drain <= 0 {
		c.drain = 25 * time.Second
	}
	if opts.Registry != nil && validName(cfg.Durable) == nil {
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
// timeout) and returns nil. It returns an error only when the consumer cannot be set up
// or the connection is closed under it.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.cfg.validate(); err != nil {
		return fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
	}
	if c.handler == nil {
		return fmt.Errorf("consumer %s: nil handler", c.cfg.Durable)
	}
	// Handlers outlive ctx so that shutdown finishes their work instead of
	// failing it; they are cancelled only when the drain timeout expires.
	hctx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()

	// Up to Concurrency×BatchSize messages are held at once: fetched
	// messages wait in a queue for a free handler, which takes what is
	// there. Partitioned, each handler has a queue of its own.
	var wg sync.WaitGroup
	window := c.window()
	sem := make(chan struct{}, window)
	queues := make([]chan jetstream.Msg, 1)
	if c.cfg.PartitionByCustomer {
		queues = make([]chan jetstream.Msg, c.cfg.Concurrency)
	}
	for i := range queues {
		queues[i] = make(chan jetstream.Msg, window)
	}
	for i := range c.cfg.Concurrency {
		wg.Add(1)
		go c.worker(hctx, queues[i%len(queues)], sem, &wg)
	}
	err := c.pull(ctx, sem, newDispatcher(queues))
	for _, q := range queues {
		close(q)
	}
	c.waitHandlers(&wg, hardStop)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
	}
	return nil
}

// pull keeps pulling, recreating the consumer if it disappears (a broker
// restarted on memory storage, an operator's mistake).
func (c *Consumer) pull(ctx context.Context, sem chan struct{}, work *dispatcher) error {
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
				"concurrency", c.cfg.Concurrency, "max_deliver", c.cfg.MaxDeliver, "ack_wait", c.cfg.AckWait.String())
		}
		first = false
		err = c.consume(ctx, cons, sem, work)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
			return err
		}
		c.log.Warn("consumer lost; setting it up again", "error", Redact(fmt.Sprint(err)))
		if !sleepCtx(ctx, retry) {
			return nil
		}
		retry = min(2*retry, 5*time.Second)
	}
}

func (c *Consumer) consumerConfig() jetstream.ConsumerConfig {
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
	wait := 250 * time.Millisecond
	for {
		cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, c.consumerConfig())
		if err == nil {
			return cons, nil
		}
		if first && !connectionTrouble(err) {
			return nil, fmt.Errorf("create consumer on %s: %w", c.cfg.Stream, err)
		}
		c.log.Warn("cannot set up consumer yet; retrying", "error", Redact(err.Error()), "retry_in", wait.String())
		if !sleepCtx(ctx, wait) {
			return nil, ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
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

// consume pulls only as many messages as there are free slots, so little
// sits in a client buffer with its AckWait running, and queues each for the
// handlers as soon as it arrives.
//
// It uses one Fetch per batch rather than the Messages iterator: under load
// the iterator's pull accounting can drift and stall until its heartbeat
// check fires (30 s), which we reproduced on the embedded server.
func (c *Consumer) consume(ctx context.Context, cons jetstream.Consumer, sem chan struct{}, work *dispatcher) error {
	failures := 0
	for ctx.Err() == nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
		for n < cap(sem) {
			select {
			case sem <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}

		got, err := c.fetch(cons, n, work)
		for range n - got {
			<-sem
		}
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrConnectionClosed) {
			return err
		}
		// The broker is unreachable or refused the pull (no responders while
		// JetStream restarts, a reconnect in progress): back off, and make
		// sure there is still a consumer to pull from.
		failures++
		if failures == 1 || failures%10 == 0 {
			c.log.Warn("cannot pull messages; retrying", "error", Redact(err.Error()), "failures", failures)
		}
		if !sleepCtx(ctx, min(time.Duration(failures)*250*time.Millisecond, 5*time.Second)) {
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

// fetch asks for up to n messages and queues each one as it arrives; the
// caller holds n slots and the handlers release one per message. It returns
// the number of messages queued.
func (c *Consumer) fetch(cons jetstream.Consumer, n int, work *dispatcher) (int, error) {
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		work.send(msg)
	}
	return got, batch.Error()
}

// dispatcher queues fetched messages for the handlers: into the one shared
// queue, or by customer into the handlers' own.
type dispatcher struct {
	queues []chan jetstream.Msg
	next   int
}

func newDispatcher(queues []chan jetstream.Msg) *dispatcher { return &dispatcher{queues: queues} }

// send never blocks: each queue holds as many messages as there are slots.
func (w *dispatcher) send(msg jetstream.Msg) {
	if len(w.queues) == 1 {
		w.queues[0] <- msg
		return
	}
	var q int
	if cus := customerOf(msg.Data()); cus != "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(cus))
		q = int(h.Sum32() % uint32(len(w.queues)))
	} else {
		q = w.next
		w.next = (w.next + 1) % len(w.queues)
	}
	w.queues[q] <- msg
}

// customerOf reads BillingEvent.customer_id from an encoded event without
// decoding the rest; "" when absent or unreadable.
func customerOf(b []byte) string {
	const customerField = 10 // BillingEvent.customer_id
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == customerField && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

// worker handles queued messages until work is closed: it takes the first
// one that comes and, for a batch handler, whatever else is already
// waiting, up to BatchSize.
func (c *Consumer) worker(hctx context.Context, work <-chan jetstream.Msg, sem <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	msgs := make([]jetstream.Msg, 0, c.cfg.BatchSize)
	for msg := range work {
		msgs = append(msgs[:0], msg)
	fill:
		for len(msgs) < c.cfg.BatchSize {
			select {
			case m, ok := <-work:
				if !ok {
					break fill
				}
				msgs = append(msgs, m)
			default:
				break fill
			}
		}
		c.processBatch(hctx, msgs)
		for range msgs {
			<-sem
		}
	}
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

// waitHandlers waits for handlers in flight; past the drain timeout it
// cancels their context and gives them a short while to return.
func (c *Consumer) waitHandlers(wg *sync.WaitGroup, hardStop context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
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
	t.Reset(5 * time.Second)
	select {
	case <-done:
	case <-t.C:
		c.log.Error("handlers ignored cancellation; returning without them")
	}
}

// flight is one message between its arrival and its settlement.
type flight struct {
	msg       jetstream.Msg
	d         *Delivery
	ev        *billingv1.BillingEvent
	span      trace.Span
	eventType string
	// ready: decoded and within MaxDeliver, so the handler gets it.
	ready bool
	herr  error
	took  time.Duration
}

// processBatch runs the handler over msgs and settles each one.
func (c *Consumer) processBatch(base context.Context, msgs []jetstream.Msg) {
	fs := make([]*flight, 0, len(msgs))
	var ready []*flight
	for _, msg := range msgs {
		f := c.open(base, msg)
		if f == nil {
			continue
		}
		fs = append(fs, f)
		if f.ready {
			ready = append(ready, f)
		}
	}
	if len(ready) > 0 {
		c.call(base, ready)
	}
	for _, f := range fs {
		c.close(base, f)
	}
}

// open starts a message's span and decodes it. It returns nil for a message
// that is not a JetStream delivery, which it terminates.
func (c *Consumer) open(base context.Context, msg jetstream.Msg) *flight {
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to redeliver, nothing to record.
		c.log.Error("message without JetStream metadata; terminating it", "subject", msg.Subject(), "error", err.Error())
		_ = msg.Term()
		c.metrics.outcome(outcomeTerm, 0)
		return nil
	}
	subject := msg.Subject()
	eventType, replay := eventTypeFromSubject(subject)
	d := &Delivery{
		Subject:   subject,
		Delivered: meta.NumDelivered,
		StreamSeq: meta.Sequence.Stream,
		Replay:    replay,
		Header:    msg.Headers(),
	}
	if d.Delivered > 1 {
		c.metrics.redelivery()
	} else {
		c.metrics.waited(meta.Timestamp, time.Now())
	}

	ctx := otel.GetTextMapPropagator().Extract(base, headerCarrier(d.Header))
	ctx, span := c.tracer.Start(ctx, "process "+subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attrMessagingSystem.String("nats"),
			attrMessagingOperationType.String("process"),
			attrMessagingDestination.String(subject),
			attrMessagingConsumerGroup.String(c.cfg.Durable),
			attrMessagingDeliveryCount.Int64(int64(d.Delivered)),
			attrMessagingStreamSeq.Int64(int64(d.StreamSeq)),
		))
	d.ctx = ctx
	f := &flight{msg: msg, d: d, span: span, eventType: eventType, ev: &billingv1.BillingEvent{}}
	switch err := proto.Unmarshal(msg.Data(), f.ev); {
	case err != nil:
		f.herr = Permanent(fmt.Errorf("decode BillingEvent: %w", err))
	case f.ev.GetEventId() == "":
		f.herr = Permanent(errors.New("decode BillingEvent: no event id"))
	default:
		d.Event = f.ev
		f.eventType = f.ev.GetType()
		span.SetAttributes(eventAttrs(f.ev)...)
		if d.Delivered > uint64(c.cfg.MaxDeliver) {
			// Earlier deliveries ended with no outcome (a crash, an
			// unreachable server): do not risk another crash loop.
			f.herr = fmt.Errorf("delivered %d times without an outcome, past max %d", d.Delivered, c.cfg.MaxDeliver)
			break
		}
		f.ready = true
	}
	return f
}

// close settles a message, records its outcome and ends its span.
func (c *Consumer) close(base context.Context, f *flight) {
	defer f.span.End()
	d, ev, span := f.d, f.ev, f.span
	ctx := d.Context()
	eventID := ev.GetEventId()
	if eventID == "" {
		eventID = d.Header.Get(jetstream.MsgIDHeader)
	}
	outcome, delay := c.settle(ctx, base, f.msg, d, eventID, f.eventType, f.herr)
	c.metrics.outcome(outcome, f.took)
	if outcome == outcomeAck && d.duplicate {
		c.metrics.duplicate()
	}
	span.SetAttributes(attrOutcome.String(outcome))

	attrs := []any{"event_id", eventID, "customer_id", ev.GetCustomerId(), "subject", d.Subject,
		"delivery", d.Delivered, "outcome", outcome}
	switch {
	case f.herr == nil && outcome == outcomeAck:
		c.log.DebugContext(ctx, "event handled", attrs...)
	case outcome == outcomeNak:
		text := redactError(f.herr)
		span.SetStatus(codes.Error, text)
		c.log.WarnContext(ctx, "event failed; will retry", append(attrs, "error", text, "retry_in", delay.String())...)
	default:
		text := redactError(f.herr)
		span.SetStatus(codes.Error, text)
		c.log.ErrorContext(ctx, "event dead-lettered", append(attrs, "error", text)...)
	}
}

// call runs the handler over fs, keeping their messages alive while it
// works, and stores each answer in its flight. A panic is a bug, which does
// not get better by retrying: the delivery that causes it is dead-lettered
// so that it is visible. In a batch the culprit is found by calling the
// handler again with each delivery alone.
func (c *Consumer) call(base context.Context, fs []*flight) {
	msgs := make([]jetstream.Msg, len(fs))
	ds := make([]*Delivery, len(fs))
	for i, f := range fs {
		msgs[i], ds[i] = f.msg, f.d
	}
	ka := keepAlive(msgs, c.cfg.AckWait/3)
	defer ka.stop()
	ctx := base
	if len(fs) == 1 {
		ctx = fs[0].d.Context()
	}
	start := time.Now()
	errs, perr := c.invoke(ctx, ds)
	took := time.Since(start)
	if perr != nil && len(fs) > 1 {
		for _, f := range fs {
			f.d.duplicate = false
			c.call(base, []*flight{f})
		}
		return
	}
	for i, f := range fs {
		f.took = took
		if perr != nil {
			f.herr = perr
			continue
		}
		f.herr = errs[i]
	}
}

// invoke calls the handler and turns a panic, or an answer of the wrong
// length, into a permanent error.
func (c *Consumer) invoke(ctx context.Context, ds []*Delivery) (errs []error, perr error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.ErrorContext(ctx, "handler panic", "panic", Redact(fmt.Sprint(r)), "stack", string(debug.Stack()))
			perr = Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	errs = c.handler(ctx, ds)
	if len(errs) != len(ds) {
		return nil, Permanent(fmt.Errorf("handler answered %d results for %d deliveries", len(errs), len(ds)))
	}
	return errs, nil
}

// settle turns the handler's answer into ack, nak or dead letter. It
// returns the outcome and, for a nak, the delay asked for.
func (c *Consumer) settle(ctx, base context.Context, msg jetstream.Msg, d *Delivery, eventID, eventType string, herr error) (string, time.Duration) {
	switch {
	case herr == nil && c.ackAfter != nil:
		c.ackAfter(func() { c.ack(ctx, msg) })
		return outcomeAck, 0
	case herr == nil:
		c.ack(ctx, msg)
		return outcomeAck, 0
	case IsPermanent(herr):
		return c.deadLetter(ctx, msg, d, eventID, eventType, herr)
	case base.Err() != nil:
		// Cancelled by shutdown, not failed: let another instance take it now.
		_ = msg.Nak()
		return outcomeNak, 0
	case d.Delivered >= uint64(c.cfg.MaxDeliver):
		return c.deadLetter(ctx, msg, d, eventID, eventType, herr)
	}
	delay, ok := retryAfter(herr)
	if !ok {
		delay = backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, d.Delivered)
	}
	_ = msg.NakWithDelay(delay)
	return outcomeNak, delay
}

func (c *Consumer) ack(ctx context.Context, msg jetstream.Msg) {
	if !c.doubleAck {
		if err := msg.Ack(); err != nil {
			c.log.WarnContext(ctx, "ack not sent; the message will be redelivered", "error", err.Error())
		}
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		c.log.WarnContext(ctx, "ack not confirmed; the message may be redelivered", "error", err.Error())
	}
}

// deadLetter stores the message in BILLING_DLQ and only then terminates it.
// If the DLQ publish fails the message is nak'd instead, so it is never
// lost; the Nats-Msg-Id <durable>:<seq> makes a repeat after a crash
// between the two steps a no-op.
func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, d *Delivery, eventID, eventType string, herr error) (string, time.Duration) {
	h := nats.Header{}
	for _, k := range traceHeaders {
		if v := d.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	seq := strconv.FormatUint(d.StreamSeq, 10)
	h.Set(jetstream.MsgIDHeader, c.cfg.Durable+":"+seq)
	h.Set(HeaderConsumer, c.cfg.Durable)
	h.Set(HeaderError, redactError(herr))
	h.Set(HeaderDeliveryCount, strconv.FormatUint(d.Delivered, 10))
	h.Set(HeaderOriginalSubject, d.Subject)
	h.Set(HeaderOriginalSeq, seq)
	h.Set(HeaderEventID, eventID)
	h.Set(HeaderEventType, eventType)
	h.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))

	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	dlq := &nats.Msg{Subject: DLQSubject(c.cfg.Durable), Data: msg.Data(), Header: h}
	if _, err := c.js.PublishMsg(pctx, dlq); err != nil {
		delay := backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, d.Delivered)
		c.log.ErrorContext(ctx, "dead letter not stored; keeping the message", "event_id", eventID,
			"delivery", d.Delivered, "error", Redact(err.Error()))
		_ = msg.NakWithDelay(delay)
		return outcomeNak, delay
	}
	trace.SpanFromContext(ctx).AddEvent("dead-lettered", trace.WithAttributes(
		attribute.String("messaging.destination.name", dlq.Subject)))
	if err := msg.TermWithReason("dead-lettered"); err != nil {
		// Redelivery will find the dead letter already stored (same msg id).
		c.log.WarnContext(ctx, "term not sent after dead letter", "event_id", eventID, "error", err.Error())
	}
	return outcomeDeadLetter, 0
}

// backoff is the delay after the n-th failed delivery:
// b = min(max, base*2^(n-1)), then a random value in [b/2, b] so that a
// burst of failures does not come back as a burst.
func backoff(base, maxDelay time.Duration, delivered uint64) time.Duration {
	b := base
	for i := uint64(1); i < delivered && b < maxDelay; i++ {
		b *= 2
	}
	b = min(b, maxDelay)
	half := b / 2
	return half + rand.N(b-half+1)
}

// keepAliveTimer sends InProgress while a handler works so that JetStream
// does not redeliver a message that is merely slow. It uses one timer per
// handler call rather than a goroutine per message.
type keepAliveTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func keepAlive(msgs []jetstream.Msg, every time.Duration) *keepAliveTimer {
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

func (k *keepAliveTimer) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.t.Stop()
}

// sleepCtx waits d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
