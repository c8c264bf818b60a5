package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// PubResult is JetStream's answer to a publish.
type PubResult struct {
	// Duplicate is true when the stream already held a message with this
	// Nats-Msg-Id inside the duplicate window; nothing new was stored.
	Duplicate bool
	// Seq is the stream sequence of the stored (or original) message.
	Seq uint64
}

// Publisher publishes synchronously: a call returns only once JetStream has
// stored the message (or says it already had it), which is what lets
// ingress answer Stripe 2xx.
type Publisher struct {
	js      jetstream.JetStream
	tracer  trace.Tracer
	metrics *publishMetrics
	// standby: an event that BILLING_EVENTS does not take at the first
	// attempt is offered to BILLING_EVENTS_STANDBY too, through standbyJS
	// (WithStandby).
	standby   bool
	standbyJS jetstream.JetStream
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher)

// WithPublisherRegistry registers lr_publish_seconds and lr_publish_total.
func WithPublisherRegistry(reg prometheus.Registerer) PublisherOption {
	return func(p *Publisher) {
		if reg != nil {
			p.metrics = newPublishMetrics(reg)
		}
	}
}

// WithStandby lets PublishEvent store an event in BILLING_EVENTS_STANDBY
// when BILLING_EVENTS does not answer its first attempt, which is what a
// stream whose leader died does until a new one is elected (4 to 9 s):
// from the second attempt on, attempts alternate between the two streams
// and the first ack wins. BILLING_EVENTS takes the standby's copy as soon
// as it has a leader again, and its Nats-Msg-Id keeps the two copies one.
// On a single server there is no standby stream; an attempt there gets
// "no responders" at once and the next one goes back to BILLING_EVENTS.
// The publishing user needs permission for billing.standby.>.
//
// The standby's attempts go through js, the JetStream of a second
// connection kept on another server than the publisher's own
// (KeepStandbyApart): a server that stops answering without closing its
// connections (a paused process, a half-open link) holds every attempt on
// the connection to it until pings give up on it, which the other
// connection does not wait for. A nil js sends them on the publisher's own.
func WithStandby(js jetstream.JetStream) PublisherOption {
	return func(p *Publisher) { p.standby, p.standbyJS = true, js }
}

// NewPublisher returns a publisher that traces with tp (the global provider
// when nil) and injects the global propagator's trace context.
func NewPublisher(js jetstream.JetStream, tp trace.TracerProvider, opts ...PublisherOption) *Publisher {
	p := &Publisher{js: js, tracer: tracerFrom(tp)}
	for _, o := range opts {
		o(p)
	}
	if p.standbyJS == nil {
		p.standbyJS = js
	}
	return p
}

// PublishEvent publishes ev to billing.events.<type> with Nats-Msg-Id set to
// the event id, so a redelivered webhook is stored once, and HeaderSource
// for an event that did not come from a webhook. The deadline comes
// from ctx (the client default of 5 s when ctx has none). An error wraps
// ErrUnavailable when JetStream could not be reached or did not ack, and
// ErrInvalidSubject when the type cannot be a subject (see
// CheckedEventSubject): nothing was sent, and a retry cannot help.
func (p *Publisher) PublishEvent(ctx context.Context, ev *billingv1.BillingEvent) (PubResult, error) {
	if ev == nil {
		return PubResult{}, errors.New("publish: nil event")
	}
	id := ev.GetEventId()
	if id == "" {
		return PubResult{}, errors.New("publish: event has no id")
	}
	subject, err := CheckedEventSubject(ev.GetType())
	if err != nil {
		return PubResult{}, fmt.Errorf("publish %s: %w", id, err)
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return PubResult{}, fmt.Errorf("publish %s: marshal: %w", id, err)
	}
	var hdr nats.Header
	if src := SourceName(ev.GetSource()); src != "" {
		hdr = nats.Header{HeaderSource: []string{src}}
	}
	return p.publish(ctx, subject, id, data, hdr, func() []attribute.KeyValue { return eventAttrs(ev) })
}

// Publish publishes data to subject with msgID as Nats-Msg-Id (none when
// empty) plus hdr and the current trace context. Errors are as for
// PublishEvent; a subject that is not one (empty tokens, wildcards,
// whitespace, over MaxSubjectBytes) is refused with ErrInvalidSubject
// before anything is sent.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte, hdr nats.Header) (PubResult, error) {
	if err := validSubject(subject); err != nil {
		return PubResult{}, fmt.Errorf("publish %s: %w", messageName(subject, msgID), err)
	}
	return p.publish(ctx, subject, msgID, data, hdr, func() []attribute.KeyValue { return nil })
}

