// Package syncer is crm-sync's handler: it folds each billing event into a
// mirror of the customer's billing objects, derives the customer's state
// with pkg/canonical, and pushes what changed to the CRM.
//
// # Why a crash never duplicates a CRM record
//
// One delivery runs in one Postgres transaction that holds a per-customer
// advisory lock: check processed_events, apply the event to the mirror,
// derive, call the CRM, record the ids it returned and the document
// pushed, insert processed_events, commit, then ack. The CRM call happens
// before the commit, so a crash (or a failed commit) after the call rolls
// the whole delivery back and the bus redelivers it. The redelivery derives
// the same document and writes it again, and that second write lands on the
// same record, because every write is keyed by something the CRM keeps
// unique: HubSpot contacts are upserted by email or by the unique
// stripe_customer_id property (or patched by the id remembered from an
// earlier, committed push), deals are upserted by the unique
// stripe_subscription_id property, the association is an idempotent PUT,
// and webhook documents carry an Idempotency-Key derived from the event and
// the content. Ids learned by a failed delivery are saved outside its
// transaction, so the retry patches instead of searching.
//
// The lock serialises deliveries of one customer, so two workers never push
// the same contact out of order; each push is derived from every event
// committed so far plus the one in hand, and canonical's ordering rules make
// that derivation independent of arrival order. An older event therefore
// never overwrites a newer field: it changes the mirror only where its
// watermark allows, and the document derived after it is the same as (and
// then not pushed again) or newer than what the CRM holds.
package syncer

import (
	"context"
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
	"github.com/launchready/launchready/pkg/telemetry"
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
	// AfterPush runs after the CRM accepted a change and before the
	// transaction commits: the one moment a crash is most expensive.
	// Tests use it to stage that crash.
	AfterPush func(eventID string) error
}

// Syncer applies events and pushes changes.
type Syncer struct {
	o Options
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

// Handle is the bus handler.
func (s *Syncer) Handle(ctx context.Context, d *bus.Delivery) error {
	if d == nil || d.Event == nil || d.Event.GetEventId() == "" {
		return bus.Permanent(errors.New("crm-sync: delivery without an event"))
	}
	outcome, err := s.SyncEvent(ctx, d.Event, d.Delivered)
	if err == nil && outcome == OutcomeDuplicate {
		d.MarkDuplicate()
	}
	return err
}

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

	k := classify(ev)
	if k == kindIgnored {
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

	var (
		outcome string
		res     crm.Result
		change  *crm.Change
		pushed  bool
	)
	// Four round trips for a synced event: BEGIN, the lock and the
	// duplicate check; the mirror's writes with the read of a stored
	// snapshot; the rest of the writes with every read the change needs;
	// after the push, its records with COMMIT.
	err = pg.InTx(ctx, s.o.Pool, func(tx *pg.Tx) error {
		outcome, res, change, pushed = "", crm.Result{}, nil, false
		lockKey := customerID
		if lockKey == "" {
			lockKey = "object:" + ev.GetObjectId()
		}
		tx.Queue("lock customer "+customerID, `SELECT pg_advisory_xact_lock(hashtext('crm-sync'), hashtext($1))`, lockKey)
		var seen bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM crm.processed_events WHERE event_id = $1)`, ev.GetEventId()).Scan(&seen); err != nil {
			return fmt.Errorf("check processed %s: %w", ev.GetEventId(), err)
		}
		if seen {
			outcome = OutcomeDuplicate
			return nil
		}
		if customerID == "" {
			// A dispute on a charge not seen yet: keep it, so the
			// customer's next event (which names the charge) finds it.
			switch k {
			case kindDispute:
				applyDispute(tx, ev)
			case kindRefund:
				applyRefund(tx, ev)
			}
			outcome = OutcomeUnresolved
			markProcessed(tx, ev, "", outcome)
			return nil
		}
		applied, err := applyEvent(ctx, tx, k, customerID, ev)
		if err != nil {
			return err
		}
		span.SetAttributes(attribute.String("mirror", applied))
		change, err = s.buildChange(ctx, tx, customerID, ev, delivery)
		if err != nil {
			return err
		}
		if !needsPush(change, s.o.Adapter.TracksRecords()) {
			outcome = OutcomeUnchanged
			s.logCalls(tx, ev, customerID, delivery, []crm.Call{{Op: "none", Object: customerID, Outcome: OutcomeUnchanged}})
			markProcessed(tx, ev, customerID, outcome)
			return nil
		}
		res, err = s.o.Adapter.Sync(ctx, change)
		if err != nil {
			return err
		}
		pushed = true
		if s.o.AfterPush != nil {
			if err := s.o.AfterPush(ev.GetEventId()); err != nil {
				return err
			}
		}
		s.remember(tx, change, res, true)
		s.logCalls(tx, ev, customerID, delivery, res.Calls)
		outcome = OutcomeSynced
		markProcessed(tx, ev, customerID, outcome)
		return nil
	})
	if err != nil {
		// The transaction is gone; keep what the CRM told us and what was
		// tried, so the retry reuses the ids and operators see the calls.
		s.afterFailure(ctx, ev, customerID, delivery, change, res, pushed)
		log.WarnContext(ctx, "crm sync failed", slog.String("action", ev.GetType()),
			slog.String("outcome", failureOutcome(err)), slog.String("error", bus.Redact(err.Error())))
		return "", s.fail(ctx, span, fmt.Errorf("crm sync %s: %w", ev.GetEventId(), err))
	}
	span.SetAttributes(attribute.String("outcome", outcome))
	log.InfoContext(ctx, "crm sync", slog.String("action", ev.GetType()), slog.String("outcome", outcome),
		slog.Int("calls", len(res.Calls)))
	return outcome, nil
}

func (s *Syncer) fail(_ context.Context, span trace.Span, err error) error {
	span.SetStatus(codes.Error, bus.Redact(err.Error()))
	return err
}

func failureOutcome(err error) string {
	switch {
	case errors.Is(err, crm.ErrDeferred):
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
			int(c.Duration/time.Millisecond), int(delivery), bus.Redact(c.Detail))
	}
}

// afterFailure runs once the delivery's transaction rolled back: it keeps
// ids the CRM returned (they stay true whatever happens to the event) and
// logs the calls tried, in a short transaction of its own.
func (s *Syncer) afterFailure(ctx context.Context, ev *billingv1.BillingEvent, customerID string, delivery uint64, ch *crm.Change, res crm.Result, pushed bool) {
	if len(res.Calls) == 0 && res.ContactCRMID == "" && len(res.Deals) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := pg.InTx(ctx, s.o.Pool, func(tx *pg.Tx) error {
		if ch != nil && (res.ContactCRMID != "" || len(res.Deals) > 0) {
			s.remember(tx, ch, res, false)
		}
		calls := res.Calls
		if pushed {
			calls = append(calls, crm.Call{Op: "commit", Object: customerID, Outcome: "rolled_back"})
		}
		s.logCalls(tx, ev, customerID, delivery, calls)
		return nil
	})
	if err != nil {
		s.o.Logger.WarnContext(ctx, "record failed sync", slog.String("event_id", ev.GetEventId()), slog.String("error", err.Error()))
	}
}
