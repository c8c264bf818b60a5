package bus

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Stream names.
const (
	StreamEvents = "BILLING_EVENTS"
	StreamDLQ    = "BILLING_DLQ"
	StreamStatus = "BILLING_STATUS"
	// StreamStandby takes a webhook while BILLING_EVENTS has no leader (see
	// StandbyPrefix); on a single server it does not exist.
	StreamStandby = "BILLING_EVENTS_STANDBY"
)

// Subject prefixes. Each ends with a dot; the rest of the subject is the
// Stripe event type, the durable name or the customer id.
const (
	EventsPrefix = "billing.events."
	ReplayPrefix = "billing.replay."
	DLQPrefix    = "billing.dlq."
	StatusPrefix = "billing.status."
	// StandbyPrefix + "events.<type>" is where an event goes while the
	// events stream is electing a leader. BILLING_EVENTS sources
	// BILLING_EVENTS_STANDBY and maps each message back to billing.events.<type>,
	// keeping its Nats-Msg-Id, so consumers see one stream and one copy.
	StandbyPrefix = "billing.standby."
)

// Bounds on what a subject built from input may hold. NATS refuses a
// protocol line over 4,096 bytes (max_control_line) by closing the
// connection, and a publish or subscribe line carries the subject plus a
// reply inbox and sizes: subjects kept under these bounds leave that line
// far below the limit. Stripe's ids are at most 255 bytes, its event types
// under 100.
const (
	MaxSubjectTokenBytes = 256
	MaxSubjectBytes      = 512
)

// ErrInvalidSubject marks input that cannot be put in a subject. Nothing
// was sent: retrying the same input cannot help.
var ErrInvalidSubject = errors.New("invalid subject")

// ValidSubjectToken reports whether s can be one token of a subject (a
// customer id, a durable name): 1 to MaxSubjectTokenBytes bytes of valid
// UTF-8 with no dot, no wildcard (* or >), no whitespace and no control
// character. Edges that put caller input in a subject (the gRPC Watch,
// ingress) check with it before building one. The error wraps
// ErrInvalidSubject and quotes at most the start of s.
func ValidSubjectToken(s string) error {
	if strings.IndexByte(s, '.') >= 0 {
		return fmt.Errorf("%w: %s contains a dot", ErrInvalidSubject, quoteHead(s))
	}
	return validToken(s)
}

// validToken is ValidSubjectToken without the dot rule, for the tokens of
// an already split subject.
func validToken(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty token", ErrInvalidSubject)
	case len(s) > MaxSubjectTokenBytes:
		return fmt.Errorf("%w: token of %d bytes, over %d", ErrInvalidSubject, len(s), MaxSubjectTokenBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidSubject, quoteHead(s))
	}
	for _, r := range s {
		switch {
		case r == '*' || r == '>':
			return fmt.Errorf("%w: %s contains a wildcard", ErrInvalidSubject, quoteHead(s))
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Errorf("%w: %s contains whitespace or a control character", ErrInvalidSubject, quoteHead(s))
		}
	}
	return nil
}

// validTokens reports whether s is one or more dot-separated tokens (an
// event type such as invoice.payment_failed) that can be appended to a
// subject.
func validTokens(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty token", ErrInvalidSubject)
	}
	if len(s) > MaxSubjectBytes {
		return fmt.Errorf("%w: %d bytes, over %d", ErrInvalidSubject, len(s), MaxSubjectBytes)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if err := validToken(tok); err != nil {
			return err
		}
	}
	return nil
}

// validSubject checks a whole subject the way a publish needs it: valid
// tokens and at most MaxSubjectBytes.
func validSubject(subject string) error {
	if err := validTokens(subject); err != nil {
		return fmt.Errorf("subject %s: %w", quoteHead(subject), err)
	}
	return nil
}

// validFilter checks a consumer's filter subject: the tokens of a subject,
// where * may stand for one token and > for the rest.
func validFilter(filter string) error {
	if filter == "" || len(filter) > MaxSubjectBytes {
		return fmt.Errorf("%w: filter of %d bytes", ErrInvalidSubject, len(filter))
	}
	toks := strings.Split(filter, ".")
	for i, tok := range toks {
		if tok == "*" || (tok == ">" && i == len(toks)-1) {
			continue
		}
		if err := validToken(tok); err != nil {
			return fmt.Errorf("filter %s: %w", quoteHead(filter), err)
		}
	}
	return nil
}

