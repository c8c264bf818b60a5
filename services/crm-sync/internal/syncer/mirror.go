package syncer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// created is when Stripe created the event, in UTC; zero when it does not
// say.
func created(ev *billingv1.BillingEvent) time.Time {
	if ev.GetCreated() == nil {
		return time.Time{}
	}
	return ev.GetCreated().AsTime().UTC()
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// ensureCustomer creates the customer's row (a placeholder when the
// customer.created event has not arrived yet) and moves its newest-event
// watermark forward; an older event leaves it alone. Any event of a smoke
// test marks the customer as one for good.
func ensureCustomer(tx *pg.Tx, customerID string, ev *billingv1.BillingEvent) {
	ensureCustomers(tx, []string{customerID}, [][]*billingv1.BillingEvent{{ev}})
}

// ensureCustomers is ensureCustomer for the events of several customers
// (evs[i] are customers[i]'s, in the order they apply), in one statement:
// each customer's events fold into the row that applying them one by one
// would leave (livemode and a smoke mark once set stay set; the watermark
// moves to an event newer than it, or to any event while it has no time).
func ensureCustomers(tx *pg.Tx, customers []string, evs [][]*billingv1.BillingEvent) {
	if len(customers) == 0 {
		return
	}
	live := make([]bool, len(customers))
	lastIDs, smoke := make([]string, len(customers)), make([]string, len(customers))
	lastAt := make([]*time.Time, len(customers))
	for i := range customers {
		var at time.Time
		for n, ev := range evs[i] {
			live[i] = live[i] || ev.GetLivemode()
			smoke[i] = cmp.Or(ev.GetSmokeRun(), smoke[i])
			c := created(ev)
			if n == 0 || at.IsZero() || c.After(at) || (c.Equal(at) && ev.GetEventId() > lastIDs[i]) {
				at, lastIDs[i] = c, ev.GetEventId()
			}
		}
		if !at.IsZero() {
			lastAt[i] = &at
		}
	}
	tx.Queue("upsert customers "+customers[0], `
		INSERT INTO crm.customers (customer_id, livemode, last_event_id, last_event_created, smoke_run)
		SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::timestamptz[], $5::text[]) ORDER BY 1
		ON CONFLICT (customer_id) DO UPDATE SET
			livemode = crm.customers.livemode OR EXCLUDED.livemode,
			smoke_run = CASE WHEN EXCLUDED.smoke_run <> '' THEN EXCLUDED.smoke_run ELSE crm.customers.smoke_run END,
			last_event_id = CASE WHEN crm.customers.last_event_created IS NULL
				OR EXCLUDED.last_event_created > crm.customers.last_event_created
				OR (EXCLUDED.last_event_created = crm.customers.last_event_created AND EXCLUDED.last_event_id > crm.customers.last_event_id)
				THEN EXCLUDED.last_event_id ELSE crm.customers.last_event_id END,
			last_event_created = GREATEST(crm.customers.last_event_created, EXCLUDED.last_event_created),
			updated_at = now()`,
		customers, live, lastIDs, lastAt, smoke)
}

// setField applies one profile field under its watermark. customer.*
// events are authoritative (they carry the customer object itself); other
// objects only suggest a value and never beat an authoritative one. An
// empty value says nothing: a CRM contact keeps the email it has rather
// than lose it to a customer object that was saved without one.
func setField(tx *pg.Tx, customerID, field, value string, authoritative bool, ev *billingv1.BillingEvent) {
	if value == "" {
		return
	}
	authCol := field + "_authoritative"
	if field == "name" {
		// Only customer objects carry a name worth keeping.
		if !authoritative {
			return
		}
		authCol = "true"
	}
	q := fmt.Sprintf(`
		UPDATE crm.customers SET %[1]s = $2, %[1]s_created = $3, %[1]s_event_id = $4 %[3]s
		WHERE customer_id = $1 AND (
			%[1]s_created IS NULL
			OR ($5 AND NOT %[2]s)
			OR ($5 = %[2]s AND ($3 > %[1]s_created OR ($3 = %[1]s_created AND $4 > %[1]s_event_id))))`,
		field, authCol, map[bool]string{true: "", false: ", " + authCol + " = $5"}[field == "name"])
	tx.Queue("set "+field+" of "+customerID, q, customerID, value, created(ev), ev.GetEventId(), authoritative)
}

func applyProfile(tx *pg.Tx, customerID string, ev *billingv1.BillingEvent, authoritative bool) {
	setField(tx, customerID, "email", strings.TrimSpace(ev.GetEmail()), authoritative, ev)
	setField(tx, customerID, "name", strings.TrimSpace(ev.GetCustomerName()), authoritative, ev)
	setField(tx, customerID, "user_id", ev.GetUserId(), authoritative, ev)
}

// applySubscription stores the snapshot when canonical.DecideSnapshot says
// it is newer than the stored one. The stored one comes from snaps, read
// for the whole batch, or is read here when snaps does not hold it. With
// snaps, the write waits in it for storeSubscriptions, so that the batch
// writes each subscription once, in one statement.
func applySubscription(ctx context.Context, tx *pg.Tx, ev *billingv1.BillingEvent, snaps *snapshots) (canonical.Decision, error) {
	in, err := canonical.SubscriptionFromEvent(ev)
	if err != nil {
		// raw_json is the verified Stripe body; if it does not parse, no
		// retry will make it.
		return canonical.Decision{}, bus.Permanent(err)
	}
	var stored canonical.Subscription
	raw, read := snaps.get(in.ID)
	if !read {
		err = tx.QueryRow(ctx, `SELECT snapshot FROM crm.subscriptions WHERE subscription_id = $1 FOR UPDATE`, in.ID).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			raw, err = nil, nil
		}
		if err != nil {
			return canonical.Decision{}, fmt.Errorf("load subscription %s: %w", in.ID, err)
		}
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &stored); err != nil {
			return canonical.Decision{}, fmt.Errorf("decode subscription %s: %w", in.ID, err)
		}
	}
	dec := canonical.DecideSnapshot(stored.Snapshot(), in.Snapshot())
	if !dec.Applies() {
		return dec, nil
	}
	if in.Created.IsZero() {
		in.Created = stored.Created
	}
	if in.CustomerID == "" {
		in.CustomerID = stored.CustomerID
	}
	b, err := json.Marshal(in)
	if err != nil {
		return dec, fmt.Errorf("encode subscription %s: %w", in.ID, err)
	}
	if snaps == nil {
		storeSubscriptions(tx, []string{in.ID}, []string{in.CustomerID}, [][]byte{b})
		return dec, nil
	}
	snaps.put(in.ID, in.CustomerID, b)
	return dec, nil
}

