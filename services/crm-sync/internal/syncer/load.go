package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
)

// A batch's statements are written per batch, not per customer: the
// locks, the processed_events check, the subscription snapshots, the reads
// of every customer's mirror and what the CRM holds of it, and the call
// log each go out as one statement over arrays. Postgres's cost is mostly
// per statement, and a burst of new customers is a batch of one event per
// customer.

// lockCustomers takes the advisory lock of every key, in the order given
// (the callers pass keys sorted, so two transactions never wait on each
// other in a circle), in one statement.
func lockCustomers(tx *pg.Tx, keys []string) {
	if len(keys) == 0 {
		return
	}
	// unnest yields the keys in array order, and the locks are taken as
	// the rows are produced.
	tx.Queue("lock customers "+keys[0], `SELECT count(pg_advisory_xact_lock(hashtext('crm-sync'), hashtext(k))) FROM unnest($1::text[]) AS u(k)`, keys)
}

// groupKeys are the groups' lock keys, sorted.
func groupKeys(groups []*group) []string {
	keys := make([]string, 0, len(groups))
	for _, g := range groups {
		keys = append(keys, g.key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// snapshots are stored subscription snapshots, read once per batch under
// FOR UPDATE and kept current as the batch's events store new ones. A nil
// value is a subscription read and not stored yet; a missing key one not
// read. The new ones wait in it until store queues them, one row each.
type snapshots struct {
	raw map[string][]byte
	// changed are the subscriptions the batch stored, with their customer.
	changed map[string]string
}

func newSnapshots() *snapshots {
	return &snapshots{raw: map[string][]byte{}, changed: map[string]string{}}
}

// get is the snapshot of id, and whether it was read; nil snapshots hold
// nothing.
func (s *snapshots) get(id string) ([]byte, bool) {
	if s == nil {
		return nil, false
	}
	raw, ok := s.raw[id]
	return raw, ok
}

// put keeps id's new snapshot for store.
func (s *snapshots) put(id, customerID string, raw []byte) {
	s.raw[id] = raw
	s.changed[id] = customerID
}

// store queues the subscriptions put since the last store, in one
// statement, and forgets that they changed.
func (s *snapshots) store(tx *pg.Tx) {
	ids := slices.Sorted(maps.Keys(s.changed))
	customers, raws := make([]string, len(ids)), make([][]byte, len(ids))
	for i, id := range ids {
		customers[i], raws[i] = s.changed[id], s.raw[id]
	}
	storeSubscriptions(tx, ids, customers, raws)
	clear(s.changed)
}

// loadSnapshots reads (and locks) the stored snapshots of ids, in one
// round trip that also carries whatever the transaction has queued.
func loadSnapshots(ctx context.Context, tx *pg.Tx, ids []string) (*snapshots, error) {
	out := newSnapshots()
	if len(ids) == 0 {
		return out, tx.Flush(ctx)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	br, err := tx.Send(ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT subscription_id, snapshot FROM crm.subscriptions WHERE subscription_id = ANY($1) ORDER BY subscription_id FOR UPDATE`, ids)
	})
	if err != nil {
		return nil, err
	}
	defer br.Close()
	err = eachRow(br, "subscriptions", func(rows pgx.Rows) error {
		var id string
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			return err
		}
		out.raw[id] = raw
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, ok := out.raw[id]; !ok {
			out.raw[id] = nil // read: none stored yet
		}
	}
	return out, br.Close()
}

// mirrorRead is what buildChanges reads for each customer: the mirror, and
// what the configured CRM holds.
type mirrorRead struct {
	st         *customerState
	contactID  string
	pushedHash string
	deals      map[string]struct{ id, assoc, hash string }
}

// loadCustomers reads the mirror of every customer in ids, and what the CRM
// holds of each, in one round trip of six statements.
func loadCustomers(ctx context.Context, tx *pg.Tx, provider string, ids []string) (map[string]*mirrorRead, error) {
	out := make(map[string]*mirrorRead, len(ids))
	br, err := tx.Send(ctx, func(b *pgx.Batch) {
		b.Queue(`
			SELECT customer_id, email, name, user_id, deleted, livemode, last_payment_failed_at, last_event_created, smoke_run
			FROM crm.customers WHERE customer_id = ANY($1)`, ids)
		b.Queue(`SELECT customer_id, snapshot FROM crm.subscriptions WHERE customer_id = ANY($1) ORDER BY customer_id, subscription_id`, ids)
		b.Queue(`
			SELECT p.customer_id, p.purchase_key, p.paid, p.awaiting_async AND NOT p.async_failed, p.amount,
				GREATEST(p.amount_refunded, COALESCE((SELECT sum(r.amount) FROM crm.refunds r
					WHERE r.status IN ('succeeded', 'pending') AND (
						(p.charge_id <> '' AND r.charge_id = p.charge_id) OR
						(p.payment_intent_id <> '' AND r.payment_intent_id = p.payment_intent_id))), 0))::bigint,
				p.refunded, p.currency, p.created,
				EXISTS (SELECT 1 FROM crm.disputes d WHERE d.lost AND (
					(d.charge_id <> '' AND d.charge_id = p.charge_id) OR
					(d.payment_intent_id <> '' AND d.payment_intent_id = p.payment_intent_id) OR
					(d.charge_id <> '' AND d.charge_id IN (SELECT c.charge_id FROM crm.charges c
						WHERE c.payment_intent_id <> '' AND c.payment_intent_id = p.payment_intent_id))))
			FROM crm.purchases p
			WHERE p.customer_id = ANY($1) AND p.from_checkout
			ORDER BY p.customer_id, p.purchase_key`, ids)
		b.Queue(`
			SELECT u.id, EXISTS (SELECT 1 FROM crm.disputes d WHERE NOT d.closed AND (
				d.charge_id IN (SELECT charge_id FROM crm.charges WHERE customer_id = u.id) OR
				(d.payment_intent_id <> '' AND (
					d.payment_intent_id IN (SELECT payment_intent_id FROM crm.charges WHERE customer_id = u.id) OR
					d.payment_intent_id IN (SELECT payment_intent_id FROM crm.purchases WHERE customer_id = u.id)))))
			FROM unnest($1::text[]) AS u(id)`, ids)
		b.Queue(`SELECT customer_id, crm_id, pushed_hash FROM crm.contacts WHERE provider = $1 AND customer_id = ANY($2)`, provider, ids)
		b.Queue(`SELECT customer_id, subscription_id, crm_id, associated_to, pushed_hash FROM crm.deals WHERE provider = $1 AND customer_id = ANY($2)`,
			provider, ids)
	})
	if err != nil {
		return nil, err
	}
	defer br.Close()
	if err := readMirrors(br, out); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if out[id] == nil {
			return nil, fmt.Errorf("load customer %s: %w", id, pgx.ErrNoRows)
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("load customers: %w", err)
	}
	return out, nil
}

// eachRow runs scan on every row of the batch's next result.
func eachRow(br pgx.BatchResults, what string, scan func(rows pgx.Rows) error) error {
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("load %s: %w", what, err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	return nil
}

// readMirrors reads loadCustomers' six results back in order.
func readMirrors(br pgx.BatchResults, out map[string]*mirrorRead) error {
	err := eachRow(br, "customers", func(rows pgx.Rows) error {
		var id string
		var failed, last *time.Time
		st := &customerState{}
		if err := rows.Scan(&id, &st.email, &st.name, &st.userID, &st.deleted, &st.livemode, &failed, &last, &st.smokeRun); err != nil {
			return err
		}
		if failed != nil {
			st.lastPaymentFailedAt = failed.UTC()
		}
		if last != nil {
			st.lastEventCreated = last.UTC()
		}
		out[id] = &mirrorRead{st: st, deals: map[string]struct{ id, assoc, hash string }{}}
		return nil
	})
	if err != nil {
		return err
	}
	err = eachRow(br, "subscriptions", func(rows pgx.Rows) error {
		var id string
		var raw []byte
		var s canonical.Subscription
		if err := rows.Scan(&id, &raw); err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("decode subscription of %s: %w", id, err)
		}
		if m := out[id]; m != nil {
			m.st.subs = append(m.st.subs, s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = eachRow(br, "purchases", func(rows pgx.Rows) error {
		var id string
		var p canonical.Purchase
		var at *time.Time
		if err := rows.Scan(&id, &p.ID, &p.Paid, &p.AwaitingAsync, &p.Amount, &p.AmountRefunded, &p.Refunded, &p.Currency, &at, &p.DisputeLost); err != nil {
			return err
		}
		if at != nil {
			p.Created = at.UTC()
		}
		if p.Paid {
			p.AwaitingAsync = false
		}
		if m := out[id]; m != nil {
			m.st.purchases = append(m.st.purchases, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = eachRow(br, "disputes", func(rows pgx.Rows) error {
		var id string
		var open bool
		if err := rows.Scan(&id, &open); err != nil {
			return err
		}
		if m := out[id]; m != nil {
			m.st.disputeOpen = open
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = eachRow(br, "contacts", func(rows pgx.Rows) error {
		var id, crmID, hash string
		if err := rows.Scan(&id, &crmID, &hash); err != nil {
			return err
		}
		if m := out[id]; m != nil {
			m.contactID, m.pushedHash = crmID, hash
		}
		return nil
	})
	if err != nil {
		return err
	}
	return eachRow(br, "deals", func(rows pgx.Rows) error {
		var id, sub, crmID, assoc, hash string
		if err := rows.Scan(&id, &sub, &crmID, &assoc, &hash); err != nil {
			return err
		}
		if m := out[id]; m != nil {
			m.deals[sub] = struct{ id, assoc, hash string }{crmID, assoc, hash}
		}
		return nil
	})
}

// callLog gathers a transaction's sync_log rows, written by queue as one
// statement.
type callLog struct {
	eventIDs, eventTypes, customers, providers, ops, objects, outcomes, details []string
	statuses, durations, deliveries                                             []int32
}

func (l *callLog) add(ev *billingv1.BillingEvent, customerID, provider string, delivery uint64, calls []crm.Call) {
	for _, c := range calls {
		l.eventIDs, l.eventTypes, l.customers = append(l.eventIDs, ev.GetEventId()), append(l.eventTypes, ev.GetType()), append(l.customers, customerID)
		l.providers, l.ops, l.objects = append(l.providers, provider), append(l.ops, c.Op), append(l.objects, c.Object)
		l.outcomes, l.details = append(l.outcomes, c.Outcome), append(l.details, redact.Text(c.Detail))
		l.statuses = append(l.statuses, int32(c.Status))                                    // #nosec G115 -- an HTTP status
		l.durations = append(l.durations, int32(min(c.Duration/time.Millisecond, 1<<31-1))) // #nosec G115 -- bounded just before
		l.deliveries = append(l.deliveries, int32(min(delivery, 1<<31-1)))                  // #nosec G115 -- bounded just before
	}
}

// queue writes the gathered rows, in the order they were added.
func (l *callLog) queue(tx *pg.Tx) {
	if len(l.eventIDs) == 0 {
		return
	}
	tx.Queue("sync log "+l.eventIDs[0], `
		INSERT INTO crm.sync_log (event_id, event_type, customer_id, provider, call, object_id, status, outcome, duration_ms, delivery, detail)
		SELECT e, t, c, p, o, ob, s, oc, d, dl, de FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::int[], $8::text[], $9::int[], $10::int[], $11::text[]) WITH ORDINALITY AS u(e, t, c, p, o, ob, s, oc, d, dl, de, n) ORDER BY n`,
		l.eventIDs, l.eventTypes, l.customers, l.providers, l.ops, l.objects, l.statuses, l.outcomes, l.durations, l.deliveries, l.details)
}
