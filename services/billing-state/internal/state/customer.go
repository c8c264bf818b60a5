package state

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// customerRow is the customer's row, locked for the transaction.
type customerRow struct {
	id                  string
	email, name, userID string
	livemode            bool
	placeholder         bool
	deleted             bool
	profileCreated      *time.Time
	profileEventID      string
	profileEventType    string
	lastPaymentFailedAt *time.Time
	needsReconciliation bool
	// status is the stored CustomerStatus; nil for a customer first seen in
	// this transaction.
	status *billingv1.CustomerStatus
}

const customerColumns = `id, email, name, user_id, livemode, placeholder, deleted, profile_event_created, profile_event_id,
	profile_event_type, last_payment_failed_at, needs_reconciliation, status_json`

func scanCustomer(row pgx.Row) (customerRow, error) {
	var c customerRow
	var statusJSON []byte
	if err := row.Scan(&c.id, &c.email, &c.name, &c.userID, &c.livemode, &c.placeholder, &c.deleted, &c.profileCreated,
		&c.profileEventID, &c.profileEventType, &c.lastPaymentFailedAt, &c.needsReconciliation, &statusJSON); err != nil {
		return c, err
	}
	if len(statusJSON) > 0 {
		st, err := unmarshalStatus(statusJSON)
		if err != nil {
			return c, err
		}
		c.status = st
	}
	return c, nil
}

