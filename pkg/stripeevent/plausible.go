package stripeevent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// ErrImplausible is returned, wrapped with the reason, for a well-formed
// event whose type or ids are not shaped like Stripe's. Such an event is
// refused even when it is signed: its type becomes a NATS subject and its
// ids become subjects, dedupe keys and database keys downstream, so what
// Stripe never sends must not reach them.
var ErrImplausible = errors.New("implausible stripe event")

// Limits of CheckPlausible.
const (
	// MaxTypeLen bounds an event type. Stripe's longest is under 60 bytes;
	// the subject built from it must stay far below the 4,096-byte NATS
	// control line, past which the server drops the connection.
	MaxTypeLen = 100
	// MaxIDLen bounds a Stripe object id.
	MaxIDLen = 255
	// maxTypeTokens is the dot-separated words of a type: a first word and
	// one to five more (issuing_authorization.request has two,
	// customer.subscription.pending_update_applied three).
	maxTypeTokens = 6
)

// CheckType reports whether t has the shape of a Stripe event type:
// dot-separated lowercase words, ^[a-z0-9_]+(\.[a-z0-9_*]+){1,5}$, at most
// MaxTypeLen bytes. A '*' is allowed after the first word because Stripe
// names wildcard subscriptions that way (HasWildcard tells them apart); it
// is never a concrete event.
func CheckType(t string) error {
	if len(t) > MaxTypeLen {
		return fmt.Errorf("%w: event type is %d bytes, at most %d allowed", ErrImplausible, len(t), MaxTypeLen)
	}
	tokens, tokenLen := 1, 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '.':
			if tokenLen == 0 {
				return fmt.Errorf("%w: event type %s has an empty word", ErrImplausible, quoteShort(t))
			}
			tokens++
			tokenLen = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_':
		case c == '*' && tokens > 1:
		default:
			return fmt.Errorf("%w: event type %s is not dot-separated lowercase words", ErrImplausible, quoteShort(t))
		}
		tokenLen++
	}
	switch {
	case tokenLen == 0:
		return fmt.Errorf("%w: event type %s has an empty word", ErrImplausible, quoteShort(t))
	case tokens < 2 || tokens > maxTypeTokens:
		return fmt.Errorf("%w: event type %s has %d words, want 2 to %d", ErrImplausible, quoteShort(t), tokens, maxTypeTokens)
	}
	return nil
}

// HasWildcard reports whether a type that passed CheckType names a pattern
// rather than an event ("customer.*"). It cannot be published as a subject
// of its own: in NATS it would match other subjects.
func HasWildcard(t string) bool { return strings.IndexByte(t, '*') >= 0 }

// IsStripeID reports whether s has the shape of an id Stripe generates:
// 1 to MaxIDLen letters, digits and underscores (evt_1NqZ..., cus_..., in_...).
func IsStripeID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// CheckPlausible refuses, with ErrImplausible and the reason, an event from
// Normalize whose type fails CheckType or whose event id, account, object id
// or normalised object ids (customer, subscription, invoice, charge,
// payment intent, refund, dispute, checkout session) are not Stripe ids.
// Stripe generates each of these; an account cannot choose them. Price and
// product ids are not checked: plans and products created before prices
// carry ids the account chose ("gold-monthly"), and refusing their
// subscription events would lose billing state.
func CheckPlausible(ev *billingv1.BillingEvent) error {
	if err := CheckType(ev.GetType()); err != nil {
		return err
	}
	if !IsStripeID(ev.GetEventId()) {
		return implausibleID("event id", ev.GetEventId())
	}
	ids := [...]struct{ name, value string }{
		{"account", ev.GetAccount()},
		{"data.object.id", ev.GetObjectId()},
		{"customer id", ev.GetCustomerId()},
		{"subscription id", ev.GetSubscriptionId()},
		{"invoice id", ev.GetInvoiceId()},
		{"charge id", ev.GetChargeId()},
		{"payment intent id", ev.GetPaymentIntentId()},
		{"refund id", ev.GetRefundId()},
		{"dispute id", ev.GetDisputeId()},
		{"checkout session id", ev.GetCheckoutSessionId()},
	}
	for _, id := range ids {
		if id.value != "" && !IsStripeID(id.value) {
			return implausibleID(id.name, id.value)
		}
	}
	return nil
}

func implausibleID(name, value string) error {
	if value == "" {
		return fmt.Errorf("%w: %s is empty", ErrImplausible, name)
	}
	return fmt.Errorf("%w: %s %s is not a Stripe id (1 to %d letters, digits or underscores)", ErrImplausible, name, quoteShort(value), MaxIDLen)
}

// quoteShort quotes s for an error message, cut to a few dozen bytes: the
// message goes into logs and answers, and s may be 5,000 bytes a stranger
// chose.
func quoteShort(s string) string {
	const keep = 40
	if len(s) <= keep {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:keep]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
