package bus

import (
	"fmt"
	"strings"
)

// Stream names.
const (
	StreamEvents = "BILLING_EVENTS"
	StreamDLQ    = "BILLING_DLQ"
	StreamStatus = "BILLING_STATUS"
)

// Subject prefixes. Each ends with a dot; the rest of the subject is the
// Stripe event type, the durable name or the customer id.
const (
	EventsPrefix = "billing.events."
	ReplayPrefix = "billing.replay."
	DLQPrefix    = "billing.dlq."
	StatusPrefix = "billing.status."
)

// EventSubject is where an event of the given Stripe type is published,
// e.g. billing.events.invoice.payment_failed.
func EventSubject(eventType string) string { return EventsPrefix + eventType }

// ReplaySubject is where a dead letter is put back for one durable only.
func ReplaySubject(durable, eventType string) string {
	return ReplayPrefix + durable + "." + eventType
}

// DLQSubject is where durable's dead letters go.
func DLQSubject(durable string) string { return DLQPrefix + durable }

// StatusSubject carries a customer's status changes.
func StatusSubject(customerID string) string { return StatusPrefix + customerID }

// DefaultFilterSubjects is what a durable reads unless told otherwise: every
// event, and replays meant for it alone.
func DefaultFilterSubjects(durable string) []string {
	return []string{EventsPrefix + ">", ReplayPrefix + durable + ".>"}
}

// TypeFilterSubjects is the filter of a durable that needs only some event
// types: JetStream then never delivers the others to it. Dead letters of
// the durable can always be replayed to it.
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

// validTokens reports whether s is one or more dot-separated subject tokens
// with no wildcards or whitespace, so it can be appended to a subject.
func validTokens(s string) error {
	if s == "" {
		return fmt.Errorf("empty subject token")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return fmt.Errorf("%q has an empty subject token", s)
		}
		if strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("%q has a wildcard or whitespace", s)
		}
	}
	return nil
}

// validName reports whether s can be a durable name: one subject token,
// because it is embedded in the replay and DLQ subjects.
func validName(s string) error {
	if err := validTokens(s); err != nil {
		return err
	}
	if strings.Contains(s, ".") {
		return fmt.Errorf("%q contains a dot", s)
	}
	return nil
}