// quoteHead quotes s for an error message, cut to its first 64 bytes:
// refused input can be large, and the error is logged.
func quoteHead(s string) string {
	const head = 64
	if len(s) <= head {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", truncateUTF8(s, head), len(s))
}

// EventSubject is where an event of the given Stripe type is published,
// e.g. billing.events.invoice.payment_failed. It trusts eventType (a
// constant, or a type already checked); for anything else use
// CheckedEventSubject.
func EventSubject(eventType string) string { return EventsPrefix + eventType }

// CheckedEventSubject is EventSubject for an event type from outside: one
// or more dot-separated tokens, each as ValidSubjectToken requires, and a
// subject of at most MaxSubjectBytes.
func CheckedEventSubject(eventType string) (string, error) {
	if err := validTokens(eventType); err != nil {
		return "", fmt.Errorf("event type: %w", err)
	}
	return checkedLength(EventSubject(eventType))
}

// ReplaySubject is where a dead letter is put back for one durable only.
// Its arguments are trusted as EventSubject's are.
func ReplaySubject(durable, eventType string) string {
	return ReplayPrefix + durable + "." + eventType
}

// CheckedReplaySubject is ReplaySubject for a durable and an event type
// read from a dead letter's headers.
func CheckedReplaySubject(durable, eventType string) (string, error) {
	if err := ValidSubjectToken(durable); err != nil {
		return "", fmt.Errorf("consumer: %w", err)
	}
	if err := validTokens(eventType); err != nil {
		return "", fmt.Errorf("event type: %w", err)
	}
	return checkedLength(ReplaySubject(durable, eventType))
}

// DLQSubject is where durable's dead letters go. durable is trusted as
// EventSubject's eventType is.
func DLQSubject(durable string) string { return DLQPrefix + durable }

// CheckedDLQSubject is DLQSubject for a consumer name from outside.
func CheckedDLQSubject(durable string) (string, error) {
	if err := ValidSubjectToken(durable); err != nil {
		return "", fmt.Errorf("consumer: %w", err)
	}
	return DLQSubject(durable), nil
}

// StatusSubject carries a customer's status changes. customerID is trusted
// as EventSubject's eventType is.
func StatusSubject(customerID string) string { return StatusPrefix + customerID }

// CheckedStatusSubject is StatusSubject for a customer id from outside,
// such as a Watch request: one token, as ValidSubjectToken requires.
func CheckedStatusSubject(customerID string) (string, error) {
	if err := ValidSubjectToken(customerID); err != nil {
		return "", fmt.Errorf("customer id: %w", err)
	}
	return StatusSubject(customerID), nil
}

// checkedLength refuses a built subject over MaxSubjectBytes, which its
// tokens alone do not rule out.
func checkedLength(subject string) (string, error) {
	if len(subject) > MaxSubjectBytes {
		return "", fmt.Errorf("%w: subject of %d bytes, over %d", ErrInvalidSubject, len(subject), MaxSubjectBytes)
	}
	return subject, nil
}

// DefaultFilterSubjects is what a durable reads unless told otherwise: every
// event, and replays meant for it alone.
func DefaultFilterSubjects(durable string) []string {
	return []string{EventsPrefix + ">", ReplayPrefix + durable + ".>"}
}

// TypeFilterSubjects is the filter of a durable that needs only some event
// types: JetStream then never delivers the others to it. Dead letters of
// the durable can always be replayed to it. The consumer checks every
// filter before it starts (ConsumerConfig.FilterSubjects).
func TypeFilterSubjects(durable string, types []string) []string {
	out := make([]string, 0, len(types)+1)
	for _, t := range types {
		out = append(out, EventSubject(t))
	}
	return append(out, ReplayPrefix+durable+".>")
}

// eventTypeFromSubject recovers the Stripe type from an event or replay
// subject; replay subjects carry the durable name first.
func eventTypeFromSubject(subject string) (eventType string, replay bool) {
	switch {
	case strings.HasPrefix(subject, EventsPrefix):
		return subject[len(EventsPrefix):], false
	case strings.HasPrefix(subject, ReplayPrefix):
		rest := subject[len(ReplayPrefix):]
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			return rest[i+1:], true
		}
		return "", true
	}
	return "", false
}
