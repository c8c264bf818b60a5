// Package webhook is ingress's Stripe endpoint: it verifies a webhook
// request, normalises the event and answers 200 only once JetStream has
// acknowledged it, so Stripe retries everything that was not stored.
//
// A request is judged on what costs least first. The method, the content
// type and the Stripe-Signature header (its shape and its timestamp) are
// checked before a byte of the body is read, so a stranger without a
// plausible header never gets a body buffered. Body reads are bounded in
// number (MaxInflight, with a share kept back for short bodies), in size
// (MaxBody) and in time (ReadTimeout). A signed event is then stored, or
// refused with 4xx and a reason, or, for a type that names a wildcard,
// acknowledged and ignored; never answered with 500.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
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

	// MaxInflight bounds the requests reading a body, verifying or
	// publishing at once; three quarters of it are kept for short bodies.
	// Zero means DefaultMaxInflight.
	MaxInflight int
	// InflightWait is how long a request waits for a slot before it is
	// answered 503. Zero means DefaultInflightWait.
	InflightWait time.Duration
	// ReadTimeout bounds the body read of one request, from the moment it
	// has a slot: a slow sender cannot hold one longer. Zero means
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// ShortBody is the largest Content-Length that may use the share of
	// MaxInflight kept for short bodies. Zero means DefaultShortBody.
	ShortBody int64
}

// Defaults for the zero values of Config.
const (
	// DefaultMaxInflight: 8 large bodies of 1 MiB at most (8 MiB), and 24
	// slots that only events of up to ShortBody may use. At ingress's
	// measured rate (~15,000 events/s at 16 concurrent clients, a few
	// hundred microseconds each) 32 requests in flight are far more than a
	// Stripe account sends.
	DefaultMaxInflight = 32
	// DefaultInflightWait absorbs a burst without making Stripe wait long:
	// its deliveries time out after tens of seconds, and a 503 is retried.
	DefaultInflightWait = 500 * time.Millisecond
	// DefaultReadTimeout: a Stripe event arrives in milliseconds; a body
	// still arriving after 10 s is a slow sender, not Stripe.
	DefaultReadTimeout = 10 * time.Second
	// DefaultShortBody: Stripe events are a few KiB (the largest in the
	// shared fixtures is 12 KiB); 64 KiB leaves room for invoices with many
	// lines.
	DefaultShortBody = 64 << 10
)

// Handler serves Path.
type Handler struct {
	cfg     Config
	pub     Publisher
	metrics *Metrics
	log     *slog.Logger
	tracer  trace.Tracer
	now     func() time.Time
	slots   *admission
	large   *largeBuffers

	tooLarge   []byte
	wrongMode  []byte
	retryAfter []string
}

