package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// BatchItem is one event for ApplyBatch.
type BatchItem struct {
	// Ctx carries the event's trace; nil means the batch's context.
	Ctx   context.Context
	Event *billingv1.BillingEvent
	Opts  ApplyOptions
}

// BatchResult is ApplyEvent's answer for one item of a batch.
type BatchResult struct {
	Result Result
	Err    error
}

// ApplyBatch applies events exactly as ApplyEvent would, but lets the
// events that name their customer share one transaction, so that a burst
// pays for one commit (one wait on the WAL flush) instead of one each.
//
// Every item gets ApplyEvent's answer. An event the shared transaction
// cannot take is applied alone once it has committed: one that needs the
// Stripe API or names only a charge, and one whose statements fail, in
// which case the shared transaction is rolled back and redone without it,
// so one bad event never holds the others back. Customers are locked in id
// order, so concurrent batches never wait on each other in a cycle; a
// customer's own events keep their delivery order.
func (s *Store) ApplyBatch(ctx context.Context, items []BatchItem) []BatchResult {
	out := make([]BatchResult, len(items))
	var shared, alone []int
	for i, it := range items {
		ev := it.Event
		switch {
		case ev == nil || ev.GetEventId() == "" || ev.GetType() == "" || ev.GetCustomerId() == "":
			alone = append(alone, i)
		case canonical.Classify(ev).Kind == canonical.KindIgnored:
			out[i].Result = Result{Outcome: OutcomeIgnored}
		default:
			shared = append(shared, i)
		}
	}
	sort.SliceStable(shared, func(a, b int) bool {
		return items[shared[a]].Event.GetCustomerId() < items[shared[b]].Event.GetCustomerId()
	})
	for len(shared) > 0 {
		failed, err := s.applyShared(ctx, items, shared, out)
		if err == nil {
			break
		}
		if failed < 0 {
			// The database is out of reach: each event alone reports it in
			// ApplyEvent's terms.
			alone = append(alone, shared...)
			break
		}
		alone = append(alone, shared[failed])
		shared = slices.Delete(shared, failed, failed+1)
	}
	slices.Sort(alone)
	for _, i := range alone {
		it := items[i]
		out[i].Result, out[i].Err = s.ApplyEvent(itemCtx(ctx, it), it.Event, it.Opts)
	}
	return out
}

func itemCtx(ctx context.Context, it BatchItem) context.Context {
	if it.Ctx != nil {
		return it.Ctx
	}
	return ctx
}

// applyShared applies items[idx...] in one transaction and, once it has
// committed, stores their results in out. On failure it returns the
// position in idx of the event to take out, or -1 when the connection was
// lost and no event is to blame.
func (s *Store) applyShared(ctx context.Context, items []BatchItem, idx []int, out []BatchResult) (int, error) {
	res := make([]Result, len(idx))
	current := -1
	lost, err := s.runTx(ctx, func(t *txn) error {
		if err := t.prefetch(items, idx); err != nil {
			return err
		}
		for n, i := range idx {
			current = n
			ev := items[i].Event
			t.startEvent(itemCtx(ctx, items[i]), n)
			r := Result{Outcome: OutcomeDuplicate}
			if t.batch.take(t, ev.GetEventId(), ev.GetCustomerId()) {
				var err error
				if r, err = t.applyFresh(ev, canonical.Classify(ev), hint{}, items[i].Opts, false); err != nil {
					return err
				}
			}
			res[n] = r
			t.batch.keep(t)
		}
		// The batch's own writes and COMMIT belong to no single event.
		t.ctx = ctx
		return t.batch.flushWrites(t)
	})
	if err != nil {
		if lost || current < 0 {
			return -1, err
		}
		// A queued statement fails when a later one carries it: blame the
		// event that queued it. When a statement written for the whole
		// batch fails, every event is applied alone.
		var se *pg.StepError
		if errors.As(err, &se) {
			if se.Owner == batchOwner {
				return -1, err
			}
			if se.Owner >= 0 && se.Owner < len(idx) {
				return se.Owner, err
			}
		}
		return current, err
	}
	changed := false
	for n, i := range idx {
		out[i] = BatchResult{Result: res[n]}
		changed = changed || res[n].StatusChanged
	}
	if changed {
		s.kick()
	}
	return 0, nil
}

// batchState is what a shared transaction reads for all its events in its
// first round trip, and keeps current as they apply: which events are new,
// and each customer's row (locked), subscriptions and purchase facts. An
// event whose kind writes no purchase facts then applies without a round
// trip of its own; its writes travel with the next statement that needs an
// answer, at the latest with COMMIT.
type batchState struct {
	fresh     map[string]bool
	customers map[string]*batchCustomer
	// Rows written once for the whole batch, in apply order (flushWrites).
	audits          []auditRow
	outboxCustomers []string
	outboxPayloads  [][]byte
}

