package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Outcome is what ApplyEvent did with an event.
type Outcome string

// Outcomes, also the values of the processed-events metric label.
const (
	// OutcomeApplied: the event was handled and its facts stored (the
	// customer's status may or may not have changed).
	OutcomeApplied Outcome = "applied"
	// OutcomeDuplicate: the event was applied before; nothing was done.
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeStale: an older snapshot than the stored one; recorded in the
	// audit trail, state unchanged.
	OutcomeStale Outcome = "stale"
	// OutcomeIgnored: a type billing-state does not use, or an event that
	// names no customer (a guest payment).
	OutcomeIgnored Outcome = "ignored"
	// OutcomeUnresolved: the event names a charge whose customer is still
	// unknown; it is parked and applied once the charge's customer is known.
	OutcomeUnresolved Outcome = "unresolved"
)

// Actor of changes that come from Stripe events.
const ActorStripe = "stripe"

// Audit actions.
const (
	ActionApplied   = "applied"
	ActionStale     = "stale"
	ActionReconcile = "reconcile"
	ActionResolved  = "applied_resolved"
)

// Result says what ApplyEvent did.
type Result struct {
	Outcome    Outcome
	CustomerID string
	// StatusChanged: a field of the customer's status a watcher sees
	// changed, and an outbox row was written.
	StatusChanged bool
	// Ambiguous: same-second snapshots could not be ordered; the customer is
	// marked for reconciliation (no Stripe API key) or was re-read from
	// Stripe.
	Ambiguous bool
	// Status is the customer's status after the event (nil when ignored or
	// duplicate).
	Status *billingv1.CustomerStatus
}

// ApplyOptions adjust one ApplyEvent call.
type ApplyOptions struct {
	// ParkUnresolved records an event whose charge's customer is unknown as
	// unresolved (and acks it) instead of returning ErrCustomerUnknown. The
	// consumer sets it once the retries for such an event are used up.
	ParkUnresolved bool
}

type kind int

const (
	kindIgnored kind = iota
	kindCustomer
	kindSubscription
	kindCheckout
	kindCharge
	kindDispute
	kindRefund
	kindInvoice
	kindInvoicePayment
	kindPaymentIntent
)

// classify dispatches on the object the event carries rather than on its
// type alone: a few real payloads carry an object the type does not suggest,
// and the object is what the fields describe.
func classify(ev *billingv1.BillingEvent) kind {
	t, obj := ev.GetType(), canonical.ObjectOf(ev)
	switch obj {
	case "customer":
		if t == "customer.created" || t == "customer.updated" || t == "customer.deleted" {
			return kindCustomer
		}
	case "subscription":
		if canonical.IsSubscriptionSnapshot(t) {
			return kindSubscription
		}
	case "checkout.session":
		return kindCheckout
	case "charge":
		return kindCharge
	case "dispute":
		return kindDispute
	case "refund":
		return kindRefund
	case "invoice":
		if ev.GetInvoiceId() != "" { // invoice.upcoming previews have no id
			return kindInvoice
		}
	case "invoice_payment":
		return kindInvoicePayment
	case "payment_intent":
		return kindPaymentIntent
	}
	return kindIgnored
}

// Handles reports whether billing-state uses events of this shape.
func Handles(ev *billingv1.BillingEvent) bool { return classify(ev) != kindIgnored }

// hint carries what was read from the Stripe API between two attempts.
type hint struct {
	charge *FetchedCharge
	sub    *FetchedSubscription
}

// needFetch aborts a transaction to read from Stripe outside of it: an HTTP
// call must not hold the customer's row lock.
type needFetch struct {
	chargeID string // resolve this charge's customer
	subID    string // re-read this subscription (same-second tie)
}

func (n *needFetch) Error() string { return "stripe fetch needed" }

