// Package syncer is crm-sync's handler: it folds each billing event into a
// mirror of the customer's billing objects, derives the customer's state
// with pkg/canonical, and pushes what changed to the CRM.
//
// # Intent, call, outcome
//
// No transaction and no database connection is held while a CRM is
// called: a slow vendor costs workers, never the pool. One delivery runs
// in three steps:
//
//  1. intent, one short transaction under a per-customer advisory lock:
//     check processed_events, apply the event to the mirror, derive the
//     customer's documents and compare them with what the CRM holds; if
//     nothing is missing, record the event processed ("unchanged") and
//     stop; otherwise record a push intent (crm.push_intents) and commit;
//  2. the call, with the derived documents;
//  3. outcome, one short transaction under the same lock: the ids the CRM
//     returned, the documents pushed, the call log and the processed_events
//     row commit together, and the intent is settled.
//
// The mirror's changes commit in step 1, before the event is recorded as
// processed. That is safe because the mirror is a merge of one-way facts
// under watermarks: applying an event again (after a crash, or a failed
// call) changes nothing.
//
// # Why a crash never duplicates a CRM record
//
// A crash between the call and the outcome leaves the event unrecorded,
// so the bus redelivers it and the call is made again, with the same
// documents or newer ones. Every write is keyed by something the CRM keeps
// unique, so the second write lands on the record the first one made:
// HubSpot contacts are upserted by email or by the unique
// stripe_customer_id property (or patched by the id remembered from an
// earlier settled push), deals are upserted by the unique
// stripe_subscription_id property, the association is an idempotent PUT,
// and webhook documents carry an Idempotency-Key derived from the event and
// the content, which receivers dedupe on (with the event id, and as_of to
// drop an older document). Ids learned by a failed delivery are saved in
// its outcome transaction, so the retry patches instead of searching.
//
// # Per-customer order without a lock held across the call
//
// Two deliveries for one customer may now call the CRM at once, and their
// requests may arrive in either order. Each push is derived from every
// event committed so far, and canonical's ordering rules make that
// derivation independent of arrival order, so the newest derivation is
// the right document; the risk is only an older document landing last.
// Each intent records whether another push of the customer was open
// beside it, or the mirror changed under it ("overlapped"). The push that
// settles last for a customer and was overlapped derives the current
// documents again and pushes them ("repair"), before its event counts as
// processed; until a push settles clean, the stored hash of what the CRM
// holds is cleared, so the next event pushes too. An older state therefore
// never stays in the CRM over a newer one.
//
// # Room for batches
//
// The three steps are per customer but not per call: a later batching
// step can open intents for many customers in one transaction, make one
// vendor call for all their documents, and settle each customer's intent
// from its part of the answer, with the same guarantees.
package syncer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/telemetry"
	"github.com/launchready/launchready/pkg/vendorhttp"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
)

// Outcomes recorded in processed_events and logs.
const (
	OutcomeSynced     = "synced"
	OutcomeUnchanged  = "unchanged"
	OutcomeIgnored    = "ignored"
	OutcomeDuplicate  = "duplicate"
	OutcomeUnresolved = "customer_unknown"
)

// Options configures a Syncer.
type Options struct {
	Pool    *pgxpool.Pool
	Adapter crm.Adapter
	Policy  canonical.Policy
	Logger  *slog.Logger
	Tracer  trace.Tracer
	// Timeout bounds the work of one delivery, CRM calls included.
	Timeout time.Duration
	// AfterPush runs after the CRM accepted a change and before its
	// outcome is recorded: the one moment a crash is most expensive.
	// Tests use it to stage that crash.
	AfterPush func(eventID string) error
}

// Syncer applies events and pushes changes.
type Syncer struct {
	o     Options
	locks customerLocks
}

// New builds a Syncer.
func New(o Options) *Syncer {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider().Tracer("crm-sync")
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	return &Syncer{o: o}
}

// SyncDelivery syncs one bus delivery: it checks that the delivery
// carries an event, syncs it, and tells the bus when it was a duplicate.
func (s *Syncer) SyncDelivery(ctx context.Context, d *bus.Delivery) error {
	if d == nil || d.Event == nil || d.Event.GetEventId() == "" {
		return bus.Permanent(errors.New("crm-sync: delivery without an event"))
	}
	outcome, err := s.SyncEvent(ctx, d.Event, d.Delivered)
	if err == nil && outcome == OutcomeDuplicate {
		d.MarkDuplicate()
	}
	return err
}