type batchCustomer struct {
	row  customerRow
	subs []canonical.Subscription
	// facts is nil until read, and replaced whenever an event writes them.
	facts *purchaseFacts
	// dirty: an event changed the row, which flushWrites stores.
	dirty bool
}

type auditRow struct {
	customer, eventID, eventType, actor, action string
	before, after                               []byte
	created                                     *time.Time
}

// batchOwner marks the statements that write for the whole batch: when one
// fails, no single event is to blame.
const batchOwner = -1

// flushWrites queues the batch's customer rows, audit rows and outbox rows
// as one statement each instead of one per event. Audit and outbox rows
// keep the order the events applied in, so each customer's timeline and
// published changes stay in order.
func (b *batchState) flushWrites(t *txn) error {
	t.tx.Owner = batchOwner
	var ids, emails, names, users, profileIDs, profileTypes, statuses, lastEvents, smokeRuns []string
	var live, placeholder, deleted, reconcile, entitled []bool
	var profileAt, failedAt []*time.Time
	var statusJSON []string
	for _, id := range slices.Sorted(maps.Keys(b.customers)) {
		c := b.customers[id]
		if !c.dirty {
			continue
		}
		r := c.row
		js, err := marshalStatus(r.status)
		if err != nil {
			return err
		}
		ids, emails, names, users = append(ids, r.id), append(emails, r.email), append(names, r.name), append(users, r.userID)
		live, placeholder, deleted = append(live, r.livemode), append(placeholder, r.placeholder), append(deleted, r.deleted)
		profileAt, profileIDs, profileTypes = append(profileAt, r.profileCreated), append(profileIDs, r.profileEventID), append(profileTypes, r.profileEventType)
		failedAt, reconcile = append(failedAt, r.lastPaymentFailedAt), append(reconcile, r.needsReconciliation)
		statuses, entitled = append(statuses, canonical.StatusName(r.status.GetStatus())), append(entitled, r.status.GetEntitled())
		statusJSON, lastEvents = append(statusJSON, string(js)), append(lastEvents, r.status.GetLastEventId())
		smokeRuns = append(smokeRuns, r.smokeRun)
	}
	if len(ids) > 0 {
		t.tx.Queue("store customers", `UPDATE billing.customers c SET email = u.email, name = u.name, user_id = u.user_id, livemode = u.livemode,
				placeholder = u.placeholder, deleted = u.deleted, profile_event_created = u.profile_event_created,
				profile_event_id = u.profile_event_id, profile_event_type = u.profile_event_type,
				last_payment_failed_at = u.last_payment_failed_at, needs_reconciliation = u.needs_reconciliation,
				status = u.status, entitled = u.entitled, status_json = u.status_json::jsonb, last_event_id = u.last_event_id,
				smoke_run = u.smoke_run, updated_at = now()
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::bool[], $7::bool[], $8::timestamptz[], $9::text[],
				$10::text[], $11::timestamptz[], $12::bool[], $13::text[], $14::bool[], $15::text[], $16::text[], $17::text[])
				AS u(id, email, name, user_id, livemode, placeholder, deleted, profile_event_created, profile_event_id,
				profile_event_type, last_payment_failed_at, needs_reconciliation, status, entitled, status_json, last_event_id, smoke_run)
			WHERE c.id = u.id`,
			ids, emails, names, users, live, placeholder, deleted, profileAt, profileIDs, profileTypes, failedAt, reconcile,
			statuses, entitled, statusJSON, lastEvents, smokeRuns)
	}
	if n := len(b.audits); n > 0 {
		cus, evIDs, evTypes, actors, actions := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		before, after := make([]*string, n), make([]*string, n)
		created := make([]*time.Time, n)
		for i, a := range b.audits {
			cus[i], evIDs[i], evTypes[i], actors[i], actions[i], created[i] = a.customer, a.eventID, a.eventType, a.actor, a.action, a.created
			before[i], after[i] = jsonText(a.before), jsonText(a.after)
		}
		t.tx.Queue("audit", `INSERT INTO billing.audit_log (customer_id, event_id, event_type, actor, action, before, after, event_created)
			SELECT c, e, ty, ac, an, b::jsonb, a::jsonb, cr FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
				$6::text[], $7::text[], $8::timestamptz[]) WITH ORDINALITY AS u(c, e, ty, ac, an, b, a, cr, n) ORDER BY n`,
			cus, evIDs, evTypes, actors, actions, before, after, created)
	}
	if len(b.outboxCustomers) > 0 {
		t.tx.Queue("outbox", `INSERT INTO billing.outbox (customer_id, payload)
			SELECT c, p FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS u(c, p, n) ORDER BY n`,
			b.outboxCustomers, b.outboxPayloads)
	}
	return nil
}

