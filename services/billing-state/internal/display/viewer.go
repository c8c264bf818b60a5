package display

import (
	"context"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// DefaultStaleAfter is STATUS_STALE_AFTER's default.
const DefaultStaleAfter = 5 * time.Minute

// FactsFunc reads the display facts of a customer, judging parked events
// stale past staleAfter.
type FactsFunc func(ctx context.Context, customerID, subscriptionID string, staleAfter time.Duration) (Facts, error)

// Viewer attaches displays to statuses read from the store; the gRPC API
// and the status page share one.
type Viewer struct {
	Catalogues *Catalogues
	Facts      FactsFunc
	// StaleAfter is STATUS_STALE_AFTER (DefaultStaleAfter when zero).
	StaleAfter time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Attach sets st.Display in the words of locale's catalogue.
func (v *Viewer) Attach(ctx context.Context, st *billingv1.CustomerStatus, locale string) error {
	stale := v.StaleAfter
	if stale <= 0 {
		stale = DefaultStaleAfter
	}
	f, err := v.Facts(ctx, st.GetCustomerId(), st.GetSubscriptionId(), stale)
	if err != nil {
		return err
	}
	st.Display = Derive(v.Catalogues.For(locale), st, f, v.now())
	return nil
}

// Empty is the status a lookup that found no billing record answers with
// include_empty: status NONE with the empty-state display.
func (v *Viewer) Empty(locale string) *billingv1.CustomerStatus {
	st := &billingv1.CustomerStatus{Status: billingv1.BillingStatus_BILLING_STATUS_NONE}
	st.Display = Derive(v.Catalogues.For(locale), st, Facts{}, v.now())
	return st
}

// Messages returns locale's words for clients that get no answer.
func (v *Viewer) Messages(locale string) *billingv1.DisplayMessages {
	return v.Catalogues.For(locale).Messages()
}

func (v *Viewer) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}