// maxRepairs bounds the repair pushes one delivery makes while other
// deliveries keep overlapping it; past it the delivery fails and the bus
// retries it later.
const maxRepairs = 3

// errRepairsExhausted ends a delivery whose repairs kept being overlapped.
var errRepairsExhausted = errors.New("pushes for the customer kept overlapping")

// errDuplicate ends an intent transaction whose event was processed already.
var errDuplicate = errors.New("event processed already")

// SyncEvent applies ev and pushes the resulting change. It returns the
// outcome ("synced", "unchanged", "ignored", "duplicate",
// "customer_unknown") or an error the bus knows how to retry.
func (s *Syncer) SyncEvent(ctx context.Context, ev *billingv1.BillingEvent, delivery uint64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	ctx, span := s.o.Tracer.Start(ctx, "crm-sync "+ev.GetType(), trace.WithAttributes(
		telemetry.AttrEventID.String(ev.GetEventId()),
		telemetry.AttrEventType.String(ev.GetType()),
	))
	defer span.End()
	log := s.o.Logger.With(slog.String("event_id", ev.GetEventId()), slog.Uint64("delivery", delivery))

	facts := canonical.Classify(ev)
	if facts.Kind == canonical.KindIgnored {
		log.DebugContext(ctx, "event ignored", slog.String("action", ev.GetType()), slog.String("outcome", OutcomeIgnored))
		span.SetAttributes(attribute.String("outcome", OutcomeIgnored))
		return OutcomeIgnored, nil
	}
	customerID, err := resolveCustomer(ctx, s.o.Pool, ev)
	if err != nil {
		return "", s.fail(ctx, span, err)
	}
	span.SetAttributes(telemetry.AttrCustomerID.String(customerID))
	log = log.With(slog.String("customer_id", customerID))
	unlock, err := s.locks.lock(ctx, lockKey(ev, customerID))
	if err != nil {
		return "", s.fail(ctx, span, fmt.Errorf("crm sync %s: wait for the customer's turn: %w", ev.GetEventId(), err))
	}
	defer unlock()

	failed := func(err error) (string, error) {
		log.WarnContext(ctx, "crm sync failed", slog.String("action", ev.GetType()),
			slog.String("outcome", failureOutcome(err)), slog.String("error", redact.Error(err)))
		return "", s.fail(ctx, span, fmt.Errorf("crm sync %s: %w", ev.GetEventId(), err))
	}
	calls := 0
	for round := 0; ; round++ {
		if round > maxRepairs {
			return failed(errRepairsExhausted)
		}
		in, err := s.intent(ctx, span, ev, facts, customerID, delivery, round > 0)
		if err != nil {
			return failed(err)
		}
		if in.outcome != "" {
			span.SetAttributes(attribute.String("outcome", in.outcome))
			log.InfoContext(ctx, "crm sync", slog.String("action", ev.GetType()), slog.String("outcome", in.outcome), slog.Int("calls", calls))
			return in.outcome, nil
		}
		res, err := s.o.Adapter.Sync(ctx, in.change)
		calls += len(res.Calls)
		if err == nil && s.o.AfterPush != nil {
			if err = s.o.AfterPush(ev.GetEventId()); err != nil {
				res.Calls = append(res.Calls, crm.Call{Op: "record outcome", Object: customerID, Outcome: "rolled_back"})
			}
		}
		if err != nil {
			s.abandon(ctx, ev, in, delivery, res)
			return failed(err)
		}
		verdict, err := s.settle(ctx, ev, in, delivery, res)
		if err != nil {
			// The call landed; the redelivery makes it again, which is
			// harmless (see the package comment).
			return failed(fmt.Errorf("record outcome: %w", err))
		}
		span.SetAttributes(attribute.String("push", verdict))
		if verdict != verdictRepair {
			span.SetAttributes(attribute.String("outcome", OutcomeSynced))
			log.InfoContext(ctx, "crm sync", slog.String("action", ev.GetType()), slog.String("outcome", OutcomeSynced), slog.Int("calls", calls))
			return OutcomeSynced, nil
		}
		log.DebugContext(ctx, "crm push overlapped another; pushing the current state again", slog.String("action", ev.GetType()))
	}
}