// storeSubscriptions writes snapshots, one row per subscription id, in one
// statement.
func storeSubscriptions(tx *pg.Tx, ids, customers []string, snaps [][]byte) {
	if len(ids) == 0 {
		return
	}
	tx.Queue("store subscriptions "+ids[0], `
		INSERT INTO crm.subscriptions (subscription_id, customer_id, snapshot)
		SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) ORDER BY 1
		ON CONFLICT (subscription_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, snapshot = EXCLUDED.snapshot, updated_at = now()`,
		ids, customers, snaps)
}

// purchaseFacts is one event's contribution to a purchase. Every fact only
// moves one way, so merging in any order gives the same row.
type purchaseFacts struct {
	key, customerID, checkoutID, paymentIntentID, chargeID string
	fromCheckout                                           bool
	paid, awaitingAsync, asyncFailed, refunded             bool
	amount, amountRefunded                                 int64
	currency                                               string
	created                                                time.Time
}

func mergePurchase(tx *pg.Tx, f purchaseFacts) {
	if f.key == "" {
		return
	}
	if f.customerID != "" {
		lockPayment(tx, f.chargeID, f.paymentIntentID)
	}
	tx.Queue("merge purchase "+f.key, `
		INSERT INTO crm.purchases (purchase_key, customer_id, checkout_session_id, payment_intent_id, charge_id,
			from_checkout, paid, awaiting_async, async_failed,
			amount, amount_refunded, refunded, currency, created)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
		ON CONFLICT (purchase_key) DO UPDATE SET
			customer_id = CASE WHEN crm.purchases.customer_id = '' THEN EXCLUDED.customer_id ELSE crm.purchases.customer_id END,
			checkout_session_id = GREATEST(crm.purchases.checkout_session_id, EXCLUDED.checkout_session_id),
			payment_intent_id = GREATEST(crm.purchases.payment_intent_id, EXCLUDED.payment_intent_id),
			charge_id = GREATEST(crm.purchases.charge_id, EXCLUDED.charge_id),
			from_checkout = crm.purchases.from_checkout OR EXCLUDED.from_checkout,
			paid = crm.purchases.paid OR EXCLUDED.paid,
			awaiting_async = crm.purchases.awaiting_async OR EXCLUDED.awaiting_async,
			async_failed = crm.purchases.async_failed OR EXCLUDED.async_failed,
			amount = GREATEST(crm.purchases.amount, EXCLUDED.amount),
			amount_refunded = GREATEST(crm.purchases.amount_refunded, EXCLUDED.amount_refunded),
			refunded = crm.purchases.refunded OR EXCLUDED.refunded,
			currency = GREATEST(crm.purchases.currency, EXCLUDED.currency),
			created = LEAST(crm.purchases.created, EXCLUDED.created),
			updated_at = now()`,
		f.key, f.customerID, f.checkoutID, f.paymentIntentID, f.chargeID,
		f.fromCheckout, f.paid, f.awaitingAsync, f.asyncFailed,
		f.amount, f.amountRefunded, f.refunded, f.currency, nullTime(f.created))
}

