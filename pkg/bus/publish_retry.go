package bus

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishAttempt bounds one attempt of a publish that carries a message id.
// A stream whose leader is gone answers nothing until a new one is elected;
// a short attempt, sent again with the same Nats-Msg-Id, reaches the new
// leader soon after it is elected instead of waiting out the caller's
// whole deadline on a request nobody will answer.
const publishAttempt = 750 * time.Millisecond

// jsDuplicateInProcess is JetStream's err_code 10158, "duplicate message id
// is in process": an earlier publish of the same Nats-Msg-Id is being
// stored right now (typically waiting for the replicas' quorum during an
// election). It is not a failure: its outcome is coming.
const jsDuplicateInProcess jetstream.ErrorCode = 10158

// publishUntilSettled publishes m, whose Nats-Msg-Id makes a repeat
// harmless, in short attempts until JetStream stores it, says it already
// has it, or refuses it for a reason no retry fixes; or until ctx ends. An
// attempt that gets no answer, meets an election (no responders, a
// leadership change, JetStream unavailable) or finds an earlier publish of
// the same id still in process is sent again after a short pause. The
// answer to a repeat of a message an earlier attempt stored is a
// duplicate ack, with the sequence of the stored message.
//
// With standby, each attempt from the second on is sent four ways at once,
// and the first ack wins: to m's stream and to BILLING_EVENTS_STANDBY,
// each through the publisher's connection and through the standby's (see
// WithStandby). The two streams are led from different nodes and the two
// connections are on different servers (KeepStandbyApart), so whichever
// single node is dead or silent, one of the four has neither its stream's
// leader nor its connection there. A copy stored twice is kept once, by its
// Nats-Msg-Id. Only the events stream's refusals are final.
func (p *Publisher) publishUntilSettled(ctx context.Context, m *nats.Msg, standby bool) (*jetstream.PubAck, error) {
	ctx, cancel := withPublishDeadline(ctx)
	defer cancel()
	var lastErr error
	first := []publishTry{{js: p.js, msg: m}}
	var spread []publishTry
	if standby {
		alt := standbyMsg(m)
		spread = []publishTry{{js: p.js, msg: m}, {js: p.standbyJS, msg: alt, standby: true}, {js: p.js, msg: alt, standby: true}}
		if p.standbyJS != p.js {
			spread = append(spread, publishTry{js: p.standbyJS, msg: m})
		}
	}
	for n := 1; ; n++ {
		tries := first
		if n > 1 && spread != nil {
			tries = spread
		}
		ack, viaStandby, err := publishFirst(ctx, tries)
		if err == nil {
			if viaStandby {
				p.metrics.standby()
			}
			return ack, nil
		}
		reason, retry := publishRetryReason(err)
		if !retry {
			return nil, err
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			// The caller's deadline, not the attempt's: say why it failed.
			err = errors.Join(err, lastErr)
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, lastErr
		}
		p.metrics.retried(reason)
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), lastErr)
		case <-time.After(publishRetryDelay(n)):
		}
	}
}

// publishRetryReason says whether a failed attempt is worth repeating, and
// why, as counted in lr_publish_retries_total.
func publishRetryReason(err error) (string, bool) {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.ErrorCode == jsDuplicateInProcess:
			return "in_process", true
		case apiErr.Code >= 500:
			return "unavailable", true
		}
		return "", false
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "no_answer", true
	case !isUnavailable(err):
		return "", false
	}
	return "unavailable", true
}

// publishRetryDelay is the pause before attempt n+1: 25 ms, then growing to
// 200 ms, with jitter so that the publishes a failover interrupted do not
// all come back at once.
func publishRetryDelay(n int) time.Duration {
	d := min(time.Duration(n)*25*time.Millisecond, 200*time.Millisecond)
	return d/2 + rand.N(d/2+1) // #nosec G404 -- retry jitter needs spread, not unpredictability
}

// withPublishDeadline bounds ctx at 5 s when it has no deadline of its own,
// so that no publish waits forever on a stream that cannot answer.
func withPublishDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 5*time.Second)
}

// publishTry is one way to send a message: through which connection, and
// whether to the standby stream.
type publishTry struct {
	js      jetstream.JetStream
	msg     *nats.Msg
	standby bool
}

// publishFirst sends every try at once, each bounded by publishAttempt,
// and returns the first ack (and whether it came from the standby). When
// none is acked, the error is the first refusal of the events stream that
// no retry fixes, else the events stream's first error, else the
// standby's; the tries still running are cancelled either way.
func publishFirst(ctx context.Context, tries []publishTry) (*jetstream.PubAck, bool, error) {
	if len(tries) == 1 {
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		defer cancel()
		ack, err := tries[0].js.PublishMsg(actx, tries[0].msg)
		return ack, tries[0].standby, err
	}
	actx, cancel := context.WithTimeout(ctx, publishAttempt)
	defer cancel()
	type result struct {
		ack *jetstream.PubAck
		err error
		try publishTry
	}
	results := make(chan result, len(tries))
	for _, t := range tries {
		go func() {
			ack, err := t.js.PublishMsg(actx, t.msg)
			results <- result{ack, err, t}
		}()
	}
	var mainErr, standbyErr error
	for range tries {
		r := <-results
		switch {
		case r.err == nil:
			return r.ack, r.try.standby, nil
		case r.try.standby:
			standbyErr = cmp.Or(standbyErr, r.err)
		default:
			if _, retry := publishRetryReason(r.err); !retry {
				return nil, false, r.err
			}
			mainErr = cmp.Or(mainErr, r.err)
		}
	}
	if mainErr != nil {
		return nil, false, mainErr
	}
	return nil, true, standbyErr
}
