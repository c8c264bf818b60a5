package canonical

import (
	"time"
)

// Snapshot is one subscription snapshot as an event carried it: enough to
// decide whether it may replace the stored one.
type Snapshot struct {
	EventID   string
	EventType string
	// Created is the event's created time; Stripe gives it to the second.
	Created           time.Time
	Status            string
	CancelAtPeriodEnd bool
	PriceID           string
	// Deleted: the event is customer.subscription.deleted.
	Deleted bool
	// Previous is what data.previous_attributes says the subscription was
	// just before this event.
	Previous Previous
}

// Previous holds the tracked fields of data.previous_attributes; nil means
// the update did not change that field.
type Previous struct {
	Status            *string
	CancelAtPeriodEnd *bool
	PriceID           *string
}

// IsZero reports whether previous_attributes named none of the tracked fields.
func (p Previous) IsZero() bool {
	return p.Status == nil && p.CancelAtPeriodEnd == nil && p.PriceID == nil
}

// Outcome is what to do with an incoming snapshot.
type Outcome int

const (
	// Apply: the incoming snapshot is newer; store it.
	Apply Outcome = iota + 1
	// Stale: the stored snapshot is newer (or the same); keep it.
	Stale
	// ApplyAmbiguous: same second and nothing orders the two; the incoming
	// one is the more advanced lifecycle state, so it is stored, and the
	// customer must be reconciled with Stripe.
	ApplyAmbiguous
	// StaleAmbiguous: as ApplyAmbiguous, but the stored snapshot is the
	// more advanced one and is kept.
	StaleAmbiguous
)

func (o Outcome) String() string {
	switch o {
	case Apply:
		return "apply"
	case Stale:
		return "stale"
	case ApplyAmbiguous:
		return "apply_ambiguous"
	case StaleAmbiguous:
		return "stale_ambiguous"
	}
	return "unknown"
}

// Decision is DecideSnapshot's answer and why.
type Decision struct {
	Outcome Outcome
	Reason  string
}

// Applies reports whether the incoming snapshot replaces the stored one.
func (d Decision) Applies() bool { return d.Outcome == Apply || d.Outcome == ApplyAmbiguous }

// Ambiguous reports whether the order could not be proven, so the customer
// needs reconciliation (or a fresh read from Stripe).
func (d Decision) Ambiguous() bool {
	return d.Outcome == ApplyAmbiguous || d.Outcome == StaleAmbiguous
}

// Reasons, for logs and the audit trail.
const (
	ReasonFirst        = "first snapshot"
	ReasonDuplicate    = "same event"
	ReasonTerminal     = "ended subscriptions stay ended"
	ReasonNewer        = "newer event"
	ReasonOlder        = "older event"
	ReasonTerminalTie  = "two ending snapshots in one second; ordered by event id"
	ReasonChain        = "previous_attributes chain"
	ReasonCreatedFirst = "created precedes updates"
	ReasonSameContent  = "same content"
	ReasonMoreAdvanced = "same second, unordered; more advanced lifecycle state kept"
)

