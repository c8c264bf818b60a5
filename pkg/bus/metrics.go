package bus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// register adds c to reg, or returns the collector already registered under
// the same descriptors, so that several consumers (or a restarted one) can
// share a registry.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return c
}

type publishMetrics struct {
	seconds  prometheus.Histogram
	total    *prometheus.CounterVec
	retries  *prometheus.CounterVec
	standbys prometheus.Counter
}

func newPublishMetrics(reg prometheus.Registerer) *publishMetrics {
	return &publishMetrics{
		seconds: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lr_publish_seconds",
			Help:    "Time from publish to JetStream ack.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5},
		})),
		total: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_publish_total",
			Help: "Publishes by outcome: ok, duplicate (already stored) or error.",
		}, []string{"outcome"})),
		retries: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_publish_retries_total",
			Help: "Publish attempts sent again with the same message id, by reason: in_process (an earlier attempt is being stored), no_answer, unavailable (no leader, no responders, a reconnect).",
		}, []string{"reason"})),
		standbys: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lr_publish_standby_total",
			Help: "Events stored in BILLING_EVENTS_STANDBY because BILLING_EVENTS did not take them in time (a leader election).",
		})),
	}
}

func (m *publishMetrics) standby() {
	if m != nil {
		m.standbys.Inc()
	}
}

func (m *publishMetrics) retried(reason string) {
	if m != nil {
		m.retries.WithLabelValues(reason).Inc()
	}
}

func (m *publishMetrics) observe(d time.Duration, outcome string) {
	if m == nil {
		return
	}
	m.seconds.Observe(d.Seconds())
	m.total.WithLabelValues(outcome).Inc()
}

// Delivery outcomes, as counted in lr_consumer_deliveries_total.
const (
	outcomeAck        = "ack"
	outcomeNak        = "nak"
	outcomeTerm       = "term"
	outcomeDeadLetter = "dead_letter"
)

type consumerMetrics struct {
	deliveries  *prometheus.CounterVec
	redelivered prometheus.Counter
	processing  prometheus.Observer
	waiting     prometheus.Observer
	deadLetters prometheus.Counter
	duplicates  prometheus.Counter
	timeouts    prometheus.Counter
	overdue     prometheus.Gauge
	outcomes    map[string]prometheus.Counter
}

func newConsumerMetrics(reg prometheus.Registerer, durable string) *consumerMetrics {
	deliveries := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lr_consumer_deliveries_total",
		Help: "Messages handled by outcome: ack, nak (retry later), term, dead_letter.",
	}, []string{"consumer", "outcome"}))
	m := &consumerMetrics{
		deliveries: deliveries,
		redelivered: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_consumer_redeliveries_total",
			Help: "Deliveries of a message that had been delivered before.",
		}, []string{"consumer"})).WithLabelValues(durable),
		processing: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lr_consumer_processing_seconds",
			Help:    "Handler time per delivery.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"consumer"})).WithLabelValues(durable),
		waiting: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lr_consumer_wait_seconds",
			Help:    "Time from JetStream storing a first delivery until its handler starts: the consumer's lag, as one delivery sees it (server clock).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"consumer"})).WithLabelValues(durable),
		deadLetters: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_consumer_dead_letters_total",
			Help: "Messages moved to BILLING_DLQ.",
		}, []string{"consumer"})).WithLabelValues(durable),
		duplicates: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_consumer_duplicates_total",
			Help: "Deliveries acked because the consumer had already processed the event id.",
		}, []string{"consumer"})).WithLabelValues(durable),
		timeouts: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_consumer_handler_timeouts_total",
			Help: "Deliveries whose handler call outlived CONSUMER_HANDLER_TIMEOUT; each was retried or dead-lettered.",
		}, []string{"consumer"})).WithLabelValues(durable),
		overdue: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lr_consumer_overdue_handlers",
			Help: "Handler calls still running after their context ended; their deliveries are settled, and each holds a worker until it returns.",
		}, []string{"consumer"})).WithLabelValues(durable),
		outcomes: map[string]prometheus.Counter{},
	}
	for _, o := range []string{outcomeAck, outcomeNak, outcomeTerm, outcomeDeadLetter} {
		m.outcomes[o] = deliveries.WithLabelValues(durable, o)
	}
	return m
}

