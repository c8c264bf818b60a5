package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Applying one event: ApplyEvent, and the steps of its transaction in the
// order they run. ApplyBatch (batch.go) runs the same steps for several
// events in one shared transaction.

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
	// ActionRepair: Stripe's current object applied to repair drift.
	ActionRepair = "repair"
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
	// Actor, when set, names who applied the event in the audit log
	// instead of "stripe", and the audit action is ActionRepair: a drift
	// repair applying Stripe's current object (a snapshot) for the drift
	// check or a member of staff.
	Actor string
}

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
	facts := canonical.Classify(ev)
	if facts.Kind == canonical.KindIgnored {
		return Result{Outcome: OutcomeIgnored}, nil
	}
	var h hint
	// At most one fetch of each kind: a second need means Stripe's answer
	// did not settle it, and the tie rules take over.
	for attempt := 0; ; attempt++ {
		res, err := s.applyOnce(ctx, ev, facts, h, opts, attempt > 1)
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

func (s *Store) applyOnce(ctx context.Context, ev *billingv1.BillingEvent, facts canonical.Facts, h hint, opts ApplyOptions, noMoreFetch bool) (Result, error) {
	var res Result
	err := s.inTx(ctx, func(t *txn) error {
		var err error
		res, err = t.applyEvent(ev, facts, h, opts, noMoreFetch)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("apply %s: %w", ev.GetEventId(), err)
	}
	return res, nil
}

// A transaction here is a pg.Tx: statements whose results nothing reads
// (the writes) are queued and travel with the next statement that needs an
// answer, BEGIN rides with the first read and COMMIT with the last writes.
// An event costs three round trips instead of a dozen, which is what lets
// one Postgres keep up with thousands of events a second: at that rate the
// time is in round trips and commits, not in the statements.

// txn is one transaction and what the event being applied has read and
// changed in it.
type txn struct {
	s   *Store
	ctx context.Context
	// tx.Owner is the index of the event being applied in a shared
	// transaction (see ApplyBatch); 0 otherwise.
	tx *pg.Tx
	// batch is what a shared transaction read up front; nil otherwise.
	batch *batchState

	// The current event's part; startEvent clears it.
	cus customerRow
	// subs are the customer's subscriptions, kept current in memory so the
	// derivation after the change needs no second read.
	subs []canonical.Subscription
	// ambiguous: same-second snapshots could not be ordered (Result).
	ambiguous bool
	// purchaseFactsWritten: the event wrote payments, refunds or disputes,
	// so derivation must read them again.
	purchaseFactsWritten bool
	// rememberedRefs are the charges and payment intents whose customer the
	// event taught (rememberPaymentRefs): events parked for them are
	// claimed before the transaction commits.
	rememberedRefs []string
}

// inTx runs fn in one transaction on one connection: committed when fn
// returns nil, rolled back otherwise.
func (s *Store) inTx(ctx context.Context, fn func(t *txn) error) error {
	_, err := s.runTx(ctx, fn)
	return err
}

// runTx is inTx that also reports, on failure, whether the connection was
// lost (as opposed to Postgres refusing a statement, or fn failing).
func (s *Store) runTx(ctx context.Context, fn func(t *txn) error) (connLost bool, err error) {
	return pg.RunTx(ctx, s.pool, func(tx *pg.Tx) error {
		return fn(&txn{s: s, ctx: ctx, tx: tx})
	})
}

// startEvent readies the transaction for the next event of a shared
// transaction: its own context (its trace) and clean per-event state. The
// statements still queued belong to the events before it.
func (t *txn) startEvent(ctx context.Context, owner int) {
	t.ctx, t.tx.Owner = ctx, owner
	t.cus, t.subs, t.ambiguous, t.rememberedRefs, t.purchaseFactsWritten = customerRow{}, nil, false, nil, false
}

// applyEvent is one event's part of a transaction of its own.
func (t *txn) applyEvent(ev *billingv1.BillingEvent, facts canonical.Facts, h hint, opts ApplyOptions, noMoreFetch bool) (Result, error) {
	// One round trip records the event and, when it names its customer,
	// locks the customer and reads its subscriptions.
	fresh, err := t.begin(ev, ev.GetCustomerId())
	if err != nil {
		return Result{}, err
	}
	if !fresh {
		return Result{Outcome: OutcomeDuplicate}, nil
	}
	return t.applyFresh(ev, facts, h, opts, noMoreFetch)
}

// begin records the event in processed_events and, when customerID is
// known, creates a placeholder for a customer first seen here, locks the
// customer's row (every event of one customer applies in turn) and reads
// its subscriptions, all in one round trip. fresh is false for an event
// applied before.
func (t *txn) begin(ev *billingv1.BillingEvent, customerID string) (fresh bool, err error) {
	br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) {
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
	br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) { queueLock(b, id, livemode) })
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

// applyFresh applies an event recorded as new, whose customer, when the
// event names it, is locked and read: the state change, the audit row and
// the customer's row, with an outbox row when its status changed.
func (t *txn) applyFresh(ev *billingv1.BillingEvent, facts canonical.Facts, h hint, opts ApplyOptions, noMoreFetch bool) (Result, error) {
	t.linkAction(ev.GetEventId(), ev.GetRawJson())
	cusID := ev.GetCustomerId()
	if cusID == "" {
		var err error
		if cusID, err = t.resolveCustomer(ev, facts, h, noMoreFetch); err != nil {
			return Result{}, err
		}
		if cusID == "" {
			if facts.Kind.NamesOnlyCharge() {
				if !opts.ParkUnresolved {
					return Result{}, fmt.Errorf("event %s charge %s: %w", ev.GetEventId(), ev.GetChargeId(), ErrCustomerUnknown)
				}
				return t.park(ev)
			}
			t.tx.Queue("record outcome", `UPDATE billing.processed_events SET outcome = 'ignored' WHERE event_id = $1`, ev.GetEventId())
			return Result{Outcome: OutcomeIgnored}, nil
		}
		if err := t.lockCustomer(cusID, ev.GetLivemode()); err != nil {
			return Result{}, err
		}
	}
	before := t.cus.status
	outcome, err := t.storeFacts(ev, facts, h, noMoreFetch)
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
	actor := ActorStripe
	if opts.Actor != "" {
		actor = opts.Actor
		if outcome != OutcomeStale {
			action = ActionRepair
		}
	}
	if err := t.audit(ev, actor, action, before, after); err != nil {
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
		t.tx.Queue("record outcome", `UPDATE billing.processed_events SET customer_id = $2, outcome = $3 WHERE event_id = $1`,
			ev.GetEventId(), cusID, string(outcome))
	}
	return Result{Outcome: outcome, CustomerID: cusID, StatusChanged: changed, Ambiguous: t.ambiguous, Status: final}, nil
}

// resolveCustomer finds the customer an event belongs to. Disputes and
// refunds name a charge; its customer comes from what earlier events taught
// (payment_refs), or from Stripe when an API key is configured.
func (t *txn) resolveCustomer(ev *billingv1.BillingEvent, facts canonical.Facts, h hint, noMoreFetch bool) (string, error) {
	if id := ev.GetCustomerId(); id != "" {
		return id, nil
	}
	refs := facts.Link.Refs()
	if facts.Kind == canonical.KindInvoicePayment && ev.GetInvoiceId() != "" {
		var id string
		err := t.tx.QueryRow(t.ctx, `SELECT customer_id FROM billing.invoices WHERE id = $1`, ev.GetInvoiceId()).Scan(&id)
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
	err := t.tx.QueryRow(t.ctx, `SELECT customer_id FROM billing.payment_refs WHERE ref = ANY($1) LIMIT 1`, refs).Scan(&id)
	switch {
	case err == nil:
		return id, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("look up charge %s: %w", ev.GetChargeId(), err)
	}
	if !facts.Kind.NamesOnlyCharge() {
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
		// Written for the whole batch when it ends (flushWrites).
		t.batch.audits = append(t.batch.audits, auditRow{customer: t.cus.id, eventID: evID, eventType: evType,
			actor: actor, action: action, before: b, after: a, created: created})
		return nil
	}
	t.tx.Queue("audit "+evID, `INSERT INTO billing.audit_log (customer_id, event_id, event_type, actor, action, before, after, event_created)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`, t.cus.id, evID, evType, actor, action, b, a, created)
	return nil
}

// applyParked applies events parked for a charge the current event taught,
// each with its own audit row.
func (t *txn) applyParked(parked []*billingv1.BillingEvent) error {
	for _, ev := range parked {
		before, err := t.derive()
		if err != nil {
			return err
		}
		outcome, err := t.storeFacts(ev, canonical.Classify(ev), hint{}, true)
		if err != nil {
			return err
		}
		after, err := t.derive()
		if err != nil {
			return err
		}
		if err := t.audit(ev, ActorStripe, ActionResolved, before, after); err != nil {
			return err
		}
		t.tx.Queue("record outcome", `UPDATE billing.processed_events SET customer_id = $2, outcome = $3 WHERE event_id = $1`,
			ev.GetEventId(), t.cus.id, string(outcome))
		t.s.log.InfoContext(t.ctx, "parked event applied", "event_id", ev.GetEventId(), "customer_id", t.cus.id, "action", ActionResolved)
	}
	return nil
}

// commitCustomer writes the customer row and, when a watched field changed,
// the outbox row. It reports whether the status changed.
func (t *txn) commitCustomer(ev *billingv1.BillingEvent, outcome Outcome, before, after *billingv1.CustomerStatus) (bool, error) {
	changed := !sameStatus(before, after)
	if outcome != OutcomeStale || changed {
		after.LastEventId = ev.GetEventId()
		if changed || before == nil {
			after.UpdatedAt = statusTimestamp(t.s.now())
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
		// At debug: one line per change would cost a burst more than the
		// change; the audit log and the outbox record every one.
		t.s.log.DebugContext(t.ctx, "customer status changed", "event_id", ev.GetEventId(), "customer_id", t.cus.id,
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

// statusTimestamp is the clock's time as a status timestamp.
func statusTimestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t.UTC()) }

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
	t.tx.Queue("store customer "+c.id, `UPDATE billing.customers SET email = $2, name = $3, user_id = $4, livemode = $5, placeholder = $6,
			deleted = $7, profile_event_created = $8, profile_event_id = $9, profile_event_type = $10, last_payment_failed_at = $11,
			needs_reconciliation = $12, status = $13, entitled = $14, status_json = $15, last_event_id = $16, smoke_run = $17, updated_at = now()
		WHERE id = $1`,
		c.id, c.email, c.name, c.userID, c.livemode, c.placeholder, c.deleted, c.profileCreated, c.profileEventID, c.profileEventType,
		c.lastPaymentFailedAt, c.needsReconciliation, canonical.StatusName(st.GetStatus()), st.GetEntitled(), js, st.GetLastEventId(), c.smokeRun)
	t.cus.status = st
	return nil
}

func (t *txn) writeOutbox(st *billingv1.CustomerStatus) error {
	body, err := proto.Marshal(st)
	if err != nil {
		return fmt.Errorf("outbox for %s: %w", t.cus.id, err)
	}
	if t.batch != nil {
		// Written for the whole batch when it ends (flushWrites).
		t.batch.outboxCustomers = append(t.batch.outboxCustomers, t.cus.id)
		t.batch.outboxPayloads = append(t.batch.outboxPayloads, body)
		return nil
	}
	t.tx.Queue("outbox", `INSERT INTO billing.outbox (customer_id, payload) VALUES ($1, $2)`, t.cus.id, body)
	return nil
}
