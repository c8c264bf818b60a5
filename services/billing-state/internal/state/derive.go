package state

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// derive computes the customer's CustomerStatus from the stored facts
// through pkg/canonical. LastEventId and UpdatedAt are left to the caller.
// In a shared transaction the purchase facts read before are reused while
// no event has written payments, refunds or disputes of this customer.
func (t *txn) derive() (*billingv1.CustomerStatus, error) {
	facts := t.cachedFacts()
	if facts == nil {
		br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) { queuePurchaseFacts(b, []string{t.cus.id}) })
		if err != nil {
			return nil, err
		}
		defer br.Close()
		if facts, err = t.readFacts(br); err != nil {
			return nil, err
		}
		if err := br.Close(); err != nil {
			return nil, fmt.Errorf("derive %s: %w", t.cus.id, err)
		}
	}
	return buildStatus(t.cus, t.subs, facts.purchases, facts.disputeOpen, t.s.policy), nil
}

// cachedFacts returns the customer's purchase facts when a shared
// transaction holds them and the current event has not written them since;
// nil when they must be read.
func (t *txn) cachedFacts() *purchaseFacts {
	if t.batch == nil || t.purchaseFactsWritten {
		return nil
	}
	if bc := t.batch.customers[t.cus.id]; bc != nil {
		return bc.facts
	}
	return nil
}

// readFacts reads queuePurchaseFacts' answer for the current customer and
// keeps it for the batch.
func (t *txn) readFacts(br pgx.BatchResults) (*purchaseFacts, error) {
	all := map[string]*purchaseFacts{}
	if err := readPurchaseFacts(br, all); err != nil {
		return nil, fmt.Errorf("derive %s: %w", t.cus.id, err)
	}
	f := all[t.cus.id]
	if f == nil {
		f = &purchaseFacts{}
	}
	if t.batch != nil {
		if bc := t.batch.customers[t.cus.id]; bc != nil {
			bc.facts = f
		}
	}
	t.purchaseFactsWritten = false
	return f, nil
}

// deriveAndClaim is derive plus, when the event taught charges or payment
// intents (rememberPaymentRefs), the claim of the events parked for them,
// in one round trip.
func (t *txn) deriveAndClaim() (*billingv1.CustomerStatus, []*billingv1.BillingEvent, error) {
	if len(t.rememberedRefs) == 0 {
		st, err := t.derive()
		return st, nil, err
	}
	facts := t.cachedFacts()
	br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) {
		b.Queue(`UPDATE billing.unresolved_events SET resolved_at = now()
			WHERE ref = ANY($1) AND resolved_at IS NULL RETURNING event_id, event`, t.rememberedRefs)
		if facts == nil {
			queuePurchaseFacts(b, []string{t.cus.id})
		}
	})
	if err != nil {
		return nil, nil, err
	}
	defer br.Close()
	parked, err := readParked(br)
	if err != nil {
		return nil, nil, err
	}
	if facts == nil {
		if facts, err = t.readFacts(br); err != nil {
			return nil, nil, err
		}
	}
	if err := br.Close(); err != nil {
		return nil, nil, fmt.Errorf("resolve parked events: %w", err)
	}
	return buildStatus(t.cus, t.subs, facts.purchases, facts.disputeOpen, t.s.policy), parked, nil
}

// readParked reads the events deriveAndClaim claimed.
func readParked(br pgx.BatchResults) ([]*billingv1.BillingEvent, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("resolve parked events: %w", err)
	}
	defer rows.Close()
	var parked []*billingv1.BillingEvent
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return nil, fmt.Errorf("resolve parked events: %w", err)
		}
		ev := &billingv1.BillingEvent{}
		if err := proto.Unmarshal(body, ev); err != nil {
			return nil, fmt.Errorf("resolve parked event %s: %w", id, err)
		}
		parked = append(parked, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resolve parked events: %w", err)
	}
	return parked, nil
}