// verdictRepair is crm.settle_push's verdict on a push that settled last
// after overlapping others; "clean" and "not_last" need nothing more (see
// the schema).
const verdictRepair = "repair"

// pushIntent is step 1's result: either a final outcome, or a change to
// push under a recorded intent.
type pushIntent struct {
	outcome    string
	id         string
	customerID string
	change     *crm.Change
}

// intent runs step 1. On a repair round the event is already in the
// mirror: only the derivation and the intent are redone.
func (s *Syncer) intent(ctx context.Context, span trace.Span, ev *billingv1.BillingEvent, facts canonical.Facts, customerID string, delivery uint64, repair bool) (pushIntent, error) {
	var in pushIntent
	provider := s.o.Adapter.Name()
	// Three round trips for a synced event: BEGIN, the lock, the duplicate
	// check and the mirror's first writes with the read of a stored
	// snapshot; the rest of the writes with every read the change needs;
	// the intent with COMMIT. A duplicate costs the first and a ROLLBACK.
	err := pg.InTx(ctx, s.o.Pool, func(tx *pg.Tx) error {
		in = pushIntent{customerID: customerID}
		lockCustomer(tx, ev, customerID)
		var seen *bool
		tx.QueueScan("check processed "+ev.GetEventId(), `SELECT EXISTS (SELECT 1 FROM crm.processed_events WHERE event_id = $1)`,
			[]any{ev.GetEventId()}, &seen)
		if customerID == "" {
			if err := tx.Flush(ctx); err != nil {
				return err
			}
			if *seen {
				return errDuplicate
			}
			// A dispute on a charge not seen yet: keep it, so the
			// customer's next event (which names the charge) finds it.
			switch facts.Kind {
			case canonical.KindDispute:
				applyDispute(tx, ev, facts.Dispute)
			case canonical.KindRefund:
				applyRefund(tx, ev)
			}
			in.outcome = OutcomeUnresolved
			markProcessed(tx, ev, "", in.outcome)
			return nil
		}
		if !repair {
			applied, err := applyEvent(ctx, tx, facts, customerID, ev)
			if err != nil {
				return err
			}
			if seen != nil && *seen {
				return errDuplicate
			}
			span.SetAttributes(attribute.String("mirror", applied))
		}
		change, err := s.buildChange(ctx, tx, customerID, ev, delivery)
		if err != nil {
			return err
		}
		if *seen {
			return errDuplicate
		}
		if !needsPush(change, s.o.Adapter.TracksRecords()) {
			// Pushes still in flight derived their documents before this
			// event: whichever settles last checks them again.
			tx.Queue("overlap pushes of "+customerID, `SELECT crm.overlap_pushes($1, $2)`, provider, customerID)
			in.outcome = OutcomeUnchanged
			if repair {
				// Another push settled the current state meanwhile.
				in.outcome = OutcomeSynced
			}
			s.logCalls(tx, ev, customerID, delivery, []crm.Call{{Op: "none", Object: customerID, Outcome: OutcomeUnchanged}})
			markProcessed(tx, ev, customerID, in.outcome)
			return nil
		}
		in.id, in.change = newIntentID(), change
		// The intent lives as long as this delivery may: past its deadline
		// no call of it can be in flight.
		ttl := s.o.Timeout
		if dl, ok := ctx.Deadline(); ok {
			ttl = time.Until(dl)
		}
		tx.Queue("open push of "+customerID, `SELECT crm.open_push($1, $2, $3, $4, $5)`,
			in.id, provider, customerID, ev.GetEventId(), (ttl + intentMargin).Seconds())
		return nil
	})
	if errors.Is(err, errDuplicate) {
		return pushIntent{outcome: OutcomeDuplicate}, nil
	}
	return in, err
}

// intentMargin outlasts the delivery's deadline by the time a cancelled
// request takes to give up.
const intentMargin = 5 * time.Second

// lockCustomer serialises the intent and outcome transactions of one
// customer across processes; it is held for a transaction, never across a
// CRM call.
func lockCustomer(tx *pg.Tx, ev *billingv1.BillingEvent, customerID string) {
	tx.Queue("lock customer "+customerID, `SELECT pg_advisory_xact_lock(hashtext('crm-sync'), hashtext($1))`, lockKey(ev, customerID))
}

