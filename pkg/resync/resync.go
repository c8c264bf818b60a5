// Package resync is the contract of a staff resync: the console asks one
// consumer, on its own subject billing.resync.<durable>, to re-send what it
// holds for one customer, and the consumer answers with what it did. It is
// plain NATS request and reply over the authenticated connection, not
// JetStream: a resync is a staff member waiting at a page, and a consumer
// that is down must say so at once ("no responder") rather than leave a
// request queued for later.
//
// The consumer makes the resync idempotent by its request id: it records
// the request and its outcome in its own schema, and a repeated request id
// is answered from that record without a second send.
package resync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/launchready/launchready/pkg/bus"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Prefix is the subjects' prefix; the rest is the durable name of the
// consumer asked.
const Prefix = "billing.resync."

// Subject is where consumer (a durable name) takes resync requests.
// consumer is trusted as bus.EventSubject's event type is.
func Subject(consumer string) string { return Prefix + consumer }

// CheckedSubject is Subject for a consumer name from outside.
func CheckedSubject(consumer string) (string, error) {
	if err := bus.ValidSubjectToken(consumer); err != nil {
		return "", fmt.Errorf("consumer: %w", err)
	}
	return Subject(consumer), nil
}

// Outcomes a consumer answers with.
const (
	// OutcomeResent: the consumer re-sent what it holds for the customer.
	OutcomeResent = "resent"
	// OutcomeNothingHeld: the consumer holds nothing for the customer.
	OutcomeNothingHeld = "nothing_held"
	// OutcomeFailed: the re-send failed; Detail says why. The same request
	// id may be sent again.
	OutcomeFailed = "failed"
	// OutcomeInProgress: the request id is being handled already (a double
	// submission); its outcome shows once it is done.
	OutcomeInProgress = "in_progress"
	// OutcomeRefused: the request was malformed and nothing was done.
	OutcomeRefused = "refused"
)

// Bounds of a request's fields.
const (
	MaxIDBytes     = billingv1.MaxActionIDBytes
	MaxActorBytes  = 320
	MaxReasonBytes = 500
)

// Request asks a consumer to re-send what it holds for one customer.
type Request struct {
	// RequestID names the request: the same id is one resync, however
	// many times it is sent.
	RequestID  string `json:"request_id"`
	CustomerID string `json:"customer_id"`
	// Actor is the staff member who asked; Reason is why.
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
}

// Validate says what is wrong with r, or nil.
func (r Request) Validate() error {
	switch {
	case !idShape(r.RequestID):
		return errors.New("request id: 8 to 64 letters, digits, _ or -")
	case bus.ValidSubjectToken(r.CustomerID) != nil || len(r.CustomerID) > MaxIDBytes:
		return errors.New("customer id: one token of at most 64 bytes")
	case r.Actor == "" || len(r.Actor) > MaxActorBytes || !utf8.ValidString(r.Actor):
		return fmt.Errorf("actor: 1 to %d bytes", MaxActorBytes)
	case strings.TrimSpace(r.Reason) == "" || len(r.Reason) > MaxReasonBytes || !utf8.ValidString(r.Reason):
		return fmt.Errorf("reason: 1 to %d bytes", MaxReasonBytes)
	}
	return nil
}

// idShape is a staff action id's shape (billingv1.ValidActionID), at
// least 8 bytes long.
func idShape(id string) bool {
	return len(id) >= 8 && billingv1.ValidActionID(id)
}

// Reply is a consumer's answer.
type Reply struct {
	RequestID string `json:"request_id"`
	// Consumer is the durable that answered.
	Consumer string `json:"consumer"`
	Outcome  string `json:"outcome"`
	// Detail says in plain words what was re-sent, or why not.
	Detail string `json:"detail,omitempty"`
	// Repeated is true when the answer comes from the consumer's record of
	// an earlier request with the same id: nothing was sent this time.
	Repeated bool      `json:"repeated,omitempty"`
	At       time.Time `json:"at"`
}

// Handler does one resync. The request is valid (Request.Validate).
type Handler func(ctx context.Context, req Request) Reply

