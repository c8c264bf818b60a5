package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable marks a failure to reach NATS or to get JetStream's ack:
// the caller may retry later (ingress answers 503 so Stripe does).
var ErrUnavailable = errors.New("nats unavailable")

// ErrNotAuthorized marks a server that refused the client's credentials:
// retrying with the same ones cannot help.
var ErrNotAuthorized = errors.New("nats refused the credentials")

// isUnavailable tells transient broker failures from mistakes that a retry
// cannot fix (an oversize payload, a bad subject).
func isUnavailable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrInvalidSubject),
		errors.Is(err, nats.ErrMaxPayload),
		errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrInvalidMsg),
		errors.Is(err, jetstream.ErrInvalidOption),
		errors.Is(err, jetstream.ErrInvalidSubject),
		errors.Is(err, jetstream.ErrInvalidStreamName):
		return false
	}
	return true
}

// Permanent marks a failure that no retry will fix (a malformed payload, a
// rule violation). The runner dead-letters the message at once and
// terminates it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfter asks for the next attempt no sooner than d, typically a
// vendor's Retry-After. Past MaxDeliver the message is dead-lettered like
// any other failure. A nil err still means "retry".
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &retryAfterError{err: err, after: d}
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfterDelay returns the delay err asks for with RetryAfter, if any,
// for a caller that waits in place instead of handing the message back.
func RetryAfterDelay(err error) (time.Duration, bool) { return retryAfter(err) }

// retryAfter returns the delay asked for with RetryAfter, if any.
func retryAfter(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) && r.after > 0 {
		return r.after, true
	}
	return 0, false
}

// connectionTrouble reports errors that mean "the broker is not answering
// right now" as opposed to a refusal; used to decide whether to retry
// setting up a consumer.
func connectionTrouble(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, jetstream.ErrConsumerLeadershipChanged)
}