// lockKey is the customer, or for an event whose customer is not known
// yet, the object it names.
func lockKey(ev *billingv1.BillingEvent, customerID string) string {
	if customerID == "" {
		return "object:" + ev.GetObjectId()
	}
	return customerID
}

func newIntentID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// outcomeContext is for writing down what a call did: the call happened,
// so the record is kept even when the delivery's own context is over
// (shutdown, deadline).
func outcomeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

// settle runs step 3 after a successful push, in one round trip.
func (s *Syncer) settle(ctx context.Context, ev *billingv1.BillingEvent, in pushIntent, delivery uint64, res crm.Result) (string, error) {
	ctx, cancel := outcomeContext(ctx)
	defer cancel()
	var verdict string
	err := pg.InTx(ctx, s.o.Pool, func(tx *pg.Tx) error {
		lockCustomer(tx, ev, in.customerID)
		s.remember(tx, in.change, res, true)
		s.logCalls(tx, ev, in.customerID, delivery, res.Calls)
		tx.QueueScan("settle push of "+in.customerID, `SELECT crm.settle_push($1, $2, $3, $4, $5, $6)`,
			[]any{in.id, s.o.Adapter.Name(), in.customerID, ev.GetEventId(), ev.GetType(), OutcomeSynced}, &verdict)
		return nil
	})
	return verdict, err
}

// abandon runs step 3 after a failed push: it keeps the ids the CRM
// returned (they stay true whatever happens to the event) and logs the
// calls tried. The event stays unprocessed, so the bus retries it.
func (s *Syncer) abandon(ctx context.Context, ev *billingv1.BillingEvent, in pushIntent, delivery uint64, res crm.Result) {
	ctx, cancel := outcomeContext(ctx)
	defer cancel()
	sent := false
	for _, c := range res.Calls {
		sent = sent || (c.Outcome != vendorhttp.OutcomeDeferred && c.Op != "record outcome")
	}
	err := pg.InTx(ctx, s.o.Pool, func(tx *pg.Tx) error {
		lockCustomer(tx, ev, in.customerID)
		if res.ContactCRMID != "" || len(res.Deals) > 0 {
			s.remember(tx, in.change, res, false)
		}
		s.logCalls(tx, ev, in.customerID, delivery, res.Calls)
		tx.Queue("abandon push of "+in.customerID, `SELECT crm.abandon_push($1, $2, $3, $4)`,
			in.id, s.o.Adapter.Name(), in.customerID, sent)
		return nil
	})
	if err != nil {
		s.o.Logger.WarnContext(ctx, "record failed sync", slog.String("event_id", ev.GetEventId()), slog.String("error", redact.Error(err)))
	}
}

func (s *Syncer) fail(_ context.Context, span trace.Span, err error) error {
	span.SetStatus(codes.Error, redact.Error(err))
	return err
}

