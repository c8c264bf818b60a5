package syncer

import (
	"context"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// ApplyEvent is applyEvent, the mirror's one switch over pkg/canonical's
// kinds, for the test that runs every fixture through it.
func ApplyEvent(ctx context.Context, tx *pg.Tx, facts canonical.Facts, customerID string, ev *billingv1.BillingEvent) (string, error) {
	ensureCustomer(tx, customerID, ev)
	return applyEvent(ctx, tx, facts, customerID, ev, nil)
}