func (p *Publisher) publish(ctx context.Context, subject, msgID string, data []byte, hdr nats.Header, attrs func() []attribute.KeyValue) (res PubResult, err error) {
	ctx, span := p.tracer.Start(ctx, "publish "+subject, trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	// Attributes cost allocations on the hot path; build them only for a
	// span that will be exported.
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(
			attrMessagingSystem.String("nats"),
			attrMessagingOperationType.String("publish"),
			attrMessagingDestination.String(subject),
		)
		span.SetAttributes(attrs()...)
		if msgID != "" {
			span.SetAttributes(attrMessagingMessageID.String(msgID))
		}
	}

	m := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, len(hdr)+3)}
	for k, v := range hdr {
		m.Header[k] = v
	}
	if msgID != "" {
		m.Header[jetstream.MsgIDHeader] = []string{msgID}
	}
	otel.GetTextMapPropagator().Inject(ctx, headerCarrier(m.Header))

	start := time.Now()
	var ack *jetstream.PubAck
	if msgID == "" {
		// Without an id a second attempt could store the message twice.
		ack, err = p.js.PublishMsg(ctx, m)
	} else {
		ack, err = p.publishUntilSettled(ctx, m, p.standby && strings.HasPrefix(subject, EventsPrefix))
	}
	elapsed := time.Since(start)

	res, err = p.answer(subject, msgID, ack, err, elapsed)
	if err != nil {
		span.SetStatus(codes.Error, Redact(err.Error()))
		return PubResult{}, err
	}
	if recording {
		span.SetAttributes(attrMessagingStreamSeq.Int64(int64(res.Seq)), attribute.Bool("messaging.nats.duplicate", res.Duplicate)) // #nosec G115 -- stream sequences stay far below 2^63
	}
	return res, nil
}

// answer turns JetStream's PubAck (or failure) into a PubResult and records
// it in the publish metrics.
func (p *Publisher) answer(subject, msgID string, ack *jetstream.PubAck, err error, elapsed time.Duration) (PubResult, error) {
	name := messageName(subject, msgID)
	if err != nil {
		p.metrics.observe(elapsed, "error")
		if isUnavailable(err) {
			return PubResult{}, fmt.Errorf("publish %s: %w: %w", name, ErrUnavailable, err)
		}
		return PubResult{}, fmt.Errorf("publish %s: %w", name, err)
	}
	res := PubResult{Duplicate: ack.Duplicate, Seq: ack.Sequence}
	if res.Duplicate {
		p.metrics.observe(elapsed, "duplicate")
	} else {
		p.metrics.observe(elapsed, "ok")
	}
	return res, nil
}

// messageName names a message in errors: its id, else its subject.
func messageName(subject, msgID string) string {
	if msgID != "" {
		return msgID
	}
	return quoteHead(subject)
}

// Message is one message for PublishAll.
type Message struct {
	Subject string
	// MsgID becomes Nats-Msg-Id, so that publishing it again is a no-op.
	MsgID string
	Data  []byte
}

// PublishAll publishes msgs in order without waiting for each PubAck
// before sending the next one, then waits for them all: one round trip for
// the lot instead of one each. It returns the results of the messages
// stored from the start of msgs up to the first that was not, and that
// one's error. Messages after a failure may have been stored too;
// publishing them again is harmless, since their ids deduplicate. Without a
// deadline on ctx it waits at most 5 s. A message whose subject Publish
// would refuse is refused here too, and nothing after it is sent.
func (p *Publisher) PublishAll(ctx context.Context, msgs []Message) ([]PubResult, error) {
	ctx, cancel := withPublishDeadline(ctx)
	defer cancel()
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var sendErr, refused error
	for _, msg := range msgs {
		if err := validSubject(msg.Subject); err != nil {
			refused = fmt.Errorf("publish %s: %w", messageName(msg.Subject, msg.MsgID), err)
			break
		}
		m := &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: nats.Header{}}
		if msg.MsgID != "" {
			m.Header[jetstream.MsgIDHeader] = []string{msg.MsgID}
		}
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
	}
	out := make([]PubResult, 0, len(futures))
	for i, f := range futures {
		var ack *jetstream.PubAck
		var err error
		select {
		case ack = <-f.Ok():
		case err = <-f.Err():
		case <-ctx.Done():
			err = ctx.Err()
		}
		res, err := p.answer(msgs[i].Subject, msgs[i].MsgID, ack, err, time.Since(start))
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	if sendErr != nil {
		_, err := p.answer(msgs[len(futures)].Subject, msgs[len(futures)].MsgID, nil, sendErr, time.Since(start))
		return out, err
	}
	return out, refused
}