// mapCharge remembers which customer a charge belongs to, for disputes.
func mapCharge(tx *pg.Tx, customerID string, link canonical.ChargeLink) {
	if link.ChargeID == "" || customerID == "" {
		return
	}
	lockPayment(tx, link.ChargeID, link.PaymentIntentID)
	tx.Queue("map charge "+link.ChargeID, `
		INSERT INTO crm.charges (charge_id, customer_id, payment_intent_id) VALUES ($1, $2, $3)
		ON CONFLICT (charge_id) DO UPDATE SET
			payment_intent_id = GREATEST(crm.charges.payment_intent_id, EXCLUDED.payment_intent_id)`,
		link.ChargeID, customerID, link.PaymentIntentID)
}

// lockPayment takes, until the transaction ends, the lock of each charge
// or payment intent named: a transaction that ties one to a customer and
// one that keeps an event on it while its customer is unknown take turns,
// so the later of them sees the other (see keepUnresolved).
func lockPayment(tx *pg.Tx, ids ...string) {
	for _, id := range ids {
		if id != "" {
			tx.Queue("lock payment "+id, `SELECT pg_advisory_xact_lock(hashtext('crm-sync'), hashtext($1))`, "payment:"+id)
		}
	}
}

// resolveCustomer finds the customer of an event that may not name one
// (disputes name a charge).
func resolveCustomer(ctx context.Context, q querier, ev *billingv1.BillingEvent) (string, error) {
	if id := ev.GetCustomerId(); id != "" {
		return id, nil
	}
	if ev.GetChargeId() == "" && ev.GetPaymentIntentId() == "" {
		return "", nil
	}
	var id string
	err := q.QueryRow(ctx, `
		SELECT customer_id FROM crm.charges
		WHERE ($1 <> '' AND charge_id = $1) OR ($2 <> '' AND payment_intent_id = $2)
		UNION ALL
		SELECT customer_id FROM crm.purchases
		WHERE customer_id <> '' AND (($1 <> '' AND charge_id = $1) OR ($2 <> '' AND payment_intent_id = $2))
		LIMIT 1`, ev.GetChargeId(), ev.GetPaymentIntentId()).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("resolve customer of %s: %w", ev.GetEventId(), err)
	}
	return id, nil
}