// ApplyEvent applies one Stripe event in one transaction: the
// processed_events row (a duplicate is skipped), the state change, an audit
// row with the customer's status before and after, and an outbox row when
// that status changed.
//
// Errors: ErrMalformed (wrapped) for an event that can never apply;
// ErrCustomerUnknown for a dispute or refund whose charge is unknown (unless
// opts.ParkUnresolved); anything else is transient (database unavailable)
// and worth retrying.
func (s *Store) ApplyEvent(ctx context.Context, ev *billingv1.BillingEvent, opts ApplyOptions) (Result, error) {
	if ev == nil || ev.GetEventId() == "" || ev.GetType() == "" {
		return Result{}, fmt.Errorf("%w: no event id or type", ErrMalformed)
	}
	k := classify(ev)
	if k == kindIgnored {
		return Result{Outcome: OutcomeIgnored}, nil
	}
	var h hint
	// At most one fetch of each kind: a second need means Stripe's answer
	// did not settle it, and the tie rules take over.
	for attempt := 0; ; attempt++ {
		res, err := s.applyOnce(ctx, ev, k, h, opts, attempt > 1)
		var nf *needFetch
		if !errors.As(err, &nf) {
			if err == nil && res.StatusChanged {
				s.kick()
			}
			return res, err
		}
		switch {
		case nf.chargeID != "":
			c, ferr := s.fetcher.Charge(ctx, nf.chargeID)
			if ferr != nil || c.CustomerID == "" {
				s.log.WarnContext(ctx, "charge lookup in stripe failed", "event_id", ev.GetEventId(), "charge_id", nf.chargeID, "error", ferr)
				c = FetchedCharge{} // resolve as unknown on the next attempt
			}
			h.charge = &c
		case nf.subID != "":
			sub, ferr := s.fetcher.Subscription(ctx, nf.subID)
			if ferr != nil {
				// Stripe unreachable: fall back to the tie rules and the
				// reconciliation mark rather than stall the stream.
				s.log.WarnContext(ctx, "subscription re-read from stripe failed", "event_id", ev.GetEventId(), "subscription_id", nf.subID, "error", ferr)
				h.sub = &FetchedSubscription{} // empty: not usable
			} else {
				h.sub = &sub
			}
		}
	}
}

// txn is one transaction (see pipeline.go).
type txn struct {
	s   *Store
	ctx context.Context
	// tx.Owner is the index of the event being applied in a shared
	// transaction (see ApplyBatch); 0 otherwise.
	tx *pg.Tx
	// batch is what a shared transaction read up front; nil otherwise.
	batch *batchState
	// touched: the current event wrote payments, refunds or disputes, so
	// derivation must read them again.
	touched bool
	cus     customerRow
	// subs are the customer's subscriptions, kept current in memory so the
	// derivation after the change needs no second read.
	subs      []canonical.Subscription
	ambiguous bool
	// refs learned from this event (charge and payment intent ids).
	learned []string
}