func jsonText(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// prefetch records every event of the batch in processed_events and locks
// and reads every customer, in one round trip. Rows are taken in key order
// (event ids, then customer ids) so that concurrent batches queue rather
// than deadlock.
func (t *txn) prefetch(items []BatchItem, idx []int) error {
	type rec struct{ id, typ, cus string }
	recs := make([]rec, 0, len(idx))
	live := map[string]bool{}
	for _, i := range idx {
		ev := items[i].Event
		recs = append(recs, rec{ev.GetEventId(), ev.GetType(), ev.GetCustomerId()})
		if _, ok := live[ev.GetCustomerId()]; !ok {
			live[ev.GetCustomerId()] = ev.GetLivemode()
		}
	}
	slices.SortFunc(recs, func(a, b rec) int { return strings.Compare(a.id, b.id) })
	ids, types, cus := make([]string, len(recs)), make([]string, len(recs)), make([]string, len(recs))
	for i, r := range recs {
		ids[i], types[i], cus[i] = r.id, r.typ, r.cus
	}
	cids := slices.Sorted(maps.Keys(live))
	lives := make([]bool, len(cids))
	for i, id := range cids {
		lives[i] = live[id]
	}
	br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO billing.processed_events (event_id, event_type, customer_id, outcome)
			SELECT e, ty, c, 'applied' FROM unnest($1::text[], $2::text[], $3::text[]) AS u(e, ty, c) ORDER BY e
			ON CONFLICT (event_id) DO NOTHING RETURNING event_id`, ids, types, cus)
		b.Queue(`INSERT INTO billing.customers (id, livemode) SELECT i, l FROM unnest($1::text[], $2::bool[]) AS u(i, l) ORDER BY i
			ON CONFLICT (id) DO NOTHING`, cids, lives)
		b.Queue(`SELECT `+customerColumns+` FROM billing.customers WHERE id = ANY($1) ORDER BY id FOR UPDATE`, cids)
		b.Queue(`SELECT `+subscriptionColumns+` FROM billing.subscriptions WHERE customer_id = ANY($1)`, cids)
		queuePurchaseFacts(b, cids)
	})
	if err != nil {
		return err
	}
	defer br.Close()
	bs := &batchState{fresh: map[string]bool{}, customers: make(map[string]*batchCustomer, len(cids))}
	fresh, err := collectIDs(br)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	for _, id := range fresh {
		bs.fresh[id] = true
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("create customers: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("lock customers: %w", err)
	}
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("lock customers: %w", err)
		}
		bs.customers[c.id] = &batchCustomer{row: c}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock customers: %w", err)
	}
	if rows, err = br.Query(); err != nil {
		return fmt.Errorf("load subscriptions: %w", err)
	}
	subs, err := scanSubscriptions(rows)
	if err != nil {
		return fmt.Errorf("load subscriptions: %w", err)
	}
	for _, s := range subs {
		if c := bs.customers[s.CustomerID]; c != nil {
			c.subs = append(c.subs, s)
		}
	}
	facts := map[string]*purchaseFacts{}
	if err := readPurchaseFacts(br, facts); err != nil {
		return err
	}
	for id, c := range bs.customers {
		c.facts = facts[id]
		if c.facts == nil {
			c.facts = &purchaseFacts{}
		}
	}
	if len(bs.customers) != len(cids) {
		return fmt.Errorf("lock customers: %d of %d found", len(bs.customers), len(cids))
	}
	t.batch = bs
	return br.Close()
}

// take is txn.begin for an event of the batch, without a round trip: it
// reports whether the event is new (not applied before, nor earlier in
// this batch) and, if so, hands its customer's row and subscriptions to t.
func (b *batchState) take(t *txn, eventID, customerID string) bool {
	if !b.fresh[eventID] {
		return false // applied before, or earlier in this batch
	}
	delete(b.fresh, eventID)
	c := b.customers[customerID]
	t.cus, t.subs = c.row, slices.Clone(c.subs)
	return true
}

// keep stores what the event that just applied left of its customer.
func (b *batchState) keep(t *txn) {
	if c := b.customers[t.cus.id]; c != nil {
		c.row, c.subs = t.cus, t.subs
	}
}
