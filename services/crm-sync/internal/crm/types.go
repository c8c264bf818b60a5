package crm

import (
	"context"
	"time"
)

// Contact is a customer as the CRM should show it: profile fields and the
// canonical billing state derived by pkg/canonical.
type Contact struct {
	CustomerID string `json:"customer_id"`
	Email      string `json:"email,omitempty"`
	Name       string `json:"name,omitempty"`
	UserID     string `json:"user_id,omitempty"`
	// Status is the canonical status name ("active", "past_due", ...).
	Status   string `json:"billing_status"`
	Entitled bool   `json:"entitled"`
	// Plan is the price id of the subscription the status derives from.
	Plan string `json:"plan,omitempty"`
	// MRR is in the smallest currency unit.
	MRR                 int64      `json:"mrr"`
	Currency            string     `json:"currency,omitempty"`
	CurrentPeriodEnd    *time.Time `json:"current_period_end,omitempty"`
	LastPaymentFailedAt *time.Time `json:"last_payment_failed_at,omitempty"`
	DisputeOpen         bool       `json:"dispute_open"`
	Deleted             bool       `json:"deleted"`
	Livemode            bool       `json:"livemode"`
	// Test marks the contact of a smoke test (`launchready smoke`). Left
	// out of the JSON when false, so real contacts' documents, and the
	// hashes of what was pushed, stay as they were.
	Test bool `json:"launchready_test,omitempty"`
}

// Deal is one subscription as the CRM should show it.
type Deal struct {
	SubscriptionID string `json:"subscription_id"`
	CustomerID     string `json:"customer_id"`
	// CustomerEmail names the deal in the CRM; it is part of the deal so
	// that a new email renames it.
	CustomerEmail string `json:"customer_email,omitempty"`
	// Status is the subscription's own canonical status.
	Status string `json:"billing_status"`
	Plan   string `json:"plan,omitempty"`
	// MonthlyAmount is the subscription's price normalised to a month, in
	// the smallest currency unit, whatever its status (a lost deal keeps
	// the value it had).
	MonthlyAmount     int64      `json:"monthly_amount"`
	Currency          string     `json:"currency,omitempty"`
	CurrentPeriodEnd  *time.Time `json:"current_period_end,omitempty"`
	CancelAtPeriodEnd bool       `json:"cancel_at_period_end"`
	Deleted           bool       `json:"deleted"`
}

// DealChange is a deal to push and what is known of it in the CRM.
type DealChange struct {
	Deal Deal
	// CRMID is the deal id remembered from an earlier push, or "".
	CRMID string
	// AssociatedTo is the contact id the deal was last associated with.
	AssociatedTo string
	// Changed reports whether the deal's fields differ from the last push.
	Changed bool
}

// Change is one event's effect on one customer: the customer's full state
// and the deals to push. Adapters write what changed and make sure every
// deal is associated with the contact.
type Change struct {
	EventID   string
	EventType string
	// AsOf is the created time of the newest event applied to the
	// customer, so receivers can tell newer documents from older ones.
	AsOf time.Time
	// Delivery is the bus delivery count, for logs.
	Delivery uint64

	Contact Contact
	// ContactCRMID is the contact id remembered from an earlier push, or "".
	ContactCRMID   string
	ContactChanged bool
	Deals          []DealChange
}

// DealResult is what the CRM answered for one deal.
type DealResult struct {
	CRMID        string
	AssociatedTo string
}

// Result is what an adapter learned: ids to remember, and every call it
// made, for the sync log. An adapter fills Result even when it returns an
// error, so ids learned before the failure are kept.
type Result struct {
	ContactCRMID string
	Deals        map[string]DealResult
	Calls        []Call
}

// Call is one outbound request, as the sync log records it.
type Call struct {
	Op       string
	Object   string // customer or subscription id
	Status   int
	Outcome  string
	Duration time.Duration
	Detail   string
}

// Adapter pushes changes to one CRM.
type Adapter interface {
	// Name is the CRM_PROVIDER value.
	Name() string
	// TracksRecords reports whether the CRM returns record ids that must
	// exist (contact, deal, association) before a change counts as synced.
	TracksRecords() bool
	// Sync pushes the changes of several customers (one change each) in as
	// few calls as the CRM takes, at most MaxBatch inputs a call, and
	// returns one Outcome per change, in order. An Outcome's error is nil,
	// a bus.Permanent (the CRM refused that customer's record: it fails
	// alone, the others are pushed), a bus.RetryAfter (the vendor asked to
	// wait) or a plain error (retry with backoff); a transient failure
	// fails every change not pushed in full by then.
	Sync(ctx context.Context, chs []*Change) []Outcome
}