// purchasesSQL reads the one-time purchases of the customers in $1, with
// their refunded amounts and lost disputes; openDisputesSQL names those
// with a dispute still open.
const (
	purchasesSQL = `SELECT p.customer_id, p.id, p.paid, p.awaiting_async AND NOT p.async_failed, p.amount,
			GREATEST(p.amount_refunded, COALESCE((SELECT sum(r.amount) FROM billing.refunds r
				WHERE r.customer_id = p.customer_id AND r.status IN ('succeeded', 'pending')
				AND ((p.charge_id <> '' AND r.charge_id = p.charge_id) OR (p.payment_intent_id <> '' AND r.payment_intent_id = p.payment_intent_id))), 0))::bigint,
			p.refunded,
			EXISTS (SELECT 1 FROM billing.disputes d WHERE d.customer_id = p.customer_id AND d.lost
				AND ((p.charge_id <> '' AND d.charge_id = p.charge_id) OR (p.payment_intent_id <> '' AND d.payment_intent_id = p.payment_intent_id))),
			p.currency, p.created
		FROM billing.payments p WHERE p.customer_id = ANY($1) AND p.from_checkout`
	openDisputesSQL = `SELECT DISTINCT customer_id FROM billing.disputes WHERE customer_id = ANY($1) AND NOT closed`
)

// purchaseFacts is what derivation needs beyond the subscriptions.
type purchaseFacts struct {
	purchases   []canonical.Purchase
	disputeOpen bool
}

// queuePurchaseFacts asks for the purchase facts of customers.
func queuePurchaseFacts(b *pgx.Batch, customers []string) {
	b.Queue(purchasesSQL, customers)
	b.Queue(openDisputesSQL, customers)
}

// readPurchaseFacts reads queuePurchaseFacts' answers, by customer.
func readPurchaseFacts(br pgx.BatchResults, into map[string]*purchaseFacts) error {
	fact := func(id string) *purchaseFacts {
		f := into[id]
		if f == nil {
			f = &purchaseFacts{}
			into[id] = f
		}
		return f
	}
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("load purchases: %w", err)
	}
	for rows.Next() {
		var id string
		var p canonical.Purchase
		var created *time.Time
		if err := rows.Scan(&id, &p.ID, &p.Paid, &p.AwaitingAsync, &p.Amount, &p.AmountRefunded, &p.Refunded, &p.DisputeLost, &p.Currency, &created); err != nil {
			rows.Close()
			return fmt.Errorf("load purchases: %w", err)
		}
		p.Created = timeOrZero(created)
		f := fact(id)
		f.purchases = append(f.purchases, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load purchases: %w", err)
	}
	disputed, err := collectIDs(br)
	if err != nil {
		return fmt.Errorf("load disputes: %w", err)
	}
	for _, id := range disputed {
		fact(id).disputeOpen = true
	}
	return nil
}

func buildStatus(c customerRow, subs []canonical.Subscription, purchases []canonical.Purchase, disputeOpen bool, p canonical.Policy) *billingv1.CustomerStatus {
	d := canonical.Derive(subs, purchases, p)
	st := &billingv1.CustomerStatus{
		CustomerId:          c.id,
		Status:              d.Status,
		Entitled:            d.Entitled,
		Email:               c.email,
		UserId:              c.userID,
		DisputeOpen:         disputeOpen,
		AmountRefunded:      d.AmountRefunded,
		Mrr:                 d.MRR,
		Currency:            d.Currency,
		Deleted:             c.deleted,
		NeedsReconciliation: c.needsReconciliation,
		Livemode:            c.livemode,
		SmokeRun:            c.smokeRun,
	}
	if c.lastPaymentFailedAt != nil {
		st.LastPaymentFailedAt = timestamppb.New(*c.lastPaymentFailedAt)
	}
	if s := d.Primary; s != nil {
		st.Plan = s.PriceID
		st.SubscriptionId = s.ID
		st.CancelAtPeriodEnd = s.CancelAtPeriodEnd
		st.CurrentPeriodEnd = timestampOrNil(s.CurrentPeriodEnd)
		st.TrialEnd = timestampOrNil(s.TrialEnd)
	}
	return st
}

func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