func failureOutcome(err error) string {
	switch {
	case errors.Is(err, vendorhttp.ErrDeferred):
		return "deferred"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "retry"
}

// needsPush reports whether the CRM lacks anything of ch: a changed
// document, or (for CRMs that keep records) a record or association not
// known to exist.
func needsPush(ch *crm.Change, tracksRecords bool) bool {
	if ch.ContactChanged || (tracksRecords && ch.ContactCRMID == "") {
		return true
	}
	for _, d := range ch.Deals {
		if d.Changed || (tracksRecords && (d.CRMID == "" || d.AssociatedTo != ch.ContactCRMID)) {
			return true
		}
	}
	return false
}

func markProcessed(tx *pg.Tx, ev *billingv1.BillingEvent, customerID, outcome string) {
	tx.Queue("record processed "+ev.GetEventId(),
		`INSERT INTO crm.processed_events (event_id, event_type, customer_id, outcome) VALUES ($1, $2, $3, $4)`,
		ev.GetEventId(), ev.GetType(), customerID, outcome)
}

// buildChange derives the customer's state and compares it with what was
// last pushed to the configured CRM.
func (s *Syncer) buildChange(ctx context.Context, tx *pg.Tx, customerID string, ev *billingv1.BillingEvent, delivery uint64) (*crm.Change, error) {
	provider := s.o.Adapter.Name()
	br, err := tx.Send(ctx, func(b *pgx.Batch) {
		queueLoadCustomer(b, customerID)
		b.Queue(`SELECT crm_id, pushed_hash FROM crm.contacts WHERE provider = $1 AND customer_id = $2`, provider, customerID)
		b.Queue(`SELECT subscription_id, crm_id, associated_to, pushed_hash FROM crm.deals WHERE provider = $1 AND customer_id = $2`,
			provider, customerID)
	})
	if err != nil {
		return nil, err
	}
	defer br.Close()
	st, err := readCustomer(br, customerID)
	if err != nil {
		return nil, err
	}
	contact := DeriveContact(customerID, st.email, st.name, st.userID, st.deleted, st.livemode,
		st.lastPaymentFailedAt, st.disputeOpen, st.subs, st.purchases, s.o.Policy)
	ch := &crm.Change{
		EventID:   ev.GetEventId(),
		EventType: ev.GetType(),
		AsOf:      st.lastEventCreated,
		Delivery:  delivery,
		Contact:   contact,
	}
	var pushedHash string
	err = br.QueryRow().Scan(&ch.ContactCRMID, &pushedHash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("load contact %s: %w", customerID, err)
	}
	ch.ContactChanged = hashOf(contact) != pushedHash

	known := map[string]struct{ id, assoc, hash string }{}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("load deals of %s: %w", customerID, err)
	}
	for rows.Next() {
		var sub, id, assoc, hash string
		if err := rows.Scan(&sub, &id, &assoc, &hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load deals of %s: %w", customerID, err)
		}
		known[sub] = struct{ id, assoc, hash string }{id, assoc, hash}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load deals of %s: %w", customerID, err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("load %s: %w", customerID, err)
	}
	for _, sub := range st.subs {
		deal, ok := DeriveDeal(sub, contact.Email)
		if !ok {
			continue
		}
		k := known[sub.ID]
		ch.Deals = append(ch.Deals, crm.DealChange{
			Deal:         deal,
			CRMID:        k.id,
			AssociatedTo: k.assoc,
			Changed:      hashOf(deal) != k.hash,
		})
	}
	return ch, nil
}

// DeriveContact is the contact the CRM should show, from the mirror, by
// pkg/canonical's derivation: the same function billing-state serves its
// status from.
func DeriveContact(customerID, email, name, userID string, deleted, livemode bool, lastFailed time.Time, disputeOpen bool,
	subs []canonical.Subscription, purchases []canonical.Purchase, p canonical.Policy) crm.Contact {
	d := canonical.Derive(subs, purchases, p)
	c := crm.Contact{
		CustomerID:  customerID,
		Email:       email,
		Name:        name,
		UserID:      userID,
		Status:      canonical.StatusName(d.Status),
		Entitled:    d.Entitled,
		MRR:         d.MRR,
		Currency:    d.Currency,
		DisputeOpen: disputeOpen,
		Deleted:     deleted,
		Livemode:    livemode,
	}
	if d.Primary != nil {
		c.Plan = d.Primary.PriceID
		c.CurrentPeriodEnd = timePtr(d.Primary.CurrentPeriodEnd)
	}
	c.LastPaymentFailedAt = timePtr(lastFailed)
	return c
}

