package state

import (
	"context"
	"errors"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// LookupSQL is each lookup's statement, for the test that checks their plans.
var LookupSQL = map[string]string{"user_id": byUserIDSQL, "email": byEmailSQL}

var errRollBack = errors.New("rolled back on purpose")

// StoreFacts runs storeFacts, the one switch over pkg/canonical's kinds, for
// ev on customerID, sends what it queued to Postgres and rolls it back. It
// returns storeFacts' outcome: OutcomeIgnored for a kind it has no writer
// for.
func (s *Store) StoreFacts(ctx context.Context, customerID string, ev *billingv1.BillingEvent) (Outcome, error) {
	var out Outcome
	err := s.inTx(ctx, func(t *txn) error {
		if err := t.lockCustomer(customerID, ev.GetLivemode()); err != nil {
			return err
		}
		var err error
		if out, err = t.storeFacts(ev, canonical.Classify(ev), hint{}, true); err != nil {
			return err
		}
		if err := t.tx.Flush(t.ctx); err != nil {
			return err
		}
		return errRollBack
	})
	if !errors.Is(err, errRollBack) {
		return "", err
	}
	return out, nil
}