// DecideSnapshot decides whether incoming may replace stored (the zero
// Snapshot when nothing is stored). Stripe does not order events and gives
// created to the second, so the rules are, in order:
//
//  1. Nothing stored: apply. The same event again: stale.
//  2. Ended is terminal. customer.subscription.deleted ends a subscription
//     for good, and a canceled or incomplete_expired status can never change
//     again in Stripe: nothing re-opens it, and the ending snapshot wins over
//     any live one, older or in the same second (a deleted subscription stays
//     deleted). deleted > canceled/incomplete_expired > live.
//  3. Otherwise the newer created second wins.
//  4. Same second: an update whose previous_attributes equal the stored
//     state came right after it (apply); stored state whose
//     previous_attributes equal the incoming one came right after it (stale).
//  5. customer.subscription.created precedes any update of its second.
//  6. Equal content: stale, nothing to change.
//  7. Still unordered: keep the more advanced lifecycle state (see
//     LifecycleRank) and report it as ambiguous, so the caller re-fetches
//     the subscription or marks the customer for reconciliation.
//
// Each rule depends only on the two snapshots, never on which arrived
// first, so shuffled delivery of a journey ends in the state of ordered
// delivery.
func DecideSnapshot(stored, incoming Snapshot) Decision {
	if stored.EventID == "" && stored.Created.IsZero() && stored.Status == "" && !stored.Deleted {
		return Decision{Apply, ReasonFirst}
	}
	if incoming.EventID != "" && incoming.EventID == stored.EventID {
		return Decision{Stale, ReasonDuplicate}
	}
	ts, ti := terminality(stored), terminality(incoming)
	if ts != ti {
		if ti > ts {
			return Decision{Apply, ReasonTerminal}
		}
		return Decision{Stale, ReasonTerminal}
	}
	si, ii := stored.Created.Unix(), incoming.Created.Unix()
	switch {
	case ii > si:
		return Decision{Apply, ReasonNewer}
	case ii < si:
		return Decision{Stale, ReasonOlder}
	}
	if ts > 0 {
		// Both end the subscription in the same second: the status is the
		// same either way, so an arbitrary but fixed order is enough.
		if incoming.EventID > stored.EventID {
			return Decision{Apply, ReasonTerminalTie}
		}
		return Decision{Stale, ReasonTerminalTie}
	}
	inAfter, storedAfter := follows(incoming, stored), follows(stored, incoming)
	switch {
	case inAfter && !storedAfter:
		return Decision{Apply, ReasonChain}
	case storedAfter && !inAfter:
		return Decision{Stale, ReasonChain}
	}
	inCreated, storedCreated := incoming.EventType == "customer.subscription.created", stored.EventType == "customer.subscription.created"
	switch {
	case storedCreated && !inCreated:
		return Decision{Apply, ReasonCreatedFirst}
	case inCreated && !storedCreated:
		return Decision{Stale, ReasonCreatedFirst}
	}
	if incoming.Status == stored.Status && incoming.CancelAtPeriodEnd == stored.CancelAtPeriodEnd && incoming.PriceID == stored.PriceID {
		return Decision{Stale, ReasonSameContent}
	}
	if moreAdvanced(incoming, stored) {
		return Decision{ApplyAmbiguous, ReasonMoreAdvanced}
	}
	return Decision{StaleAmbiguous, ReasonMoreAdvanced}
}

// LifecycleRank orders Stripe subscription statuses by how far along the
// lifecycle they are, for same-second ties nothing else can order:
//
//	incomplete < trialing < paused < active < past_due < unpaid < canceled = incomplete_expired
//
// A subscription starts incomplete (first payment pending) or trialing.
// paused only arises when a trial ends without a payment method, and it
// resumes into active, so it sits between the two. From active, a failed
// renewal moves it forward through dunning: past_due, then unpaid (or
// canceled) when retries run out. The ended statuses are last. The lifecycle
// has one loop (past_due back to active when a retry succeeds); ranking
// past_due higher means an unordered tie keeps the state that still needs
// money, and the reconciliation mark says to look again. Unknown statuses
// rank 0.
func LifecycleRank(stripeStatus string) int {
	switch stripeStatus {
	case StripeIncomplete:
		return 1
	case StripeTrialing:
		return 2
	case StripePaused:
		return 3
	case StripeActive:
		return 4
	case StripePastDue:
		return 5
	case StripeUnpaid:
		return 6
	case StripeCanceled, StripeIncompleteExpired:
		return 7
	}
	return 0
}

func terminality(s Snapshot) int {
	switch {
	case s.Deleted:
		return 2
	case s.Status == StripeCanceled || s.Status == StripeIncompleteExpired:
		return 1
	}
	return 0
}

// follows reports whether a's previous_attributes describe b exactly, i.e.
// a is the update that came right after b. previous_attributes that name
// none of the tracked fields prove nothing.
func follows(a, b Snapshot) bool {
	p := a.Previous
	if p.IsZero() {
		return false
	}
	if p.Status != nil && *p.Status != b.Status {
		return false
	}
	if p.CancelAtPeriodEnd != nil && *p.CancelAtPeriodEnd != b.CancelAtPeriodEnd {
		return false
	}
	if p.PriceID != nil && *p.PriceID != b.PriceID {
		return false
	}
	return true
}

// moreAdvanced is a fixed total order on unordered snapshots: lifecycle
// rank, then a scheduled cancellation, then the event id.
func moreAdvanced(a, b Snapshot) bool {
	ra, rb := LifecycleRank(a.Status), LifecycleRank(b.Status)
	if ra != rb {
		return ra > rb
	}
	if a.CancelAtPeriodEnd != b.CancelAtPeriodEnd {
		return a.CancelAtPeriodEnd
	}
	return a.EventID > b.EventID
}