// DeriveDeal is the deal of one subscription; false when its status is one
// canonical does not know, which says nothing worth a deal.
func DeriveDeal(s canonical.Subscription, email string) (crm.Deal, bool) {
	st := s.CanonicalStatus()
	if st == billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED {
		return crm.Deal{}, false
	}
	return crm.Deal{
		SubscriptionID:    s.ID,
		CustomerID:        s.CustomerID,
		CustomerEmail:     email,
		Status:            canonical.StatusName(st),
		Plan:              s.PriceID,
		MonthlyAmount:     canonical.MonthlyAmount(s.UnitAmount, s.Quantity, s.Interval, s.IntervalCount),
		Currency:          s.Currency,
		CurrentPeriodEnd:  timePtr(s.CurrentPeriodEnd),
		CancelAtPeriodEnd: s.CancelAtPeriodEnd,
		Deleted:           s.Deleted,
	}, true
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// remember stores the ids the CRM returned and, when complete is true,
// the documents now in the CRM.
func (s *Syncer) remember(tx *pg.Tx, ch *crm.Change, res crm.Result, complete bool) {
	if ch == nil {
		return
	}
	provider := s.o.Adapter.Name()
	customerID := ch.Contact.CustomerID
	var doc []byte
	hash := ""
	if complete {
		doc, _ = json.Marshal(ch.Contact)
		hash = hashOf(ch.Contact)
	}
	tx.Queue("remember contact "+customerID, `
		INSERT INTO crm.contacts (provider, customer_id, crm_id, pushed, pushed_hash, last_event_id, last_event_created, synced_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN now() END)
		ON CONFLICT (provider, customer_id) DO UPDATE SET
			crm_id = CASE WHEN EXCLUDED.crm_id <> '' THEN EXCLUDED.crm_id ELSE crm.contacts.crm_id END,
			pushed = CASE WHEN $8 THEN EXCLUDED.pushed ELSE crm.contacts.pushed END,
			pushed_hash = CASE WHEN $8 THEN EXCLUDED.pushed_hash ELSE crm.contacts.pushed_hash END,
			last_event_id = CASE WHEN $8 THEN EXCLUDED.last_event_id ELSE crm.contacts.last_event_id END,
			last_event_created = CASE WHEN $8 THEN GREATEST(crm.contacts.last_event_created, EXCLUDED.last_event_created) ELSE crm.contacts.last_event_created END,
			synced_at = CASE WHEN $8 THEN now() ELSE crm.contacts.synced_at END`,
		provider, customerID, res.ContactCRMID, doc, hash, ch.EventID, nullTime(ch.AsOf), complete)
	for _, d := range ch.Deals {
		r, ok := res.Deals[d.Deal.SubscriptionID]
		if !ok {
			r = crm.DealResult{CRMID: d.CRMID, AssociatedTo: d.AssociatedTo}
		}
		var ddoc []byte
		dhash := ""
		if complete {
			ddoc, _ = json.Marshal(d.Deal)
			dhash = hashOf(d.Deal)
		}
		tx.Queue("remember deal "+d.Deal.SubscriptionID, `
			INSERT INTO crm.deals (provider, subscription_id, customer_id, crm_id, associated_to, pushed, pushed_hash, last_event_id, last_event_created, synced_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $10 THEN now() END)
			ON CONFLICT (provider, subscription_id) DO UPDATE SET
				crm_id = CASE WHEN EXCLUDED.crm_id <> '' THEN EXCLUDED.crm_id ELSE crm.deals.crm_id END,
				associated_to = CASE WHEN EXCLUDED.crm_id <> '' OR EXCLUDED.associated_to <> '' THEN EXCLUDED.associated_to ELSE crm.deals.associated_to END,
				pushed = CASE WHEN $10 THEN EXCLUDED.pushed ELSE crm.deals.pushed END,
				pushed_hash = CASE WHEN $10 THEN EXCLUDED.pushed_hash ELSE crm.deals.pushed_hash END,
				last_event_id = CASE WHEN $10 THEN EXCLUDED.last_event_id ELSE crm.deals.last_event_id END,
				last_event_created = CASE WHEN $10 THEN GREATEST(crm.deals.last_event_created, EXCLUDED.last_event_created) ELSE crm.deals.last_event_created END,
				synced_at = CASE WHEN $10 THEN now() ELSE crm.deals.synced_at END`,
			provider, d.Deal.SubscriptionID, customerID, r.CRMID, r.AssociatedTo, ddoc, dhash, ch.EventID, nullTime(ch.AsOf), complete)
	}
}

func (s *Syncer) logCalls(tx *pg.Tx, ev *billingv1.BillingEvent, customerID string, delivery uint64, calls []crm.Call) {
	for _, c := range calls {
		tx.Queue("sync log "+ev.GetEventId(), `
			INSERT INTO crm.sync_log (event_id, event_type, customer_id, provider, call, object_id, status, outcome, duration_ms, delivery, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			ev.GetEventId(), ev.GetType(), customerID, s.o.Adapter.Name(), c.Op, c.Object, c.Status, c.Outcome,
			int(c.Duration/time.Millisecond), int(delivery), redact.Text(c.Detail)) // #nosec G115 -- delivery counts are bounded by CONSUMER_MAX_DELIVER
	}
}