// Errors of Ask, in the console's words.
var (
	// ErrNoResponder: no process of the consumer is subscribed (it is down
	// or not deployed).
	ErrNoResponder = errors.New("the consumer is not running: no process answered")
	// ErrTimeout: a process took the request but did not answer in time.
	// It may still finish; asking again with the same request id is safe.
	ErrTimeout = errors.New("the consumer did not answer in time")
)

// Ask sends req to consumer and waits for its reply until ctx ends.
func Ask(ctx context.Context, nc *nats.Conn, consumer string, req Request) (Reply, error) {
	subject, err := CheckedSubject(consumer)
	if err != nil {
		return Reply{}, err
	}
	if err := req.Validate(); err != nil {
		return Reply{}, fmt.Errorf("resync request: %w", err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Reply{}, fmt.Errorf("encode resync request: %w", err)
	}
	msg, err := nc.RequestWithContext(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return Reply{}, fmt.Errorf("resync %s: %w", consumer, ErrNoResponder)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return Reply{}, fmt.Errorf("resync %s: %w", consumer, ErrTimeout)
	case err != nil:
		return Reply{}, fmt.Errorf("resync %s: %w", consumer, err)
	}
	var rep Reply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return Reply{}, fmt.Errorf("resync %s: the reply does not decode: %w", consumer, err)
	}
	return rep, nil
}

// Server answers one consumer's resync requests.
type Server struct {
	sub      *nats.Subscription
	consumer string
	cancel   context.CancelFunc

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// queueGroup makes the replicas of a consumer share its requests: one
// request, one answer.
const queueGroup = "resync"

// Serve answers requests on consumer's subject with h, each in its own
// goroutine bounded by timeout, until Stop. A request whose reply subject
// is not an inbox is dropped: the reply goes back through the requester's
// inbox and nowhere else.
func Serve(nc *nats.Conn, consumer string, timeout time.Duration, log *slog.Logger, h Handler) (*Server, error) {
	subject, err := CheckedSubject(consumer)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{consumer: consumer, cancel: cancel}
	s.sub, err = nc.QueueSubscribe(subject, queueGroup, func(m *nats.Msg) {
		if !strings.HasPrefix(m.Reply, nats.InboxPrefix) {
			log.Warn("resync request without an inbox to answer, dropped", "consumer", consumer)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stopped {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			rctx, done := context.WithTimeout(ctx, timeout)
			defer done()
			rep := s.handle(rctx, m.Data, h)
			log.InfoContext(rctx, "resync", "action", "resync", "consumer", consumer, "request_id", rep.RequestID,
				"outcome", rep.Outcome, "repeated", rep.Repeated)
			body, err := json.Marshal(rep)
			if err == nil {
				err = m.Respond(body)
			}
			if err != nil {
				log.Warn("resync reply not sent", "consumer", consumer, "request_id", rep.RequestID, "error", bus.Redact(err.Error()))
			}
		}()
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return s, nil
}

func (s *Server) handle(ctx context.Context, data []byte, h Handler) Reply {
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		return Reply{Consumer: s.consumer, Outcome: OutcomeRefused, Detail: "the request does not decode", At: time.Now().UTC()}
	}
	if err := req.Validate(); err != nil {
		return Reply{RequestID: req.RequestID, Consumer: s.consumer, Outcome: OutcomeRefused, Detail: err.Error(), At: time.Now().UTC()}
	}
	rep := h(ctx, req)
	rep.RequestID, rep.Consumer = req.RequestID, s.consumer
	if rep.At.IsZero() {
		rep.At = time.Now().UTC()
	}
	return rep
}

// Stop takes no more requests, ends the ones in flight through their
// context, and waits for them to answer.
func (s *Server) Stop() error {
	err := s.sub.Unsubscribe()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
		return fmt.Errorf("unsubscribe %s: %w", s.sub.Subject, err)
	}
	return nil
}

// Run serves consumer's resync requests until ctx ends, then stops as
// Stop does: the shape of a service part (service.Host.Go).
func Run(ctx context.Context, nc *nats.Conn, consumer string, timeout time.Duration, log *slog.Logger, h Handler) error {
	s, err := Serve(nc, consumer, timeout, log, h)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return s.Stop()
}
