// Package webhook is ingress's Stripe endpoint: it verifies a webhook
// request, normalises the event and answers 200 only once JetStream has
// acknowledged it, so Stripe retries everything that was not stored.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Path is where Stripe posts events.
const Path = "/webhooks/stripe"

// Publisher stores one event and returns once JetStream has acknowledged it.
type Publisher interface {
	PublishEvent(ctx context.Context, ev *billingv1.BillingEvent) (bus.PubResult, error)
}

// Config is what the endpoint accepts.
type Config struct {
	// Secrets are the endpoint signing secrets; a request signed with any
	// one of them is accepted, which lets a secret be rotated without a gap.
	Secrets []string
	// Tolerance bounds how old, or how far in the future, a signature's
	// timestamp may be.
	Tolerance time.Duration
	// MaxBody is the largest body read, in bytes.
	MaxBody int64
	// Livemode is "live" or "test" to accept only that mode, "" for both.
	Livemode string
	// PublishTimeout bounds the wait for a PubAck.
	PublishTimeout time.Duration
	// RetryAfter is sent with 503 answers.
	RetryAfter time.Duration
}

// Handler serves Path.
type Handler struct {
	cfg     Config
	pub     Publisher
	metrics *Metrics
	log     *slog.Logger
	tracer  trace.Tracer
	now     func() time.Time

	tooLarge   []byte
	wrongMode  []byte
	retryAfter []string
}

// New returns the handler. tracer makes the "verify" span; the server span
// comes from the otelhttp wrapper around the handler.
func New(cfg Config, pub Publisher, m *Metrics, log *slog.Logger, tracer trace.Tracer) *Handler {
	h := &Handler{cfg: cfg, pub: pub, metrics: m, log: log, tracer: tracer, now: time.Now}
	h.tooLarge = errorBody(fmt.Sprintf("body larger than %d bytes", cfg.MaxBody))
	switch cfg.Livemode {
	case "live":
		h.wrongMode = errorBody("test mode event refused: this endpoint accepts live mode events only")
	case "test":
		h.wrongMode = errorBody("live mode event refused: this endpoint accepts test mode events only")
	}
	secs := int(cfg.RetryAfter.Round(time.Second) / time.Second)
	h.retryAfter = []string{strconv.Itoa(max(secs, 1))}
	return h
}

// Answers that never change, encoded once.
var (
	bodyAccepted    = []byte(`{"received":true,"duplicate":false}` + "\n")
	bodyDuplicate   = []byte(`{"received":true,"duplicate":true}` + "\n")
	bodyMethod      = errorBody("method not allowed: Stripe webhooks are POST requests")
	bodyUnreadable  = errorBody("could not read request body")
	bodyUnavailable = errorBody("event bus unavailable; the event was not stored, retry later")
	bodyNotStored   = errorBody("the event could not be stored")
	bodyNoHeader    = errorBody("missing Stripe-Signature header")
	bodyNoV1        = errorBody("Stripe-Signature header has no v1 signature")
	bodyBadHeader   = errorBody("malformed Stripe-Signature header")
	bodyMismatch    = errorBody("signature does not match any configured secret")
	bodyStale       = errorBody("timestamp outside tolerance: signed too long ago")
	bodyFuture      = errorBody("timestamp outside tolerance: signed in the future")
	contentTypeJSON = []string{"application/json"}
	allowPost       = []string{http.MethodPost}
)

func errorBody(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, '\n')
}