// New returns the handler. tracer makes the "verify" span; the server span
// comes from the otelhttp wrapper around the handler.
func New(cfg Config, pub Publisher, m *Metrics, log *slog.Logger, tracer trace.Tracer) *Handler {
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.InflightWait <= 0 {
		cfg.InflightWait = DefaultInflightWait
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.ShortBody <= 0 {
		cfg.ShortBody = DefaultShortBody
	}
	h := &Handler{cfg: cfg, pub: pub, metrics: m, log: log, tracer: tracer, now: time.Now,
		slots: newAdmission(cfg.MaxInflight, cfg.InflightWait)}
	h.large = newLargeBuffers(cap(h.slots.long), cfg.MaxBody)
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
	bodyIgnored     = []byte(`{"received":true,"ignored":true}` + "\n")
	bodyMethod      = errorBody("method not allowed: Stripe webhooks are POST requests")
	bodyContentType = errorBody("unsupported content type: Stripe webhooks are sent as application/json")
	bodyBusy        = errorBody("too many requests in flight; the event was not read, retry later")
	bodyUnreadable  = errorBody("could not read request body")
	bodyReadTimeout = errorBody("request body not received in time")
	bodyUnavailable = errorBody("event bus unavailable; the event was not stored, retry later")
	bodyUnstorable  = errorBody("the event cannot be stored: the event bus refused it")
	bodyNoHeader    = errorBody("missing Stripe-Signature header")
	bodyNoV1        = errorBody("Stripe-Signature header has no v1 signature")
	bodyBadHeader   = errorBody("malformed Stripe-Signature header: want t=<unix seconds>,v1=<64 hex digits>")
	bodyMismatch    = errorBody("signature does not match any configured secret")
	bodyStale       = errorBody("timestamp outside tolerance: signed too long ago")
	bodyFuture      = errorBody("timestamp outside tolerance: signed in the future")
	contentTypeJSON = []string{"application/json"}
	allowPost       = []string{http.MethodPost}
	connClose       = []string{"close"}
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
	if o == outcomeAccepted || o == outcomeDuplicate || o == outcomeIgnored {
		h.metrics.lastReceived.SetToCurrentTime()
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, start time.Time) outcome {
	ctx := r.Context()

	// Before the body: everything a header can tell.
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = allowPost
		h.refuseUnread(ctx, w, r, http.StatusMethodNotAllowed, outcomeMethod, bodyMethod, slog.String("method", r.Method))
		return outcomeMethod
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		h.refuseUnread(ctx, w, r, http.StatusUnsupportedMediaType, outcomeContentType, bodyContentType, slog.String("content_type", clip(ct, 64)))
		return outcomeContentType
	}
	header := r.Header.Get("Stripe-Signature")
	sig, err := stripeevent.ParseSignature(header)
	if err == nil {
		err = sig.CheckTimestamp(h.cfg.Tolerance, start)
	}
	if err != nil {
		o, reason, answer := signatureRefusal(err, header)
		h.metrics.sigFailures[reason].Inc()
		h.refuseUnread(ctx, w, r, http.StatusBadRequest, o, answer, slog.String("reason", sigReasonNames[reason]))
		return o
	}
	if r.ContentLength > h.cfg.MaxBody {
		h.refuseUnread(ctx, w, r, http.StatusRequestEntityTooLarge, outcomeTooLarge, h.tooLarge, slog.Int64("content_length", r.ContentLength))
		return outcomeTooLarge
	}

	short := r.ContentLength >= 0 && r.ContentLength <= h.cfg.ShortBody
	if !h.slots.acquire(ctx, short) {
		w.Header()["Retry-After"] = h.retryAfter
		h.refuseUnread(ctx, w, r, http.StatusServiceUnavailable, outcomeBusy, bodyBusy, slog.Int64("content_length", r.ContentLength))
		return outcomeBusy
	}
	h.metrics.inFlight.Inc()
	defer func() {
		h.metrics.inFlight.Dec()
		h.slots.release(short)
	}()

	// The buffer is reused once the request is answered: Normalize copies
	// the bytes it keeps (raw_json), so nothing outlives the request.
	var body []byte
	if short {
		bp := bodyPool.Get().(*[]byte)
		body, err = h.readBody(w, r, *bp)
		defer func() {
			if cap(body) <= maxPooled {
				*bp = body[:0]
				bodyPool.Put(bp)
			}
		}()
	} else {
		lb := h.large.get()
		body, err = h.readBody(w, r, lb.b)
		defer func() { h.large.put(lb, len(body)) }()
	}
	if err != nil {
		w.Header()["Connection"] = connClose
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			h.refuse(ctx, w, http.StatusRequestEntityTooLarge, outcomeTooLarge, h.tooLarge, "")
			return outcomeTooLarge
		case isTimeout(err):
			h.refuse(ctx, w, http.StatusRequestTimeout, outcomeTimeout, bodyReadTimeout, "", slog.Int("received", len(body)))
			return outcomeTimeout
		}
		h.refuse(ctx, w, http.StatusBadRequest, outcomeMalformed, bodyUnreadable, "", slog.String("error", err.Error()))
		return outcomeMalformed
	}

	if o, reason, answer := h.verify(ctx, sig, body, header, start); answer != nil {
		h.metrics.sigFailures[reason].Inc()
		h.refuse(ctx, w, http.StatusBadRequest, o, answer, "", slog.String("reason", sigReasonNames[reason]))
		return o
	}

	// Signed by Stripe from here on: a refusal is a 4xx with a reason, and
	// nothing the body says can make it a 500.
	ev, err := stripeevent.Normalize(body)
	if err != nil {
		// The reason may quote the body (an id of any length): clipped.
		h.refuse(ctx, w, http.StatusBadRequest, outcomeMalformed, errorBody("malformed event: "+clip(err.Error(), 200)), "")
		return outcomeMalformed
	}
	if err := stripeevent.CheckPlausible(ev); err != nil {
		// The id is logged only when it is a Stripe id: it could be
		// anything up to MaxBody bytes.
		id := ev.EventId
		if !stripeevent.IsStripeID(id) {
			id = ""
		}
		h.refuse(ctx, w, http.StatusBadRequest, outcomeImplausible, errorBody(err.Error()), id, slog.String("reason", err.Error()))
		return outcomeImplausible
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(telemetry.AttrEventID.String(ev.EventId), telemetry.AttrEventType.String(ev.Type))
	}
	if stripeevent.HasWildcard(ev.Type) {
		// A pattern, not an event: it cannot be a subject of its own, and
		// any non-2xx would have Stripe retry it for three days and, in
		// the end, disable the endpoint.
		h.log.LogAttrs(ctx, slog.LevelWarn, "webhook ignored",
			slog.String("outcome", outcomeIgnored.String()),
			slog.String("event_id", ev.EventId),
			slog.String("event_type", ev.Type),
			slog.String("reason", "event type names a wildcard; nothing was published"))
		writeJSON(w, http.StatusOK, bodyIgnored)
		return outcomeIgnored
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
		// 503 says "soon": the broker is down or slow, or the client went
		// away mid-publish (the event may be stored; the retry is then a
		// duplicate). Anything else the bus refuses (a payload over its
		// max_payload) no retry to this deployment fixes: 400 with the
		// reason in the log, so it pages nobody as an outage would.
		o, code, answer := outcomeUnstorable, http.StatusBadRequest, bodyUnstorable
		if errors.Is(err, bus.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			o, code, answer = outcomeUnavailable, http.StatusServiceUnavailable, bodyUnavailable
			w.Header()["Retry-After"] = h.retryAfter
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

// isJSON reports whether a Content-Type is application/json, with any
// parameters (Stripe sends "application/json; charset=utf-8"), in any case.
func isJSON(ct string) bool {
	mediaType, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "application/json")
}

// clip bounds text a stranger chose before it goes into a log or an
// answer.
func clip(s string, keep int) string {
	if len(s) > keep {
		return s[:keep] + "..."
	}
	return s
}

// readBody reads the request body into buf under the per-request read
// deadline. A known Content-Length, already checked against MaxBody, is
// read into buf when it fits, else into a buffer of exactly that size; a
// body of unknown length grows its buffer up to MaxBody+1 bytes at most.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	rc := http.NewResponseController(w)
	// The server's own ReadTimeout counts from the request's first byte and
	// is set for the slowest legitimate case; this one counts from the slot
	// and is what keeps a slow sender from holding it. ErrNotSupported
	// (a ResponseWriter without a connection, as in unit tests) leaves only
	// the server's.
	deadline := true
	if err := rc.SetReadDeadline(time.Now().Add(h.cfg.ReadTimeout)); err != nil {
		if !errors.Is(err, http.ErrNotSupported) {
			return buf[:0], fmt.Errorf("set read deadline: %w", err)
		}
		deadline = false
	}
	var body []byte
	var err error
	if n := r.ContentLength; n >= 0 {
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		body = buf[:n]
		var got int
		got, err = io.ReadFull(r.Body, body)
		body = body[:got]
	} else {
		body, err = readAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody), buf[:0], h.cfg.MaxBody+1)
	}
	if err == nil && deadline {
		// Past the body, the deadline must not cut the publish short: the
		// server's background read would cancel the request's context.
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, err
}

