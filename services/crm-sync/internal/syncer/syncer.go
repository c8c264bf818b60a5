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
//  1. intent, one short transaction under per-customer advisory locks:
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
// stripe_customer_id property (or updated by the id remembered from an
// earlier settled push), deals are upserted by the unique
// stripe_subscription_id property, an association that exists already is
// left as it is, and each webhook document carries an idempotency key
// derived from the event and the content, which receivers dedupe on (with
// the event id, and as_of to drop an older document). Ids learned by a failed delivery are saved in
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
// # Batches
//
// The consumer hands over what is waiting, up to CONSUMER_BATCH_SIZE
// deliveries, with one customer's events always going to the same worker.
// The events of one customer fold into one derived document, since only
// the newest state matters: step 1 applies them all to the mirror and
// opens one intent per customer, for every customer of the batch in one
// transaction; step 2 is one adapter call for all their documents (a few
// vendor calls of up to 100 inputs); step 3 settles every customer from its
// part of the answer, in one transaction, and records all of its events. A
// record the CRM refuses fails its own customer's deliveries (dead
// letters) and nothing else. If step 1 fails for the batch, it is run again
// per customer, then per event, so one event the mirror cannot take is
// retried or dead-lettered alone.
package syncer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
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

// markProcessed records entries as processed with outcome, in one
// statement.
func markProcessed(tx *pg.Tx, entries []*entry, customerID, outcome string) {
	if len(entries) == 0 {
		return
	}
	ids, types := eventIDs(entries)
	tx.Queue("record processed "+ids[0], `
		INSERT INTO crm.processed_events (event_id, event_type, customer_id, outcome)
		SELECT e.event_id, e.event_type, $3, $4 FROM unnest($1::text[], $2::text[]) AS e(event_id, event_type)`,
		ids, types, customerID, outcome)
}

func eventIDs(entries []*entry) (ids, types []string) {
	ids, types = make([]string, len(entries)), make([]string, len(entries))
	for i, e := range entries {
		ids[i], types[i] = e.ev.GetEventId(), e.ev.GetType()
	}
	return ids, types
}

// deriveChange derives the customer's documents from m, read by
// loadCustomers, and compares them with what was last pushed to the
// configured CRM. A smoke test's customer is a contact marked as a test
// with no revenue, and has no deals: reports that filter on the mark, and
// every pipeline and revenue report, leave it out.
func (s *Syncer) deriveChange(m *mirrorRead, customerID string, ev *billingv1.BillingEvent, delivery uint64) *crm.Change {
	st := m.st
	contact := DeriveContact(customerID, st.email, st.name, st.userID, st.deleted, st.livemode,
		st.lastPaymentFailedAt, st.disputeOpen, st.subs, st.purchases, s.o.Policy)
	if st.smokeRun != "" {
		contact.Test, contact.MRR = true, 0
	}
	ch := &crm.Change{
		EventID:        ev.GetEventId(),
		EventType:      ev.GetType(),
		AsOf:           st.lastEventCreated,
		Delivery:       delivery,
		Contact:        contact,
		ContactCRMID:   m.contactID,
		ContactChanged: hashOf(contact) != m.pushedHash,
	}
	for _, sub := range st.subs {
		if contact.Test {
			break
		}
		deal, ok := DeriveDeal(sub, contact.Email)
		if !ok {
			continue
		}
		k := m.deals[sub.ID]
		ch.Deals = append(ch.Deals, crm.DealChange{
			Deal:         deal,
			CRMID:        k.id,
			AssociatedTo: k.assoc,
			Changed:      hashOf(deal) != k.hash,
		})
	}
	return ch
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
