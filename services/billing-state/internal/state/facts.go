package state

import (
	"fmt"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// storeFacts stores what the event says, as pkg/canonical reads it: one
// writer per kind of event. It returns OutcomeStale when a snapshot lost to
// the stored one, OutcomeApplied otherwise.
func (t *txn) storeFacts(ev *billingv1.BillingEvent, facts canonical.Facts, h hint, noMoreFetch bool) (Outcome, error) {
	t.fillContact(ev, facts)
	switch facts.Kind {
	case canonical.KindCustomer:
		return t.applyCustomer(ev, facts), nil
	case canonical.KindSubscription:
		return t.applySubscription(ev, h, noMoreFetch)
	case canonical.KindCheckout:
		return OutcomeApplied, t.applyCheckout(ev, facts)
	case canonical.KindCharge:
		t.applyPayment(ev, facts, ev.GetAmountRefunded(), ev.GetRefunded())
		return OutcomeApplied, nil
	case canonical.KindPaymentIntent:
		t.applyPayment(ev, facts, 0, false)
		return OutcomeApplied, nil
	case canonical.KindInvoicePayment:
		// Only who paid: the invoice's own events say what was paid.
		t.rememberPaymentRefs(facts.Link)
		return OutcomeApplied, nil
	case canonical.KindDispute:
		return OutcomeApplied, t.applyDispute(ev, facts)
	case canonical.KindRefund:
		return OutcomeApplied, t.applyRefund(ev, facts)
	case canonical.KindInvoice:
		return t.applyInvoice(ev, facts)
	}
	// Not reached: ApplyEvent and ApplyBatch let no ignored kind in.
	return OutcomeIgnored, nil
}

// fillContact takes email and user id from any event that names them while
// the customer's own profile has none: events often arrive before
// customer.created, and Checkout sessions carry the app's user id. Any
// event of a smoke test marks its customer as one.
func (t *txn) fillContact(ev *billingv1.BillingEvent, facts canonical.Facts) {
	if t.cus.email == "" && ev.GetEmail() != "" && !facts.CustomerDeleted {
		t.cus.email = ev.GetEmail()
	}
	if t.cus.userID == "" && ev.GetUserId() != "" {
		t.cus.userID = ev.GetUserId()
	}
	if ev.GetSmokeRun() != "" {
		t.cus.smokeRun = ev.GetSmokeRun()
	}
}

// applyCustomer stores the profile from customer.created/updated, newest
// event first; customer.deleted marks the customer deleted for good. The
// status stays derived from subscriptions and purchases: Stripe cancels a
// deleted customer's subscriptions and sends their own deleted events.
func (t *txn) applyCustomer(ev *billingv1.BillingEvent, facts canonical.Facts) Outcome {
	created := ev.GetCreated().AsTime()
	if ev.GetCreated() == nil {
		created = time.Time{}
	}
	if facts.CustomerDeleted {
		t.cus.deleted = true
		t.cus.placeholder = false
		return OutcomeApplied
	}
	if t.cus.deleted {
		return OutcomeStale
	}
	if p := t.cus.profileCreated; p != nil {
		switch {
		case created.Unix() < p.Unix():
			return OutcomeStale
		case created.Unix() == p.Unix():
			// customer.created comes first in its second; between two
			// updates the greater event id wins, so every order agrees.
			inCreated, storedCreated := ev.GetType() == "customer.created", t.cus.profileEventType == "customer.created"
			switch {
			case inCreated && !storedCreated:
				return OutcomeStale
			case storedCreated && !inCreated:
			case ev.GetEventId() <= t.cus.profileEventID:
				return OutcomeStale
			}
		}
	}
	t.cus.profileCreated = &created
	t.cus.profileEventID = ev.GetEventId()
	t.cus.profileEventType = ev.GetType()
	t.cus.placeholder = false
	t.cus.livemode = ev.GetLivemode()
	if ev.GetEmail() != "" {
		t.cus.email = ev.GetEmail()
	}
	if ev.GetCustomerName() != "" {
		t.cus.name = ev.GetCustomerName()
	}
	if ev.GetUserId() != "" {
		t.cus.userID = ev.GetUserId()
	}
	return OutcomeApplied
}

func (t *txn) applySubscription(ev *billingv1.BillingEvent, h hint, noMoreFetch bool) (Outcome, error) {
	in, err := canonical.SubscriptionFromEvent(ev)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	in.CustomerID = t.cus.id
	idx := -1
	var stored canonical.Snapshot
	for i := range t.subs {
		if t.subs[i].ID == in.ID {
			idx = i
			stored = t.subs[i].Snapshot()
			break
		}
	}
	d := canonical.DecideSnapshot(stored, in.Snapshot())
	if d.Ambiguous() {
		switch {
		case h.sub != nil && h.sub.Status != "":
			// Stripe's current state settles the tie.
			in.Status = h.sub.Status
			in.CancelAtPeriodEnd = h.sub.CancelAtPeriodEnd
			if h.sub.PriceID != "" {
				in.PriceID = h.sub.PriceID
			}
			if !h.sub.CurrentPeriodEnd.IsZero() {
				in.CurrentPeriodEnd = h.sub.CurrentPeriodEnd
			}
			in.TrialEnd = h.sub.TrialEnd
			in.Previous = canonical.Previous{}
			d = canonical.Decision{Outcome: canonical.Apply, Reason: "re-read from stripe"}
			t.s.log.InfoContext(t.ctx, "same-second tie settled by stripe", "event_id", ev.GetEventId(), "subscription_id", in.ID, "customer_id", t.cus.id, "action", "refetch")
		case t.s.fetcher != nil && h.sub == nil && !noMoreFetch:
			return "", &needFetch{subID: in.ID}
		default:
			t.ambiguous = true
			t.cus.needsReconciliation = true
			t.s.log.WarnContext(t.ctx, "same-second subscription events could not be ordered; customer marked for reconciliation",
				"event_id", ev.GetEventId(), "subscription_id", in.ID, "customer_id", t.cus.id, "action", d.Outcome.String())
		}
	}
	if !d.Applies() {
		return OutcomeStale, nil
	}
	t.tx.Queue("store subscription "+in.ID, `INSERT INTO billing.subscriptions (id, customer_id, status, price_id, created, current_period_end, trial_end,
			cancel_at_period_end, deleted, quantity, unit_amount, interval, interval_count, currency, user_id, livemode,
			last_event_id, last_event_type, last_event_created, prev_status, prev_cancel_at_period_end, prev_price_id)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)
		ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, price_id = EXCLUDED.price_id,
			created = COALESCE(EXCLUDED.created, subscriptions.created), current_period_end = EXCLUDED.current_period_end,
			trial_end = EXCLUDED.trial_end, cancel_at_period_end = EXCLUDED.cancel_at_period_end,
			deleted = subscriptions.deleted OR EXCLUDED.deleted, quantity = EXCLUDED.quantity, unit_amount = EXCLUDED.unit_amount,
			interval = EXCLUDED.interval, interval_count = EXCLUDED.interval_count, currency = EXCLUDED.currency,
			user_id = COALESCE(NULLIF(EXCLUDED.user_id, ''), subscriptions.user_id), livemode = EXCLUDED.livemode,
			last_event_id = EXCLUDED.last_event_id, last_event_type = EXCLUDED.last_event_type,
			last_event_created = EXCLUDED.last_event_created, prev_status = EXCLUDED.prev_status,
			prev_cancel_at_period_end = EXCLUDED.prev_cancel_at_period_end, prev_price_id = EXCLUDED.prev_price_id, updated_at = now()`,
		in.ID, in.CustomerID, in.Status, in.PriceID, nullableTime(in.Created), nullableTime(in.CurrentPeriodEnd), nullableTime(in.TrialEnd),
		in.CancelAtPeriodEnd, in.Deleted, in.Quantity, in.UnitAmount, in.Interval, in.IntervalCount, in.Currency, in.UserID, in.Livemode,
		in.LastEventID, in.LastEventType, nullableTime(in.LastEventCreated), in.Previous.Status, in.Previous.CancelAtPeriodEnd, in.Previous.PriceID,
	)
	if idx >= 0 {
		if in.Created.IsZero() {
			in.Created = t.subs[idx].Created
		}
		if in.UserID == "" {
			in.UserID = t.subs[idx].UserID
		}
		t.subs[idx] = in
	} else {
		t.subs = append(t.subs, in)
	}
	return OutcomeApplied, nil
}

// applyCheckout records a one-time purchase (mode=payment). Subscription
// checkouts only teach the customer's contact details and payment refs:
// the subscription's own events carry its status.
func (t *txn) applyCheckout(ev *billingv1.BillingEvent, facts canonical.Facts) error {
	t.rememberPaymentRefs(facts.Link)
	p := facts.Payment
	if !p.FromCheckout {
		return nil
	}
	if p.Key == "" {
		return fmt.Errorf("%w: checkout event %s has no session id", ErrMalformed, ev.GetEventId())
	}
	t.purchaseFactsWritten = true
	t.tx.Queue("store checkout "+ev.GetCheckoutSessionId(), `INSERT INTO billing.payments (id, customer_id, checkout_session_id, payment_intent_id, from_checkout,
			paid, awaiting_async, async_failed, amount, currency, user_id, created)
		VALUES ($1,$2,$3,$4,true,$5,$6,$7,$8,$9,$10,$11)
		ON CONFLICT (id) DO UPDATE SET checkout_session_id = EXCLUDED.checkout_session_id,
			payment_intent_id = COALESCE(NULLIF(EXCLUDED.payment_intent_id, ''), payments.payment_intent_id),
			from_checkout = true, paid = payments.paid OR EXCLUDED.paid,
			awaiting_async = payments.awaiting_async OR EXCLUDED.awaiting_async,
			async_failed = payments.async_failed OR EXCLUDED.async_failed,
			amount = GREATEST(payments.amount, EXCLUDED.amount),
			currency = COALESCE(NULLIF(EXCLUDED.currency, ''), payments.currency),
			user_id = COALESCE(NULLIF(EXCLUDED.user_id, ''), payments.user_id),
			created = LEAST(payments.created, EXCLUDED.created), updated_at = now()`,
		p.Key, t.cus.id, ev.GetCheckoutSessionId(), ev.GetPaymentIntentId(), p.Paid, p.AwaitingAsync, p.AsyncFailed,
		ev.GetAmount(), ev.GetCurrency(), ev.GetUserId(), eventTime(ev))
	return nil
}

// applyPayment records a charge's or payment intent's facts on the payment
// it belongs to and remembers the payment's customer.
func (t *txn) applyPayment(ev *billingv1.BillingEvent, facts canonical.Facts, amountRefunded int64, fullyRefunded bool) {
	t.rememberPaymentRefs(facts.Link)
	p, link := facts.Payment, facts.Link
	if p.Key == "" {
		return
	}
	t.purchaseFactsWritten = true
	t.tx.Queue("store payment "+p.Key, `INSERT INTO billing.payments (id, customer_id, charge_id, payment_intent_id, paid, amount,
			amount_refunded, refunded, currency, user_id, created)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
		ON CONFLICT (id) DO UPDATE SET charge_id = COALESCE(NULLIF(EXCLUDED.charge_id, ''), payments.charge_id),
			payment_intent_id = COALESCE(NULLIF(EXCLUDED.payment_intent_id, ''), payments.payment_intent_id),
			paid = payments.paid OR EXCLUDED.paid, amount = GREATEST(payments.amount, EXCLUDED.amount),
			amount_refunded = GREATEST(payments.amount_refunded, EXCLUDED.amount_refunded),
			refunded = payments.refunded OR EXCLUDED.refunded,
			currency = COALESCE(NULLIF(payments.currency, ''), EXCLUDED.currency),
			user_id = COALESCE(NULLIF(payments.user_id, ''), EXCLUDED.user_id),
			created = LEAST(payments.created, EXCLUDED.created), updated_at = now()`,
		p.Key, t.cus.id, link.ChargeID, link.PaymentIntentID, p.Paid, ev.GetAmount(), amountRefunded, fullyRefunded,
		ev.GetCurrency(), ev.GetUserId(), eventTime(ev))
}

// applyDispute stores a dispute. It only moves toward closed, and a lost
// dispute stays lost, so order does not matter.
func (t *txn) applyDispute(ev *billingv1.BillingEvent, facts canonical.Facts) error {
	id, err := objectID(ev, ev.GetDisputeId(), "dispute")
	if err != nil {
		return err
	}
	t.rememberPaymentRefs(facts.Link)
	t.purchaseFactsWritten = true
	t.tx.Queue("store dispute "+id, `INSERT INTO billing.disputes (id, customer_id, charge_id, payment_intent_id, status, reason, amount, currency,
			closed, lost, last_event_created)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
		ON CONFLICT (id) DO UPDATE SET
			status = CASE
				WHEN disputes.closed AND NOT EXCLUDED.closed THEN disputes.status
				WHEN EXCLUDED.closed AND NOT disputes.closed THEN EXCLUDED.status
				WHEN disputes.last_event_created IS NULL OR EXCLUDED.last_event_created >= disputes.last_event_created THEN EXCLUDED.status
				ELSE disputes.status END,
			closed = disputes.closed OR EXCLUDED.closed, lost = disputes.lost OR EXCLUDED.lost,
			charge_id = COALESCE(NULLIF(EXCLUDED.charge_id, ''), disputes.charge_id),
			payment_intent_id = COALESCE(NULLIF(EXCLUDED.payment_intent_id, ''), disputes.payment_intent_id),
			reason = COALESCE(NULLIF(EXCLUDED.reason, ''), disputes.reason), amount = GREATEST(disputes.amount, EXCLUDED.amount),
			last_event_created = GREATEST(disputes.last_event_created, EXCLUDED.last_event_created), updated_at = now()`,
		id, t.cus.id, ev.GetChargeId(), ev.GetPaymentIntentId(), ev.GetStatus(), ev.GetDisputeReason(), ev.GetAmount(), ev.GetCurrency(),
		facts.Dispute.Closed, facts.Dispute.Lost, eventTime(ev))
	return nil
}

// applyRefund stores one refund; a purchase's refunded amount is the larger
// of the charge's own amount_refunded and the sum of its refunds.
func (t *txn) applyRefund(ev *billingv1.BillingEvent, facts canonical.Facts) error {
	id, err := objectID(ev, ev.GetRefundId(), "refund")
	if err != nil {
		return err
	}
	t.rememberPaymentRefs(facts.Link)
	t.purchaseFactsWritten = true
	t.tx.Queue("store refund "+id, `INSERT INTO billing.refunds (id, customer_id, charge_id, payment_intent_id, amount, status, last_event_created)
		VALUES ($1,$2,$3,$4,$5,$6,$7)
		ON CONFLICT (id) DO UPDATE SET
			status = CASE WHEN refunds.last_event_created IS NULL OR EXCLUDED.last_event_created >= refunds.last_event_created
				THEN EXCLUDED.status ELSE refunds.status END,
			amount = GREATEST(refunds.amount, EXCLUDED.amount),
			charge_id = COALESCE(NULLIF(EXCLUDED.charge_id, ''), refunds.charge_id),
			payment_intent_id = COALESCE(NULLIF(EXCLUDED.payment_intent_id, ''), refunds.payment_intent_id),
			last_event_created = GREATEST(refunds.last_event_created, EXCLUDED.last_event_created), updated_at = now()`,
		id, t.cus.id, ev.GetChargeId(), ev.GetPaymentIntentId(), ev.GetAmount(), ev.GetStatus(), eventTime(ev))
	return nil
}

// applyInvoice keeps each invoice's latest state (newer event wins; in one
// second the more final status wins) and records payment failures.
func (t *txn) applyInvoice(ev *billingv1.BillingEvent, facts canonical.Facts) (Outcome, error) {
	t.rememberPaymentRefs(facts.Link)
	if facts.PaymentFailed {
		at := eventTime(ev)
		if at != nil && (t.cus.lastPaymentFailedAt == nil || at.After(*t.cus.lastPaymentFailedAt)) {
			t.cus.lastPaymentFailedAt = at
		}
	}
	var npa *time.Time
	if ev.GetNextPaymentAttempt() != nil {
		v := ev.GetNextPaymentAttempt().AsTime()
		npa = &v
	}
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO billing.invoices (id, customer_id, subscription_id, status, amount_due, amount_paid, currency,
			attempt_count, next_payment_attempt, charge_id, payment_intent_id, last_event_id, last_event_created)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
		ON CONFLICT (id) DO UPDATE SET subscription_id = COALESCE(NULLIF(EXCLUDED.subscription_id, ''), invoices.subscription_id),
			status = EXCLUDED.status, amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid, currency = EXCLUDED.currency,
			attempt_count = EXCLUDED.attempt_count, next_payment_attempt = EXCLUDED.next_payment_attempt,
			charge_id = COALESCE(NULLIF(EXCLUDED.charge_id, ''), invoices.charge_id),
			payment_intent_id = COALESCE(NULLIF(EXCLUDED.payment_intent_id, ''), invoices.payment_intent_id),
			last_event_id = EXCLUDED.last_event_id, last_event_created = EXCLUDED.last_event_created, updated_at = now()
		WHERE invoices.last_event_created IS NULL OR EXCLUDED.last_event_created > invoices.last_event_created
			OR (EXCLUDED.last_event_created = invoices.last_event_created
				AND billing.invoice_status_rank(EXCLUDED.status) > billing.invoice_status_rank(invoices.status))`,
		ev.GetInvoiceId(), t.cus.id, ev.GetSubscriptionId(), ev.GetStatus(), ev.GetAmountDue(), ev.GetAmountPaid(), ev.GetCurrency(),
		ev.GetAttemptCount(), npa, ev.GetChargeId(), ev.GetPaymentIntentId(), ev.GetEventId(), eventTime(ev))
	if err != nil {
		return "", fmt.Errorf("store invoice %s: %w", ev.GetInvoiceId(), err)
	}
	if tag.RowsAffected() == 0 && !facts.PaymentFailed {
		return OutcomeStale, nil
	}
	return OutcomeApplied, nil
}

// objectID is the id of the object the event carries: id as normalised,
// else data.object.id. An event without one can never be stored.
func objectID(ev *billingv1.BillingEvent, id, object string) (string, error) {
	if id == "" {
		id = ev.GetObjectId()
	}
	if id == "" {
		return "", fmt.Errorf("%w: %s event %s has no %s id", ErrMalformed, object, ev.GetEventId(), object)
	}
	return id, nil
}

// rememberPaymentRefs records which customer a charge or payment intent
// belongs to (billing.payment_refs): disputes and refunds name only the
// charge, and find their customer through it.
func (t *txn) rememberPaymentRefs(link canonical.ChargeLink) {
	refs := link.Refs()
	if len(refs) == 0 {
		return
	}
	t.tx.Queue("remember payment refs", `INSERT INTO billing.payment_refs (ref, customer_id) SELECT unnest($1::text[]), $2 ON CONFLICT (ref) DO NOTHING`,
		refs, t.cus.id)
	t.rememberedRefs = append(t.rememberedRefs, refs...)
}

// eventTime is when Stripe created the event; nil when it does not say.
func eventTime(ev *billingv1.BillingEvent) *time.Time {
	if ev.GetCreated() == nil {
		return nil
	}
	v := ev.GetCreated().AsTime()
	return &v
}

// nullableTime is t, or NULL for the zero time.
func nullableTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