// applyRefund keeps each refund's latest status; refunds name a charge, and
// purchases find them by charge or payment intent whatever the order.
func applyRefund(tx *pg.Tx, ev *billingv1.BillingEvent) {
	id := ev.GetRefundId()
	if id == "" {
		id = ev.GetObjectId()
	}
	if id == "" {
		return
	}
	tx.Queue("store refund "+id, `
		INSERT INTO crm.refunds (refund_id, charge_id, payment_intent_id, amount, status, last_event_created)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (refund_id) DO UPDATE SET
			status = CASE WHEN crm.refunds.last_event_created IS NULL OR EXCLUDED.last_event_created >= crm.refunds.last_event_created
				THEN EXCLUDED.status ELSE crm.refunds.status END,
			amount = GREATEST(crm.refunds.amount, EXCLUDED.amount),
			charge_id = GREATEST(crm.refunds.charge_id, EXCLUDED.charge_id),
			payment_intent_id = GREATEST(crm.refunds.payment_intent_id, EXCLUDED.payment_intent_id),
			last_event_created = GREATEST(crm.refunds.last_event_created, EXCLUDED.last_event_created)`,
		id, ev.GetChargeId(), ev.GetPaymentIntentId(), ev.GetAmount(), ev.GetStatus(), nullTime(created(ev)))
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func applyDispute(tx *pg.Tx, ev *billingv1.BillingEvent, d canonical.Dispute) {
	tx.Queue("store dispute "+ev.GetDisputeId(), `
		INSERT INTO crm.disputes (dispute_id, charge_id, payment_intent_id, closed, lost) VALUES ($1,$2,$3,$4,$5)
		ON CONFLICT (dispute_id) DO UPDATE SET
			charge_id = GREATEST(crm.disputes.charge_id, EXCLUDED.charge_id),
			payment_intent_id = GREATEST(crm.disputes.payment_intent_id, EXCLUDED.payment_intent_id),
			closed = crm.disputes.closed OR EXCLUDED.closed,
			lost = crm.disputes.lost OR EXCLUDED.lost,
			updated_at = now()`,
		ev.GetDisputeId(), ev.GetChargeId(), ev.GetPaymentIntentId(), d.Closed, d.Lost)
}

// applyEvent folds one event into the mirror of customerID, by the facts
// pkg/canonical reads from it (the same facts billing-state stores). Its
// writes are queued: they reach Postgres with the next read (see pg.Tx).
// The customer's row must exist: ensureCustomer (or, for a batch,
// ensureCustomers) is queued before it.
func applyEvent(ctx context.Context, tx *pg.Tx, facts canonical.Facts, customerID string, ev *billingv1.BillingEvent, snaps *snapshots) (string, error) {
	at := created(ev)
	switch facts.Kind {
	case canonical.KindCustomer:
		// customer.created and .updated carry the profile itself.
		applyProfile(tx, customerID, ev, !facts.CustomerDeleted)
		if facts.CustomerDeleted {
			tx.Queue("delete customer "+customerID, `UPDATE crm.customers SET deleted = true WHERE customer_id = $1`, customerID)
		}
	case canonical.KindSubscription:
		applyProfile(tx, customerID, ev, false)
		dec, err := applySubscription(ctx, tx, ev, snaps)
		if err != nil {
			return "", err
		}
		return "snapshot_" + dec.Outcome.String(), nil
	case canonical.KindCheckout:
		applyProfile(tx, customerID, ev, false)
		pay := facts.Payment
		if !pay.FromCheckout {
			return "applied", nil
		}
		mergePurchase(tx, purchaseFacts{
			key:             pay.Key,
			customerID:      customerID,
			checkoutID:      ev.GetCheckoutSessionId(),
			paymentIntentID: ev.GetPaymentIntentId(),
			fromCheckout:    true,
			paid:            pay.Paid,
			awaitingAsync:   pay.AwaitingAsync,
			asyncFailed:     pay.AsyncFailed,
			amount:          ev.GetAmount(),
			currency:        ev.GetCurrency(),
			created:         at,
		})
	case canonical.KindInvoice:
		applyProfile(tx, customerID, ev, false)
		if facts.PaymentFailed && !at.IsZero() {
			tx.Queue("record payment failure of "+customerID,
				`UPDATE crm.customers SET last_payment_failed_at = GREATEST(last_payment_failed_at, $2) WHERE customer_id = $1`, customerID, at)
		}
		mapCharge(tx, customerID, facts.Link)
	case canonical.KindCharge:
		applyProfile(tx, customerID, ev, false)
		mapCharge(tx, customerID, facts.Link)
		p := paymentPurchase(customerID, facts, ev)
		p.amountRefunded, p.refunded = ev.GetAmountRefunded(), ev.GetRefunded()
		mergePurchase(tx, p)
	case canonical.KindPaymentIntent, canonical.KindInvoicePayment:
		// An invoice payment's purchase row links its payment intent to the
		// customer for disputes that name only the payment intent.
		mapCharge(tx, customerID, facts.Link)
		mergePurchase(tx, paymentPurchase(customerID, facts, ev))
	case canonical.KindRefund:
		mapCharge(tx, customerID, facts.Link)
		applyRefund(tx, ev)
	case canonical.KindDispute:
		mapCharge(tx, customerID, facts.Link)
		applyDispute(tx, ev, facts.Dispute)
	default:
		return "ignored", nil
	}
	return "applied", nil
}

// paymentPurchase is what a charge, payment intent or invoice payment
// contributes to its purchase.
func paymentPurchase(customerID string, facts canonical.Facts, ev *billingv1.BillingEvent) purchaseFacts {
	return purchaseFacts{
		key:             facts.Payment.Key,
		customerID:      customerID,
		paymentIntentID: facts.Link.PaymentIntentID,
		chargeID:        facts.Link.ChargeID,
		paid:            facts.Payment.Paid,
		amount:          ev.GetAmount(),
		currency:        ev.GetCurrency(),
		created:         created(ev),
	}
}

// customerState is the mirror of one customer, read back for derivation.
type customerState struct {
	email, name, userID string
	deleted, livemode   bool
	lastPaymentFailedAt time.Time
	lastEventCreated    time.Time
	subs                []canonical.Subscription
	purchases           []canonical.Purchase
	disputeOpen         bool
	// smokeRun is set for a customer a smoke test made.
	smokeRun string
}
