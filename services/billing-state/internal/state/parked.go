package state

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Events parked for a charge: a dispute or refund whose charge's customer
// is not known yet waits in billing.unresolved_events. The event that
// teaches the charge's customer claims it (deriveAndClaim) and applies it
// in its own transaction (applyParked); ResolveParked sweeps up what such a
// claim missed.

// park records an event whose customer cannot be found yet.
func (t *txn) park(ev *billingv1.BillingEvent) (Result, error) {
	ref := ev.GetChargeId()
	if ref == "" {
		ref = ev.GetPaymentIntentId()
	}
	body, err := proto.Marshal(ev)
	if err != nil {
		return Result{}, fmt.Errorf("park %s: %w", ev.GetEventId(), err)
	}
	t.tx.Queue("park", `INSERT INTO billing.unresolved_events (event_id, event_type, ref, event) VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING`,
		ev.GetEventId(), ev.GetType(), ref, body)
	t.tx.Queue("park", `UPDATE billing.processed_events SET outcome = 'unresolved' WHERE event_id = $1`, ev.GetEventId())
	t.s.log.WarnContext(t.ctx, "event parked until its charge's customer is known",
		"event_id", ev.GetEventId(), "charge_id", ref, "action", "park", "outcome", string(OutcomeUnresolved))
	return Result{Outcome: OutcomeUnresolved}, nil
}

// ResolveParked applies parked events whose charge's customer has become
// known without them being claimed. An event is parked by one transaction
// while another, not yet committed, teaches its charge: neither sees the
// other's rows, so the teaching event's claim misses the parked one. This
// sweep closes that window. Each customer is locked and its parked events
// claimed exactly as a teaching event would, so an event another
// transaction applied meanwhile is not applied again. It returns how many
// events it applied.
func (s *Store) ResolveParked(ctx context.Context, limit int) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT r.customer_id, u.ref FROM billing.unresolved_events u
		JOIN billing.payment_refs r ON r.ref = u.ref WHERE u.resolved_at IS NULL LIMIT $1`, limit)
	if err != nil {
		return 0, fmt.Errorf("find resolvable parked events: %w", err)
	}
	type owned struct{ customer, ref string }
	var found []owned
	for rows.Next() {
		var o owned
		if err := rows.Scan(&o.customer, &o.ref); err != nil {
			rows.Close()
			return 0, fmt.Errorf("find resolvable parked events: %w", err)
		}
		found = append(found, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find resolvable parked events: %w", err)
	}
	total := 0
	for _, o := range found {
		applied, changed := 0, false
		err := s.inTx(ctx, func(t *txn) error {
			applied, changed = 0, false
			if err := t.lockCustomer(o.customer, false); err != nil {
				return err
			}
			before := t.cus.status
			t.rememberedRefs = []string{o.ref}
			_, parked, err := t.deriveAndClaim()
			if err != nil || len(parked) == 0 {
				return err // none left: another transaction claimed them
			}
			if err := t.applyParked(parked); err != nil {
				return err
			}
			final, err := t.derive()
			if err != nil {
				return err
			}
			if changed, err = t.commitCustomer(parked[len(parked)-1], OutcomeApplied, before, final); err != nil {
				return err
			}
			applied = len(parked)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("resolve parked events of %s: %w", o.ref, err)
		}
		total += applied
		if changed {
			s.kick()
		}
	}
	return total, nil
}