// isTimeout reports whether a body read ended at its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// signatureRefusal maps an error of stripeevent's signature checks to the
// outcome, the reason label and the answer.
func signatureRefusal(err error, header string) (outcome, sigReason, []byte) {
	switch {
	case errors.Is(err, stripeevent.ErrNoSignature) && strings.TrimSpace(header) == "":
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

// verify checks the body against the parsed signature under a "verify"
// span and returns the answer for a refusal, nil when the signature holds.
// It runs before the body is parsed at all: nothing unauthenticated reaches
// the JSON decoder.
func (h *Handler) verify(ctx context.Context, sig stripeevent.Signature, body []byte, header string, now time.Time) (outcome, sigReason, []byte) {
	_, span := h.tracer.Start(ctx, "verify")
	defer span.End()
	if err := sig.Verify(body, h.cfg.Secrets, h.cfg.Tolerance, now); err != nil {
		return signatureRefusal(err, header)
	}
	return outcomeAccepted, 0, nil
}

// refuseUnread answers a request whose body was never read. The connection
// is closed after the answer, so the server does not read the body only to
// discard it, and a stranger's upload ends with the refusal.
func (h *Handler) refuseUnread(ctx context.Context, w http.ResponseWriter, r *http.Request, code int, o outcome, body []byte, attrs ...slog.Attr) {
	if r.ContentLength != 0 {
		w.Header()["Connection"] = connClose
	}
	h.refuse(ctx, w, code, o, body, "", attrs...)
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
	_, _ = w.Write(body) // #nosec G705 -- bodies are encoding/json output (it escapes <, > and &) served as application/json
}

// readAll is io.ReadAll into a caller's buffer whose capacity never grows
// past limit: doubling, not append's growth, so a body of unknown length
// leaves at most as much garbage as it is long.
func readAll(r io.Reader, b []byte, limit int64) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			if int64(len(b)) >= limit {
				return b, &http.MaxBytesError{Limit: limit - 1}
			}
			grown := make([]byte, len(b), min(max(2*int64(cap(b)), 512), limit))
			copy(grown, b)
			b = grown
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