// bodyPool holds request body buffers. Bodies are a few KiB, so reuse
// removes the largest allocation of the request path.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxPooled keeps one rare large body from pinning memory in the pool.
const maxPooled = 256 << 10

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	o := h.serve(w, r, start)
	h.metrics.requests[o].Inc()
	h.metrics.duration.Observe(time.Since(start).Seconds())
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, start time.Time) outcome {
	ctx := r.Context()
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = allowPost
		h.refuse(ctx, w, http.StatusMethodNotAllowed, outcomeMethod, bodyMethod, "", slog.String("method", r.Method))
		return outcomeMethod
	}
	if r.ContentLength > h.cfg.MaxBody {
		h.refuse(ctx, w, http.StatusRequestEntityTooLarge, outcomeTooLarge, h.tooLarge, "", slog.Int64("content_length", r.ContentLength))
		return outcomeTooLarge
	}

	bp := bodyPool.Get().(*[]byte)
	body, err := readBody(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody), (*bp)[:0])
	defer func() {
		// Safe to reuse once the request is answered: Normalize copies the
		// bytes it keeps (raw_json), so nothing outlives the request.
		if cap(body) <= maxPooled {
			*bp = body[:0]
			bodyPool.Put(bp)
		}
	}()
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.refuse(ctx, w, http.StatusRequestEntityTooLarge, outcomeTooLarge, h.tooLarge, "")
			return outcomeTooLarge
		}
		h.refuse(ctx, w, http.StatusBadRequest, outcomeMalformed, bodyUnreadable, "", slog.String("error", err.Error()))
		return outcomeMalformed
	}

	if o, reason, answer := h.verify(ctx, body, r.Header.Get("Stripe-Signature"), start); answer != nil {
		h.metrics.sigFailures[reason].Inc()
		h.refuse(ctx, w, http.StatusBadRequest, o, answer, "", slog.String("reason", sigReasonNames[reason]))
		return o
	}

	ev, err := stripeevent.Normalize(body)
	if err != nil {
		h.refuse(ctx, w, http.StatusBadRequest, outcomeMalformed, errorBody("malformed event: "+err.Error()), "")
		return outcomeMalformed
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(telemetry.AttrEventID.String(ev.EventId), telemetry.AttrEventType.String(ev.Type))
	}
	if h.wrongMode != nil && ev.Livemode != (h.cfg.Livemode == "live") {
		h.refuse(ctx, w, http.StatusBadRequest, outcomeWrongMode, h.wrongMode, ev.EventId, slog.Bool("livemode", ev.Livemode))
		return outcomeWrongMode
	}
	if ev.ReceivedAt == nil {
		ev.ReceivedAt = timestamppb.New(start)
	}

	pctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
	res, err := h.pub.PublishEvent(pctx, ev)
	cancel()
	if err != nil {
		// Either answer makes Stripe retry. 503 says "soon": the broker is
		// down or slow. 500 is for what a retry to this deployment will not
		// fix (a payload over the broker's max_payload, a subject NATS
		// refuses), so it pages someone instead of looking like an outage.
		o, code, answer := outcomeUnavailable, http.StatusServiceUnavailable, bodyUnavailable
		if errors.Is(err, bus.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			w.Header()["Retry-After"] = h.retryAfter
		} else {
			o, code, answer = outcomeError, http.StatusInternalServerError, bodyNotStored
		}
		h.log.LogAttrs(ctx, slog.LevelError, "webhook refused",
			slog.String("outcome", o.String()),
			slog.Int("status", code),
			slog.String("event_id", ev.EventId),
			slog.String("event_type", ev.Type),
			slog.String("error", err.Error()))
		writeJSON(w, code, answer)
		return o
	}

	o, answer := outcomeAccepted, bodyAccepted
	if res.Duplicate {
		h.metrics.duplicates.Inc()
		o, answer = outcomeDuplicate, bodyDuplicate
	}
	if h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.LogAttrs(ctx, slog.LevelDebug, "webhook accepted",
			slog.String("outcome", o.String()),
			slog.String("event_id", ev.EventId),
			slog.String("event_type", ev.Type),
			slog.Uint64("seq", res.Seq))
	}
	writeJSON(w, http.StatusOK, answer)
	return o
}

// verify checks the signature under a "verify" span and returns the answer
// for a refusal, nil when the signature holds. It runs before the body is
// parsed at all: nothing unauthenticated reaches the JSON decoder.
func (h *Handler) verify(ctx context.Context, body []byte, header string, now time.Time) (outcome, sigReason, []byte) {
	_, span := h.tracer.Start(ctx, "verify")
	defer span.End()
	err := stripeevent.Verify(body, header, h.cfg.Secrets, h.cfg.Tolerance, now)
	switch {
	case err == nil:
		return outcomeAccepted, 0, nil
	case errors.Is(err, stripeevent.ErrNoSignature) && header == "":
		return outcomeBadSignature, sigMissing, bodyNoHeader
	case errors.Is(err, stripeevent.ErrNoSignature):
		return outcomeBadSignature, sigMalformed, bodyNoV1
	case errors.Is(err, stripeevent.ErrMalformedHeader):
		return outcomeBadSignature, sigMalformed, bodyBadHeader
	case errors.Is(err, stripeevent.ErrStaleTimestamp):
		return outcomeStale, sigStale, bodyStale
	case errors.Is(err, stripeevent.ErrFutureTimestamp):
		return outcomeStale, sigFuture, bodyFuture
	default:
		return outcomeBadSignature, sigMismatch, bodyMismatch
	}
}

// refuse answers a request that is not stored and logs one line saying why.
func (h *Handler) refuse(ctx context.Context, w http.ResponseWriter, code int, o outcome, body []byte, eventID string, attrs ...slog.Attr) {
	all := make([]slog.Attr, 0, 3+len(attrs))
	all = append(all, slog.String("outcome", o.String()), slog.Int("status", code))
	if eventID != "" {
		all = append(all, slog.String("event_id", eventID))
	}
	h.log.LogAttrs(ctx, slog.LevelWarn, "webhook refused", append(all, attrs...)...)
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// readBody is io.ReadAll into a caller's buffer.
func readBody(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
