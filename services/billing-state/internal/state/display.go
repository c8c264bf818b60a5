package state

import (
	"context"
	"fmt"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/display"
)

// displayFactsSQL answers DisplayFacts in one round trip. $1 customer,
// $2 subscription, $3 the staleness bound in seconds.
const displayFactsSQL = `SELECT
	(SELECT i.next_payment_attempt FROM billing.invoices i
		WHERE i.customer_id = $1 AND i.status = 'open' AND ($2 = '' OR i.subscription_id = $2)
		ORDER BY i.last_event_created DESC NULLS LAST LIMIT 1),
	EXISTS (SELECT 1 FROM billing.dead_letters d WHERE d.customer_id = $1
		AND NOT EXISTS (SELECT 1 FROM billing.processed_events p WHERE p.event_id = d.event_id)),
	EXISTS (SELECT 1 FROM billing.unresolved_events u JOIN billing.payment_refs r ON r.ref = u.ref
		WHERE r.customer_id = $1 AND u.resolved_at IS NULL AND u.recorded_at < now() - $3 * interval '1 second')`

// DisplayFacts reads what the customer-facing display needs beyond the
// stored status (a display.FactsFunc): Stripe's next attempt at the newest
// open invoice of subscriptionID (of any subscription when empty), and
// whether the status is unknown, because an event of the customer is in
// billing-state's dead letters and has not been applied since, or an event
// naming one of its charges has been parked for longer than staleAfter.
// The customer need not exist yet: an event may be dead-lettered before
// any of its events was applied.
func (s *Store) DisplayFacts(ctx context.Context, customerID, subscriptionID string, staleAfter time.Duration) (display.Facts, error) {
	var retry *time.Time
	var deadLettered, staleParked bool
	err := s.pool.QueryRow(ctx, displayFactsSQL, customerID, subscriptionID, staleAfter.Seconds()).Scan(&retry, &deadLettered, &staleParked)
	if err != nil {
		return display.Facts{}, fmt.Errorf("display facts of %s: %w", customerID, err)
	}
	return display.Facts{RetryAt: timeOrZero(retry), Unknown: deadLettered || staleParked}, nil
}

// RecordDeadLetter notes that ev was dead-lettered by billing-state, under
// the customer it names or, for an event naming only a charge or payment
// intent, the customer that charge is known to belong to. An event whose
// customer cannot be told is not recorded: there is no one to show it to.
func (s *Store) RecordDeadLetter(ctx context.Context, ev *billingv1.BillingEvent) error {
	if ev.GetEventId() == "" {
		return nil
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO billing.dead_letters (event_id, customer_id, event_type)
		SELECT $1, c, $3 FROM (SELECT COALESCE(NULLIF($2, ''),
			(SELECT customer_id FROM billing.payment_refs WHERE ref = $4),
			(SELECT customer_id FROM billing.payment_refs WHERE ref = $5)) AS c) x WHERE c IS NOT NULL
		ON CONFLICT (event_id) DO UPDATE SET failed_at = now()`,
		ev.GetEventId(), ev.GetCustomerId(), ev.GetType(), ev.GetChargeId(), ev.GetPaymentIntentId())
	if err != nil {
		return fmt.Errorf("record dead letter %s: %w", ev.GetEventId(), err)
	}
	return nil
}