func (m *consumerMetrics) outcome(o string, handler time.Duration) {
	if m == nil {
		return
	}
	m.outcomes[o].Inc()
	if handler > 0 {
		m.processing.Observe(handler.Seconds())
	}
	if o == outcomeDeadLetter {
		m.deadLetters.Inc()
	}
}

func (m *consumerMetrics) timedOut(deliveries int) {
	if m != nil {
		m.timeouts.Add(float64(deliveries))
	}
}

func (m *consumerMetrics) overdueStarted() {
	if m != nil {
		m.overdue.Inc()
	}
}

func (m *consumerMetrics) overdueReturned() {
	if m != nil {
		m.overdue.Dec()
	}
}

func (m *consumerMetrics) duplicate() {
	if m != nil {
		m.duplicates.Inc()
	}
}

// waited records how long a first delivery waited for its handler; a
// redelivery's wait includes the retries' backoff and says nothing of lag.
func (m *consumerMetrics) waited(stored time.Time, now time.Time) {
	if m != nil && !stored.IsZero() {
		m.waiting.Observe(max(0, now.Sub(stored).Seconds()))
	}
}

func (m *consumerMetrics) redelivery() {
	if m != nil {
		m.redelivered.Inc()
	}
}

// backlogRefresh bounds how often a scrape asks JetStream for numbers: a
// scrape every second from several Prometheus replicas must not turn into a
// stream of API calls.
const backlogRefresh = 5 * time.Second

// backlogCollector reports lr_consumer_pending (not yet delivered plus
// delivered and unacked) and lr_dlq_depth (this consumer's dead letters).
type backlogCollector struct {
	js             jetstream.JetStream
	stream         string
	durable        string
	pendingDesc    *prometheus.Desc
	dlqDesc        *prometheus.Desc
	mu             sync.Mutex
	at             time.Time
	pending, depth float64
	ok             bool
}

func newBacklogCollector(js jetstream.JetStream, stream, durable string) *backlogCollector {
	labels := prometheus.Labels{"consumer": durable}
	return &backlogCollector{
		js:      js,
		stream:  stream,
		durable: durable,
		pendingDesc: prometheus.NewDesc("lr_consumer_pending",
			"Messages waiting for this consumer: not yet delivered plus delivered and unacked.", nil, labels),
		dlqDesc: prometheus.NewDesc("lr_dlq_depth",
			"Dead letters of this consumer waiting in BILLING_DLQ.", nil, labels),
	}
}

func (b *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.pendingDesc
	ch <- b.dlqDesc
}

func (b *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.at) >= backlogRefresh {
		b.refresh()
	}
	if !b.ok {
		// Never reached JetStream: report nothing rather than a false zero.
		return
	}
	ch <- prometheus.MustNewConstMetric(b.pendingDesc, prometheus.GaugeValue, b.pending)
	ch <- prometheus.MustNewConstMetric(b.dlqDesc, prometheus.GaugeValue, b.depth)
}

func (b *backlogCollector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.at = time.Now()
	cons, err := b.js.Consumer(ctx, b.stream, b.durable)
	if err != nil {
		return
	}
	info := cons.CachedInfo()
	dlq, err := b.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return
	}
	si, err := dlq.Info(ctx, jetstream.WithSubjectFilter(DLQSubject(b.durable)))
	if err != nil {
		return
	}
	var depth uint64
	for _, n := range si.State.Subjects {
		depth += n
	}
	b.pending = float64(info.NumPending) + float64(info.NumAckPending)
	b.depth = float64(depth)
	b.ok = true
}