func (s *Store) applyOnce(ctx context.Context, ev *billingv1.BillingEvent, k kind, h hint, opts ApplyOptions, noMoreFetch bool) (Result, error) {
	var res Result
	err := s.inTx(ctx, func(t *txn) error {
		var err error
		res, err = t.apply(ev, k, h, opts, noMoreFetch)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("apply %s: %w", ev.GetEventId(), err)
	}
	return res, nil
}

// startEvent readies the transaction for the next event of a shared
// transaction: its own context (its trace) and clean per-event state. The
// statements still queued belong to the events before it.
func (t *txn) startEvent(ctx context.Context, owner int) {
	t.ctx, t.tx.Owner = ctx, owner
	t.cus, t.subs, t.ambiguous, t.learned, t.touched = customerRow{}, nil, false, nil, false
}

// apply is one event's part of a transaction: processed_events, the state
// change, the audit row and, when the status changed, the outbox row.
func (t *txn) apply(ev *billingv1.BillingEvent, k kind, h hint, opts ApplyOptions, noMoreFetch bool) (Result, error) {
	// One round trip records the event and, when it names its customer,
	// locks the customer and reads its subscriptions.
	cusID := ev.GetCustomerId()
	fresh, err := t.begin(ev, cusID)
	if err != nil {
		return Result{}, err
	}
	if !fresh {
		return Result{Outcome: OutcomeDuplicate}, nil
	}
	if cusID == "" {
		if cusID, err = t.resolveCustomer(ev, k, h, noMoreFetch); err != nil {
			return Result{}, err
		}
		if cusID == "" {
			if k == kindDispute || k == kindRefund {
				if !opts.ParkUnresolved {
					return Result{}, fmt.Errorf("event %s charge %s: %w", ev.GetEventId(), ev.GetChargeId(), ErrCustomerUnknown)
				}
				var res Result
				err := t.park(ev, &res)
				return res, err
			}
			t.queueAs("record outcome", `UPDATE billing.processed_events SET outcome = 'ignored' WHERE event_id = $1`, ev.GetEventId())
			return Result{Outcome: OutcomeIgnored}, nil
		}
		if err := t.lockCustomer(cusID, ev.GetLivemode()); err != nil {
			return Result{}, err
		}
	}
	before := t.cus.status
	outcome, err := t.mutate(ev, k, h, noMoreFetch)
	if err != nil {
		return Result{}, err
	}
	// One round trip at most: the customer's purchase facts, when this
	// event wrote them, and the events parked for the charges it taught.
	after, parked, err := t.deriveAndClaim()
	if err != nil {
		return Result{}, err
	}
	action := ActionApplied
	if outcome == OutcomeStale {
		action = ActionStale
	}
	if err := t.audit(ev, ActorStripe, action, before, after); err != nil {
		return Result{}, err
	}
	// Events parked for a charge this event taught us: apply them now, in
	// the same transaction, each with its own audit row.
	final := after
	if len(parked) > 0 {
		if err := t.applyParked(parked); err != nil {
			return Result{}, err
		}
		if final, err = t.derive(); err != nil {
			return Result{}, err
		}
	}
	changed, err := t.commitCustomer(ev, outcome, before, final)
	if err != nil {
		return Result{}, err
	}
	if outcome != OutcomeApplied || cusID != ev.GetCustomerId() {
		t.queueAs("record outcome", `UPDATE billing.processed_events SET customer_id = $2, outcome = $3 WHERE event_id = $1`,
			ev.GetEventId(), cusID, string(outcome))
	}
	return Result{Outcome: outcome, CustomerID: cusID, StatusChanged: changed, Ambiguous: t.ambiguous, Status: final}, nil
}

// resolveCustomer finds the customer an event belongs to. Disputes and
// refunds name a charge; its customer comes from what earlier events taught
// (payment_refs), or from Stripe when an API key is configured.
func (t *txn) resolveCustomer(ev *billingv1.BillingEvent, k kind, h hint, noMoreFetch bool) (string, error) {
	if id := ev.GetCustomerId(); id != "" {
		return id, nil
	}
	var refs []string
	for _, r := range []string{ev.GetChargeId(), ev.GetPaymentIntentId()} {
		if r != "" {
			refs = append(refs, r)
		}
	}
	if k == kindInvoicePayment && ev.GetInvoiceId() != "" {
		var id string
		err := t.queryRow(`SELECT customer_id FROM billing.invoices WHERE id = $1`, []any{ev.GetInvoiceId()}, &id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return "", fmt.Errorf("look up invoice %s: %w", ev.GetInvoiceId(), err)
		}
	}
	if len(refs) == 0 {
		return "", nil
	}
	var id string
	err := t.queryRow(`SELECT customer_id FROM billing.payment_refs WHERE ref = ANY($1) LIMIT 1`, []any{refs}, &id)
	switch {
	case err == nil:
		return id, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("look up charge %s: %w", ev.GetChargeId(), err)
	}
	if k != kindDispute && k != kindRefund {
		return "", nil
	}
	if h.charge != nil {
		return h.charge.CustomerID, nil
	}
	if t.s.fetcher != nil && ev.GetChargeId() != "" && !noMoreFetch {
		return "", &needFetch{chargeID: ev.GetChargeId()}
	}
	return "", nil
}

// park records an event whose customer cannot be found yet. It is applied
// when a later event teaches its charge's customer (see resolveParked).
func (t *txn) park(ev *billingv1.BillingEvent, res *Result) error {
	ref := ev.GetChargeId()
	if ref == "" {
		ref = ev.GetPaymentIntentId()
	}
	body, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("park %s: %w", ev.GetEventId(), err)
	}
	t.queueAs("park", `INSERT INTO billing.unresolved_events (event_id, event_type, ref, event) VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING`,
		ev.GetEventId(), ev.GetType(), ref, body)
	t.queueAs("park", `UPDATE billing.processed_events SET outcome = 'unresolved' WHERE event_id = $1`, ev.GetEventId())
	t.s.log.WarnContext(t.ctx, "event parked until its charge's customer is known",
		"event_id", ev.GetEventId(), "charge_id", ref, "action", "park", "outcome", string(OutcomeUnresolved))
	res.Outcome = OutcomeUnresolved
	return nil
}