// begin records the event in processed_events and, when customerID is
// known, creates a placeholder for a customer first seen here, locks the
// customer's row (every event of one customer applies in turn) and reads
// its subscriptions, all in one round trip. fresh is false for an event
// applied before.
func (t *txn) begin(ev *billingv1.BillingEvent, customerID string) (fresh bool, err error) {
	if t.batch != nil {
		return t.batch.begin(t, ev.GetEventId(), customerID), nil
	}
	br, err := t.send(func(b *pgx.Batch) {
		b.Queue(`INSERT INTO billing.processed_events (event_id, event_type, customer_id, outcome) VALUES ($1, $2, $3, 'applied')
			ON CONFLICT (event_id) DO NOTHING`, ev.GetEventId(), ev.GetType(), customerID)
		if customerID != "" {
			queueLock(b, customerID, ev.GetLivemode())
		}
	})
	if err != nil {
		return false, err
	}
	defer br.Close()
	tag, err := br.Exec()
	if err != nil {
		return false, fmt.Errorf("record event %s: %w", ev.GetEventId(), err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	if customerID != "" {
		if err := t.readLock(br, customerID); err != nil {
			return false, err
		}
	}
	return true, br.Close()
}

// lockCustomer is begin's customer part, for an event whose customer had
// to be looked up first.
func (t *txn) lockCustomer(id string, livemode bool) error {
	br, err := t.send(func(b *pgx.Batch) { queueLock(b, id, livemode) })
	if err != nil {
		return err
	}
	defer br.Close()
	if err := t.readLock(br, id); err != nil {
		return err
	}
	return br.Close()
}

func queueLock(b *pgx.Batch, id string, livemode bool) {
	b.Queue(`INSERT INTO billing.customers (id, livemode) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, id, livemode)
	b.Queue(`SELECT `+customerColumns+` FROM billing.customers WHERE id = $1 FOR UPDATE`, id)
	b.Queue(`SELECT `+subscriptionColumns+` FROM billing.subscriptions WHERE customer_id = $1`, id)
}

func (t *txn) readLock(br pgx.BatchResults, id string) error {
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("create customer %s: %w", id, err)
	}
	c, err := scanCustomer(br.QueryRow())
	if err != nil {
		return fmt.Errorf("lock customer %s: %w", id, err)
	}
	t.cus = c
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("load subscriptions of %s: %w", id, err)
	}
	t.subs, err = scanSubscriptions(rows)
	if err != nil {
		return fmt.Errorf("load subscriptions of %s: %w", id, err)
	}
	return nil
}

const subscriptionColumns = `id, customer_id, status, price_id, created, current_period_end, trial_end, cancel_at_period_end, deleted,
	quantity, unit_amount, interval, interval_count, currency, user_id, livemode, last_event_id, last_event_type, last_event_created,
	prev_status, prev_cancel_at_period_end, prev_price_id`

func (t *txn) loadSubscriptions() error {
	br, err := t.send(func(b *pgx.Batch) {
		b.Queue(`SELECT `+subscriptionColumns+` FROM billing.subscriptions WHERE customer_id = $1`, t.cus.id)
	})
	if err != nil {
		return err
	}
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("load subscriptions of %s: %w", t.cus.id, err)
	}
	if t.subs, err = scanSubscriptions(rows); err != nil {
		return fmt.Errorf("load subscriptions of %s: %w", t.cus.id, err)
	}
	return br.Close()
}

func scanSubscriptions(rows pgx.Rows) ([]canonical.Subscription, error) {
	defer rows.Close()
	var out []canonical.Subscription
	for rows.Next() {
		var s canonical.Subscription
		var created, cpe, trialEnd, lastCreated *time.Time
		if err := rows.Scan(&s.ID, &s.CustomerID, &s.Status, &s.PriceID, &created, &cpe, &trialEnd, &s.CancelAtPeriodEnd, &s.Deleted,
			&s.Quantity, &s.UnitAmount, &s.Interval, &s.IntervalCount, &s.Currency, &s.UserID, &s.Livemode,
			&s.LastEventID, &s.LastEventType, &lastCreated, &s.Previous.Status, &s.Previous.CancelAtPeriodEnd, &s.Previous.PriceID); err != nil {
			return nil, err
		}
		s.Created, s.CurrentPeriodEnd, s.TrialEnd, s.LastEventCreated = tv(created), tv(cpe), tv(trialEnd), tv(lastCreated)
		out = append(out, s)
	}
	return out, rows.Err()
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
		p.Created = tv(created)
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

// collectIDs reads the next result of a batch: one text column.
func collectIDs(br pgx.BatchResults) ([]string, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// derive computes the customer's CustomerStatus from the stored facts
// through pkg/canonical. LastEventId and UpdatedAt are left to the caller.
// In a shared transaction the purchase facts read before are reused while
// no event has written payments, refunds or disputes of this customer.
func (t *txn) derive() (*billingv1.CustomerStatus, error) {
	facts := t.cachedFacts()
	if facts == nil {
		br, err := t.send(func(b *pgx.Batch) { queuePurchaseFacts(b, []string{t.cus.id}) })
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
	if t.batch == nil || t.touched {
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
	t.touched = false
	return f, nil
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
	}
	if c.lastPaymentFailedAt != nil {
		st.LastPaymentFailedAt = timestamppb.New(*c.lastPaymentFailedAt)
	}
	if s := d.Primary; s != nil {
		st.Plan = s.PriceID
		st.SubscriptionId = s.ID
		st.CancelAtPeriodEnd = s.CancelAtPeriodEnd
		st.CurrentPeriodEnd = tsOrNil(s.CurrentPeriodEnd)
		st.TrialEnd = tsOrNil(s.TrialEnd)
	}
	return st
}

// audit appends one row to the customer's timeline.
func (t *txn) audit(ev *billingv1.BillingEvent, actor, action string, before, after *billingv1.CustomerStatus) error {
	var b, a []byte
	var err error
	if before != nil {
		if b, err = marshalStatus(before); err != nil {
			return err
		}
	}
	if after != nil {
		if a, err = marshalStatus(after); err != nil {
			return err
		}
	}
	var evID, evType string
	var created *time.Time
	if ev != nil {
		evID, evType, created = ev.GetEventId(), ev.GetType(), eventTime(ev)
	}
	if t.batch != nil {
		t.batch.audits = append(t.batch.audits, auditRow{customer: t.cus.id, eventID: evID, eventType: evType,
			actor: actor, action: action, before: b, after: a, created: created})
		return nil
	}
	t.queueAs("audit "+evID, `INSERT INTO billing.audit_log (customer_id, event_id, event_type, actor, action, before, after, event_created)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`, t.cus.id, evID, evType, actor, action, b, a, created)
	return nil
}

func (t *txn) writeCustomer(st *billingv1.CustomerStatus) error {
	if t.batch != nil {
		// Written once per customer when the batch ends (flushWrites).
		t.cus.status = st
		t.batch.customers[t.cus.id].dirty = true
		return nil
	}
	js, err := marshalStatus(st)
	if err != nil {
		return err
	}
	c := t.cus
	t.queueAs("store customer "+c.id, `UPDATE billing.customers SET email = $2, name = $3, user_id = $4, livemode = $5, placeholder = $6,
			deleted = $7, profile_event_created = $8, profile_event_id = $9, profile_event_type = $10, last_payment_failed_at = $11,
			needs_reconciliation = $12, status = $13, entitled = $14, status_json = $15, last_event_id = $16, updated_at = now()
		WHERE id = $1`,
		c.id, c.email, c.name, c.userID, c.livemode, c.placeholder, c.deleted, c.profileCreated, c.profileEventID, c.profileEventType,
		c.lastPaymentFailedAt, c.needsReconciliation, canonical.StatusName(st.GetStatus()), st.GetEntitled(), js, st.GetLastEventId())
	t.cus.status = st
	return nil
}

func (t *txn) writeOutbox(st *billingv1.CustomerStatus) error {
	body, err := proto.Marshal(st)
	if err != nil {
		return fmt.Errorf("outbox for %s: %w", t.cus.id, err)
	}
	if t.batch != nil {
		t.batch.outboxCustomers = append(t.batch.outboxCustomers, t.cus.id)
		t.batch.outboxPayloads = append(t.batch.outboxPayloads, body)
		return nil
	}
	t.queueAs("outbox", `INSERT INTO billing.outbox (customer_id, payload) VALUES ($1, $2)`, t.cus.id, body)
	return nil
}

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

func marshalStatus(st *billingv1.CustomerStatus) ([]byte, error) {
	b, err := jsonOpts.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode status of %s: %w", st.GetCustomerId(), err)
	}
	return b, nil
}

func unmarshalStatus(b []byte) (*billingv1.CustomerStatus, error) {
	st := &billingv1.CustomerStatus{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decode stored status: %w", err)
	}
	return st, nil
}

func tv(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}

func tsOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tsNow(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t.UTC()) }