// deriveAndClaim is derive plus, when the event taught charges or payment
// intents, the claim of the events parked for them, in one round trip.
func (t *txn) deriveAndClaim() (*billingv1.CustomerStatus, []*billingv1.BillingEvent, error) {
	if len(t.learned) == 0 {
		st, err := t.derive()
		return st, nil, err
	}
	facts := t.cachedFacts()
	br, err := t.send(func(b *pgx.Batch) {
		b.Queue(`UPDATE billing.unresolved_events SET resolved_at = now()
			WHERE ref = ANY($1) AND resolved_at IS NULL RETURNING event_id, event`, t.learned)
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

// applyParked applies events parked for a charge the current event taught,
// each with its own audit row.
func (t *txn) applyParked(parked []*billingv1.BillingEvent) error {
	for _, ev := range parked {
		b, err := t.derive()
		if err != nil {
			return err
		}
		outcome, err := t.mutate(ev, classify(ev), hint{}, true)
		if err != nil {
			return err
		}
		a, err := t.derive()
		if err != nil {
			return err
		}
		if err := t.audit(ev, ActorStripe, ActionResolved, b, a); err != nil {
			return err
		}
		t.queueAs("record outcome", `UPDATE billing.processed_events SET customer_id = $2, outcome = $3 WHERE event_id = $1`,
			ev.GetEventId(), t.cus.id, string(outcome))
		t.s.log.InfoContext(t.ctx, "parked event applied", "event_id", ev.GetEventId(), "customer_id", t.cus.id, "action", ActionResolved)
	}
	return nil
}

// mutate stores the event's facts. It returns OutcomeStale when a snapshot
// lost to the stored one, OutcomeApplied otherwise.
func (t *txn) mutate(ev *billingv1.BillingEvent, k kind, h hint, noMoreFetch bool) (Outcome, error) {
	t.fillContact(ev)
	switch k {
	case kindCustomer:
		return t.applyCustomer(ev), nil
	case kindSubscription:
		return t.applySubscription(ev, h, noMoreFetch)
	case kindCheckout:
		return OutcomeApplied, t.applyCheckout(ev)
	case kindCharge:
		return OutcomeApplied, t.applyCharge(ev)
	case kindPaymentIntent:
		return OutcomeApplied, t.applyPaymentIntent(ev)
	case kindDispute:
		return OutcomeApplied, t.applyDispute(ev)
	case kindRefund:
		return OutcomeApplied, t.applyRefund(ev)
	case kindInvoice:
		return t.applyInvoice(ev)
	case kindInvoicePayment:
		return OutcomeApplied, t.learn(ev.GetChargeId(), ev.GetPaymentIntentId())
	}
	return OutcomeApplied, nil
}

// fillContact takes email and user id from any event that names them while
// the customer's own profile has none: events often arrive before
// customer.created, and Checkout sessions carry the app's user id.
func (t *txn) fillContact(ev *billingv1.BillingEvent) {
	if t.cus.email == "" && ev.GetEmail() != "" && ev.GetType() != "customer.deleted" {
		t.cus.email = ev.GetEmail()
	}
	if t.cus.userID == "" && ev.GetUserId() != "" {
		t.cus.userID = ev.GetUserId()
	}
}

// applyCustomer stores the profile from customer.created/updated, newest
// event first; customer.deleted marks the customer deleted for good. The
// status stays derived from subscriptions and purchases: Stripe cancels a
// deleted customer's subscriptions and sends their own deleted events.
func (t *txn) applyCustomer(ev *billingv1.BillingEvent) Outcome {
	created := ev.GetCreated().AsTime()
	if ev.GetCreated() == nil {
		created = time.Time{}
	}
	if ev.GetType() == "customer.deleted" {
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
	t.queueAs("store subscription "+in.ID, `INSERT INTO billing.subscriptions (id, customer_id, status, price_id, created, current_period_end, trial_end,
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
		in.ID, in.CustomerID, in.Status, in.PriceID, nt(in.Created), nt(in.CurrentPeriodEnd), nt(in.TrialEnd),
		in.CancelAtPeriodEnd, in.Deleted, in.Quantity, in.UnitAmount, in.Interval, in.IntervalCount, in.Currency, in.UserID, in.Livemode,
		in.LastEventID, in.LastEventType, nt(in.LastEventCreated), in.Previous.Status, in.Previous.CancelAtPeriodEnd, in.Previous.PriceID,
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
func (t *txn) applyCheckout(ev *billingv1.BillingEvent) error {
	if err := t.learn(ev.GetPaymentIntentId()); err != nil {
		return err
	}
	if ev.GetCheckoutMode() != "payment" {
		return nil
	}
	paid, awaiting := canonical.CheckoutPayment(ev.GetType(), ev.GetPaymentStatus())
	failed := ev.GetType() == "checkout.session.async_payment_failed"
	id := ev.GetPaymentIntentId()
	if id == "" {
		id = ev.GetCheckoutSessionId()
	}
	if id == "" {
		return fmt.Errorf("%w: checkout event %s has no session id", ErrMalformed, ev.GetEventId())
	}
	t.touched = true
	t.queueAs("store checkout "+ev.GetCheckoutSessionId(), `INSERT INTO billing.payments (id, customer_id, checkout_session_id, payment_intent_id, from_checkout,
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
		id, t.cus.id, ev.GetCheckoutSessionId(), ev.GetPaymentIntentId(), paid, awaiting, failed,
		ev.GetAmount(), ev.GetCurrency(), ev.GetUserId(), eventTime(ev))
	return nil
}

// applyCharge records a charge's facts on the payment it belongs to and
// learns the charge's customer.
func (t *txn) applyCharge(ev *billingv1.BillingEvent) error {
	if err := t.learn(ev.GetChargeId(), ev.GetPaymentIntentId()); err != nil {
		return err
	}
	return t.upsertPayment(ev.GetPaymentIntentId(), ev.GetChargeId(), ev.GetStatus() == "succeeded",
		ev.GetAmount(), ev.GetAmountRefunded(), ev.GetRefunded(), ev)
}

func (t *txn) applyPaymentIntent(ev *billingv1.BillingEvent) error {
	if err := t.learn(ev.GetChargeId(), ev.GetPaymentIntentId()); err != nil {
		return err
	}
	return t.upsertPayment(ev.GetPaymentIntentId(), ev.GetChargeId(), ev.GetStatus() == "succeeded",
		ev.GetAmount(), 0, false, ev)
}

func (t *txn) upsertPayment(pi, charge string, paid bool, amount, refunded int64, fullyRefunded bool, ev *billingv1.BillingEvent) error {
	id := pi
	if id == "" {
		id = charge
	}
	if id == "" {
		return nil
	}
	t.touched = true
	t.queueAs("store payment "+id, `INSERT INTO billing.payments (id, customer_id, charge_id, payment_intent_id, paid, amount,
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
		id, t.cus.id, charge, pi, paid, amount, refunded, fullyRefunded, ev.GetCurrency(), ev.GetUserId(), eventTime(ev))
	return nil
}

// closedDispute lists dispute statuses after which nothing changes.
func closedDispute(eventType, status string) bool {
	if eventType == "charge.dispute.closed" {
		return true
	}
	switch status {
	case "won", "lost", "warning_closed", "prevented":
		return true
	}
	return false
}

// applyDispute stores a dispute. It only moves toward closed, and a lost
// dispute stays lost, so order does not matter.
func (t *txn) applyDispute(ev *billingv1.BillingEvent) error {
	id := ev.GetDisputeId()
	if id == "" {
		id = ev.GetObjectId()
	}
	if id == "" {
		return fmt.Errorf("%w: dispute event %s has no dispute id", ErrMalformed, ev.GetEventId())
	}
	if err := t.learn(ev.GetChargeId(), ev.GetPaymentIntentId()); err != nil {
		return err
	}
	t.touched = true
	t.queueAs("store dispute "+id, `INSERT INTO billing.disputes (id, customer_id, charge_id, payment_intent_id, status, reason, amount, currency,
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
		closedDispute(ev.GetType(), ev.GetStatus()), ev.GetStatus() == "lost", eventTime(ev))
	return nil
}

// applyRefund stores one refund; a purchase's refunded amount is the larger
// of the charge's own amount_refunded and the sum of its refunds.
func (t *txn) applyRefund(ev *billingv1.BillingEvent) error {
	id := ev.GetRefundId()
	if id == "" {
		id = ev.GetObjectId()
	}
	if id == "" {
		return fmt.Errorf("%w: refund event %s has no refund id", ErrMalformed, ev.GetEventId())
	}
	if err := t.learn(ev.GetChargeId(), ev.GetPaymentIntentId()); err != nil {
		return err
	}
	t.touched = true
	t.queueAs("store refund "+id, `INSERT INTO billing.refunds (id, customer_id, charge_id, payment_intent_id, amount, status, last_event_created)
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
func (t *txn) applyInvoice(ev *billingv1.BillingEvent) (Outcome, error) {
	if err := t.learn(ev.GetChargeId(), ev.GetPaymentIntentId()); err != nil {
		return "", err
	}
	if ev.GetType() == "invoice.payment_failed" {
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
	tag, err := t.exec(`INSERT INTO billing.invoices (id, customer_id, subscription_id, status, amount_due, amount_paid, currency,
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
	if tag.RowsAffected() == 0 && ev.GetType() != "invoice.payment_failed" {
		return OutcomeStale, nil
	}
	return OutcomeApplied, nil
}

// learn remembers which customer a charge or payment intent belongs to.
func (t *txn) learn(refs ...string) error {
	var rs []string
	for _, r := range refs {
		if r != "" {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return nil
	}
	t.queueAs("remember payment refs", `INSERT INTO billing.payment_refs (ref, customer_id) SELECT unnest($1::text[]), $2 ON CONFLICT (ref) DO NOTHING`,
		rs, t.cus.id)
	t.learned = append(t.learned, rs...)
	return nil
}

// commitCustomer writes the customer row and, when a watched field changed,
// the outbox row. It reports whether the status changed.
func (t *txn) commitCustomer(ev *billingv1.BillingEvent, outcome Outcome, before, after *billingv1.CustomerStatus) (bool, error) {
	changed := !sameStatus(before, after)
	if outcome != OutcomeStale || changed {
		after.LastEventId = ev.GetEventId()
		if changed || before == nil {
			after.UpdatedAt = tsNow(t.s.now())
		} else {
			after.UpdatedAt = before.GetUpdatedAt()
		}
	} else if before != nil {
		after.LastEventId = before.GetLastEventId()
		after.UpdatedAt = before.GetUpdatedAt()
	}
	if err := t.writeCustomer(after); err != nil {
		return false, err
	}
	if changed {
		if err := t.writeOutbox(after); err != nil {
			return false, err
		}
		t.s.log.InfoContext(t.ctx, "customer status changed", "event_id", ev.GetEventId(), "customer_id", t.cus.id,
			"action", "status_change", "status", canonical.StatusName(after.GetStatus()), "entitled", after.GetEntitled(),
			"outcome", string(outcome))
	}
	return changed, nil
}

// sameStatus compares what watchers see, ignoring bookkeeping.
func sameStatus(a, b *billingv1.CustomerStatus) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ca, cb := proto.Clone(a).(*billingv1.CustomerStatus), proto.Clone(b).(*billingv1.CustomerStatus)
	ca.LastEventId, cb.LastEventId = "", ""
	ca.UpdatedAt, cb.UpdatedAt = nil, nil
	return proto.Equal(ca, cb)
}

func eventTime(ev *billingv1.BillingEvent) *time.Time {
	if ev.GetCreated() == nil {
		return nil
	}
	v := ev.GetCreated().AsTime()
	return &v
}

func nt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
