package syncer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/telemetry"
	"github.com/launchready/launchready/pkg/vendorhttp"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
)

// entry is one event of a batch and what became of it.
type entry struct {
	ev       *billingv1.BillingEvent
	delivery uint64
	// ctx carries the event's own span, so each event keeps its trace.
	ctx   context.Context
	span  trace.Span
	facts canonical.Facts
	// customerID is the customer the event was found to belong to, for
	// its log lines; empty until then.
	customerID string

	outcome string
	err     error
	calls   int
}

func (e *entry) done() bool { return e.outcome != "" || e.err != nil }

// logger is log with the entry's fields. It is built only for a line that
// is written: its fields are encoded when it is built, and at the default
// level most entries write none.
func (e *entry) logger(log *slog.Logger) *slog.Logger {
	attrs := []any{slog.String("event_id", e.ev.GetEventId()), slog.Uint64("delivery", e.delivery)}
	if e.customerID != "" {
		attrs = append(attrs, slog.String("customer_id", e.customerID))
	}
	return log.With(attrs...)
}

// group is the events of one customer in a batch (or, for an event whose
// customer is not known yet, of the object it names), in delivery order.
// They fold into one derived document and one push.
type group struct {
	key        string
	customerID string
	entries    []*entry
	// in is step 1's result for the group's pending entries.
	in pushIntent
	// resync marks a staff resync (see Resync): its one entry names the
	// customer's newest event, which is not applied again; the documents
	// derived from the mirror are pushed whether or not they changed, and
	// no event is recorded as processed.
	resync bool
}

// pending are the entries still waiting for an outcome.
func (g *group) pending() []*entry {
	var out []*entry
	for _, e := range g.entries {
		if !e.done() {
			out = append(out, e)
		}
	}
	return out
}

// finish gives every pending entry the outcome, or the error.
func (g *group) finish(outcome string, err error) {
	for _, e := range g.pending() {
		if err != nil {
			e.err = err
		} else {
			e.outcome = outcome
		}
	}
}

// pushIntent is step 1's result: a push under a recorded intent, or
// nothing to push (change nil).
type pushIntent struct {
	id     string
	change *crm.Change
	// newest is the entry the change is named after: the newest event.
	newest *entry
}

// SyncBatch syncs the deliveries the consumer hands over at once: the
// events of each customer fold into one derived document, and every
// customer's document goes out in the same vendor calls (see
// crm.Adapter.Sync). It returns one error per delivery, with the bus's
// meaning; a record the CRM refuses fails its customer's deliveries alone.
func (s *Syncer) SyncBatch(ctx context.Context, ds []*bus.Delivery) []error {
	errs := make([]error, len(ds))
	entries := make([]*entry, 0, len(ds))
	index := make([]int, 0, len(ds))
	for i, d := range ds {
		if d == nil || d.Event == nil || d.Event.GetEventId() == "" {
			errs[i] = bus.Permanent(errors.New("crm-sync: delivery without an event"))
			continue
		}
		entries = append(entries, &entry{ev: d.Event, delivery: d.Delivered, ctx: d.Context()})
		index = append(index, i)
	}
	s.sync(ctx, entries)
	for j, e := range entries {
		errs[index[j]] = e.err
		if e.err == nil && e.outcome == OutcomeDuplicate {
			ds[index[j]].MarkDuplicate()
		}
	}
	return errs
}

// SyncEvent applies ev and pushes the resulting change, as a batch of one.
// It returns the outcome ("synced", "unchanged", "ignored", "duplicate",
// "customer_unknown") or an error the bus knows how to retry.
func (s *Syncer) SyncEvent(ctx context.Context, ev *billingv1.BillingEvent, delivery uint64) (string, error) {
	e := &entry{ev: ev, delivery: delivery, ctx: ctx}
	s.sync(ctx, []*entry{e})
	return e.outcome, e.err
}

// sync runs a batch: classify, group by customer, take the customers'
// turns, then intent, call and outcome for all groups at once.
func (s *Syncer) sync(ctx context.Context, entries []*entry) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	for _, e := range entries {
		e.ctx, e.span = s.o.Tracer.Start(e.ctx, "crm-sync "+e.ev.GetType(), trace.WithAttributes(
			telemetry.AttrEventID.String(e.ev.GetEventId()),
			telemetry.AttrEventType.String(e.ev.GetType()),
		))
		e.facts = canonical.Classify(e.ev)
		if e.facts.Kind == canonical.KindIgnored {
			e.outcome = OutcomeIgnored
		}
	}
	s.pass(ctx, entries)
	// An event whose charge was tied to its customer while this pass
	// looked it up is synced again at once, as that customer's.
	var again []*entry
	for _, e := range entries {
		if errors.Is(e.err, errCustomerNowKnown) {
			e.err = nil
			again = append(again, e)
		}
	}
	if len(again) > 0 {
		s.pass(ctx, again)
	}
	for _, e := range entries {
		s.report(e)
	}
}

// pass groups the entries by customer, takes the customers' turns, and
// runs intent, call and outcome for all groups at once.
func (s *Syncer) pass(ctx context.Context, entries []*entry) {
	byKey := map[string]*group{}
	var groups []*group
	linked := batchLinks(entries)
	for _, e := range entries {
		if e.done() {
			continue
		}
		customerID, err := s.resolve(ctx, e, linked)
		if err != nil {
			e.err = err
			continue
		}
		if customerID != "" {
			e.span.SetAttributes(telemetry.AttrCustomerID.String(customerID))
			e.customerID = customerID
		}
		key := lockKey(e.ev, customerID)
		g := byKey[key]
		if g == nil {
			g = &group{key: key, customerID: customerID}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.entries = append(g.entries, e)
	}
	// Turns are taken, and advisory locks too, in key order, so two
	// batches never wait on each other in a circle.
	sort.Slice(groups, func(i, j int) bool { return groups[i].key < groups[j].key })
	unlock, err := s.takeTurns(ctx, groups)
	if err != nil {
		for _, g := range groups {
			g.finish("", fmt.Errorf("wait for the customer's turn: %w", err))
		}
		return
	}
	defer unlock()
	s.run(ctx, groups)
}

// batchLinks maps the charges and payment intents that the batch's own
// events tie to a customer, so that a dispute or refund handed over with
// the charge it names joins that customer's group, as it would have had
// the charge been synced before it.
func batchLinks(entries []*entry) map[string]string {
	links := map[string]string{}
	for _, e := range entries {
		cus := e.ev.GetCustomerId()
		if cus == "" || e.done() {
			continue
		}
		for _, id := range []string{e.facts.Link.ChargeID, e.facts.Link.PaymentIntentID} {
			if id != "" {
				links[id] = cus
			}
		}
	}
	return links
}

// resolve finds the customer of e: named by the event, tied to it by
// another event of the batch, or known from the mirror.
func (s *Syncer) resolve(ctx context.Context, e *entry, linked map[string]string) (string, error) {
	if id := e.ev.GetCustomerId(); id != "" {
		return id, nil
	}
	for _, id := range []string{e.ev.GetChargeId(), e.ev.GetPaymentIntentId()} {
		if cus := linked[id]; id != "" && cus != "" {
			return cus, nil
		}
	}
	return resolveCustomer(ctx, s.o.Pool, e.ev)
}

// takeTurns waits for each customer's turn within this process.
func (s *Syncer) takeTurns(ctx context.Context, groups []*group) (func(), error) {
	var held []func()
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
	for _, g := range groups {
		unlock, err := s.locks.lock(ctx, g.key)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, unlock)
	}
	return release, nil
}

// report logs an entry's outcome and ends its span.
func (s *Syncer) report(e *entry) {
	defer e.span.End()
	if e.outcome == OutcomeIgnored {
		if s.o.Logger.Enabled(e.ctx, slog.LevelDebug) {
			e.logger(s.o.Logger).DebugContext(e.ctx, "event ignored", slog.String("action", e.ev.GetType()), slog.String("outcome", OutcomeIgnored))
		}
		e.span.SetAttributes(attribute.String("outcome", OutcomeIgnored))
		return
	}
	if e.err != nil {
		e.err = fmt.Errorf("crm sync %s: %w", e.ev.GetEventId(), e.err)
		e.logger(s.o.Logger).WarnContext(e.ctx, "crm sync failed", slog.String("action", e.ev.GetType()),
			slog.String("outcome", failureOutcome(e.err)), slog.String("error", redact.Error(e.err)))
		e.span.SetStatus(codes.Error, redact.Error(e.err))
		return
	}
	e.span.SetAttributes(attribute.String("outcome", e.outcome))
	// One line per event at debug: at a burst's rate, info lines per event
	// cost more than the sync they report. Failures stay at warn.
	if s.o.Logger.Enabled(e.ctx, slog.LevelDebug) {
		e.logger(s.o.Logger).DebugContext(e.ctx, "crm sync", slog.String("action", e.ev.GetType()), slog.String("outcome", e.outcome), slog.Int("calls", e.calls))
	}
}

func failureOutcome(err error) string {
	switch {
	case errors.Is(err, vendorhttp.ErrDeferred):
		return "deferred"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case bus.IsPermanent(err):
		return "rejected"
	}
	return "retry"
}

// maxRepairs bounds the repair pushes one delivery makes while other
// deliveries keep overlapping it; past it the delivery fails and the bus
// retries it later.
const maxRepairs = 3

// errRepairsExhausted ends a delivery whose repairs kept being overlapped.
var errRepairsExhausted = errors.New("pushes for the customer kept overlapping")

// verdictRepair is crm.settle_push's verdict on a push that settled last
// after overlapping others; "clean" and "not_last" need nothing more (see
// the schema).
const verdictRepair = "repair"

// run takes groups through intent, call and outcome. A push that settles
// last after overlapping another is made again from the current state
// ("repair"), before its events count as processed.
func (s *Syncer) run(ctx context.Context, groups []*group) {
	if lost, err := s.intents(ctx, groups, false); err != nil {
		s.split(ctx, groups, lost, err)
		return
	}
	pushing := needPush(groups)
	for round := 1; len(pushing) > 0; round++ {
		pushing = s.push(ctx, pushing)
		if len(pushing) == 0 {
			return
		}
		if round > maxRepairs {
			for _, g := range pushing {
				g.finish("", errRepairsExhausted)
			}
			return
		}
		for _, g := range pushing {
			for _, e := range g.pending() {
				e.span.AddEvent("crm push overlapped another; pushing the current state again")
			}
		}
		if _, err := s.intents(ctx, pushing, true); err != nil {
			for _, g := range pushing {
				g.finish("", err)
			}
			return
		}
		pushing = needPush(pushing)
	}
}

func needPush(groups []*group) []*group {
	var out []*group
	for _, g := range groups {
		if g.in.change != nil {
			out = append(out, g)
		}
	}
	return out
}

// split runs a batch whose intent transaction failed in smaller parts,
// each customer alone and then each event alone, so that one event the
// mirror cannot take fails alone. A lost connection fails them all: no
// event is to blame for an outage.
func (s *Syncer) split(ctx context.Context, groups []*group, lost bool, err error) {
	switch {
	case lost || ctx.Err() != nil:
		for _, g := range groups {
			g.finish("", err)
		}
	case len(groups) > 1:
		for _, g := range groups {
			s.run(ctx, []*group{g})
		}
	case len(groups[0].pending()) > 1:
		g := groups[0]
		for _, e := range g.pending() {
			s.run(ctx, []*group{{key: g.key, customerID: g.customerID, entries: []*entry{e}}})
		}
	default:
		groups[0].finish("", err)
	}
}

// intents runs step 1 for every group in one transaction. On a repair
// round the events are in the mirror already: only the derivation and the
// intent are redone.
func (s *Syncer) intents(ctx context.Context, groups []*group, repair bool) (bool, error) {
	before := make([][]*entry, len(groups))
	for i, g := range groups {
		before[i] = g.pending()
	}
	lost, err := pg.RunTx(ctx, s.o.Pool, func(tx *pg.Tx) error {
		return s.intentTx(ctx, tx, groups, repair)
	})
	if err != nil {
		// Nothing of it committed: the outcomes it decided are void.
		for i, g := range groups {
			g.in = pushIntent{}
			for _, e := range before[i] {
				e.outcome, e.err = "", nil
			}
		}
	}
	return lost, err
}

// intentTx is step 1 for the groups, in a few round trips for the whole
// batch: the customers' locks, the processed_events check and the stored
// snapshots of the batch's subscriptions; then the new events fold into
// the mirror, with every customer's reads; then each customer's events are
// recorded (nothing the CRM lacks) or a push intent is opened. Outcomes
// decided here are set on the entries only once the transaction commits
// (see intents).
func (s *Syncer) intentTx(ctx context.Context, tx *pg.Tx, groups []*group, repair bool) error {
	// The batch's reads take arrays of one to hundreds of ids. A generic
	// plan, made once for every length (and often while the tables were
	// still empty), scans whole tables for them: each is planned for its
	// own array instead, which costs far less than one scan. The writes in
	// between, a few per customer with one key each, keep Postgres's
	// default (planCachedWrites), which soon settles on one generic plan
	// instead of planning each of them again.
	tx.Queue("plan for the batch", planEachRead)
	lockCustomers(tx, groupKeys(groups))
	work := make([][]*entry, len(groups))
	var ids, subIDs []string
	for i, g := range groups {
		g.in = pushIntent{}
		work[i] = g.pending()
		if repair || g.resync {
			continue
		}
		// A batch may hold one event twice (a Stripe retry stored again
		// outside the duplicate window): the second is a duplicate.
		seenHere := map[string]bool{}
		var fresh []*entry
		for _, e := range work[i] {
			if seenHere[e.ev.GetEventId()] {
				e.outcome = OutcomeDuplicate
				continue
			}
			seenHere[e.ev.GetEventId()] = true
			fresh = append(fresh, e)
			ids = append(ids, e.ev.GetEventId())
			if g.customerID != "" && e.facts.Kind == canonical.KindSubscription && e.ev.GetSubscriptionId() != "" {
				subIDs = append(subIDs, e.ev.GetSubscriptionId())
			}
		}
		work[i] = fresh
	}
	var seen *[]string
	if len(ids) > 0 {
		tx.QueueScan("check processed "+ids[0],
			`SELECT coalesce(array_agg(event_id), '{}') FROM crm.processed_events WHERE event_id = ANY($1)`, []any{ids}, &seen)
	}
	snaps, err := loadSnapshots(ctx, tx, subIDs)
	if err != nil {
		return err
	}
	tx.Queue("plan the writes", planCachedWrites)
	var done []string
	if seen != nil {
		done = *seen
	}
	var calls callLog
	var derive, apply, unresolved []int
	var customers []string
	for i, g := range groups {
		if len(work[i]) == 0 {
			continue
		}
		if !repair && !g.resync {
			if g.customerID == "" {
				unresolved = append(unresolved, i)
				continue
			}
			// An event processed before changes nothing: it is not
			// folded in again.
			if work[i] = dropSeen(work[i], done); len(work[i]) == 0 {
				continue
			}
			apply = append(apply, i)
		}
		derive = append(derive, i)
		customers = append(customers, g.customerID)
	}
	if err := s.applyToMirror(ctx, tx, groups, work, apply, snaps); err != nil {
		return err
	}
	// After the batch's own charges are tied to their customers: an event
	// kept on one of them is synced again as that customer's.
	for _, i := range unresolved {
		if err := s.keepUnresolved(ctx, tx, groups[i], work[i], done); err != nil {
			return err
		}
	}
	if len(derive) > 0 {
		tx.Queue("plan the reads", planEachRead)
		reads, err := loadCustomers(ctx, tx, s.o.Adapter.Name(), customers)
		if err != nil {
			return err
		}
		tx.Queue("plan the writes", planCachedWrites)
		for _, i := range derive {
			g := groups[i]
			newest := newestOf(work[i])
			change := s.deriveChange(reads[g.customerID], g.customerID, newest.ev, newest.delivery)
			s.openIntent(ctx, tx, g, work[i], change, repair, &calls)
		}
	}
	calls.queue(tx)
	return nil
}

// applyToMirror folds the events work[i] of the groups apply into the
// mirror: every customer's row in one statement, then each event's facts,
// then the subscriptions they changed in one statement.
func (s *Syncer) applyToMirror(ctx context.Context, tx *pg.Tx, groups []*group, work [][]*entry, apply []int, snaps *snapshots) error {
	if len(apply) == 0 {
		return nil
	}
	ensured := make([]string, len(apply))
	evs := make([][]*billingv1.BillingEvent, len(apply))
	for n, i := range apply {
		ensured[n] = groups[i].customerID
		for _, e := range work[i] {
			evs[n] = append(evs[n], e.ev)
		}
	}
	ensureCustomers(tx, ensured, evs)
	for _, i := range apply {
		for _, e := range work[i] {
			applied, err := applyEvent(ctx, tx, e.facts, groups[i].customerID, e.ev, snaps)
			if err != nil {
				return err
			}
			e.span.SetAttributes(attribute.String("mirror", applied))
		}
	}
	snaps.store(tx)
	return nil
}

// The plan cache modes of the intent transaction (see intentTx).
const (
	planEachRead     = `SET LOCAL plan_cache_mode = force_custom_plan`
	planCachedWrites = `SET LOCAL plan_cache_mode = auto`
)

// openIntent records pending as processed when the CRM lacks nothing of
// change, or opens a push intent for it.
func (s *Syncer) openIntent(ctx context.Context, tx *pg.Tx, g *group, pending []*entry, change *crm.Change, repair bool, calls *callLog) {
	provider := s.o.Adapter.Name()
	newest := newestOf(pending)
	if g.resync {
		forcePush(change)
	}
	if !needsPush(change, s.o.Adapter.TracksRecords()) {
		// Pushes still in flight derived their documents before these
		// events: whichever settles last checks them again.
		tx.Queue("overlap pushes of "+g.customerID, `SELECT crm.overlap_pushes($1, $2)`, provider, g.customerID)
		outcome := OutcomeUnchanged
		if repair {
			// Another push settled the current state meanwhile.
			outcome = OutcomeSynced
		}
		calls.add(newest.ev, g.customerID, provider, newest.delivery, []crm.Call{{Op: "none", Object: g.customerID, Outcome: OutcomeUnchanged}})
		markProcessed(tx, pending, g.customerID, outcome)
		for _, e := range pending {
			e.outcome = outcome
		}
		return
	}
	g.in = pushIntent{id: newIntentID(), change: change, newest: newest}
	// The intent lives as long as this delivery may: past its deadline no
	// call of it can be in flight.
	ttl := s.o.Timeout
	if dl, ok := ctx.Deadline(); ok {
		ttl = time.Until(dl)
	}
	tx.Queue("open push of "+g.customerID, `SELECT crm.open_push($1, $2, $3, $4, $5)`,
		g.in.id, provider, g.customerID, newest.ev.GetEventId(), (ttl + intentMargin).Seconds())
}

// errCustomerNowKnown marks an event whose charge was tied to a customer
// after the batch looked it up: sync runs it again as that customer's.
var errCustomerNowKnown = errors.New("the charge it names was just tied to a customer; retrying as that customer's event")

// keepUnresolved keeps disputes and refunds on a charge not seen yet, so
// the customer's next event (which names the charge) finds them. It holds
// the payment's lock, which tying a charge to a customer takes too
// (lockPayment), and looks the customer up again under it: either the tie
// committed first, and the events are retried as the customer's, or the
// tie waits for this commit and its derivation sees them.
func (s *Syncer) keepUnresolved(ctx context.Context, tx *pg.Tx, g *group, pending []*entry, seen []string) error {
	ev := pending[0].ev
	lockPayment(tx, ev.GetChargeId(), ev.GetPaymentIntentId())
	customerID, err := resolveCustomer(ctx, tx, ev)
	if err != nil {
		return err
	}
	if customerID != "" {
		for _, e := range pending {
			e.err = errCustomerNowKnown
		}
		return nil
	}
	for _, e := range pending {
		switch e.facts.Kind {
		case canonical.KindDispute:
			applyDispute(tx, e.ev, e.facts.Dispute)
		case canonical.KindRefund:
			applyRefund(tx, e.ev)
		}
	}
	if err := tx.Flush(ctx); err != nil {
		return err
	}
	pending = dropSeen(pending, seen)
	markProcessed(tx, pending, "", OutcomeUnresolved)
	for _, e := range pending {
		e.outcome = OutcomeUnresolved
	}
	return nil
}

// dropSeen marks the entries whose events are processed already as
// duplicates and returns the others.
func dropSeen(entries []*entry, seen []string) []*entry {
	if len(seen) == 0 {
		return entries
	}
	done := make(map[string]bool, len(seen))
	for _, id := range seen {
		done[id] = true
	}
	var out []*entry
	for _, e := range entries {
		if done[e.ev.GetEventId()] {
			e.outcome = OutcomeDuplicate
			continue
		}
		out = append(out, e)
	}
	return out
}

// newestOf is the entry whose event Stripe created last (the later
// delivery on a tie): the change is named after it.
func newestOf(entries []*entry) *entry {
	best := entries[0]
	for _, e := range entries[1:] {
		if !created(e.ev).Before(created(best.ev)) {
			best = e
		}
	}
	return best
}

// push makes the call for the groups' changes and records its outcome. It
// returns the groups whose push must be repaired.
func (s *Syncer) push(ctx context.Context, groups []*group) []*group {
	chs := make([]*crm.Change, len(groups))
	for i, g := range groups {
		chs[i] = g.in.change
	}
	callCtx, end := s.callContext(ctx, groups)
	outs := s.o.Adapter.Sync(callCtx, chs)
	end()
	for i, g := range groups {
		n := len(outs[i].Result.Calls)
		for _, e := range g.pending() {
			e.calls += n
		}
		if outs[i].Err == nil && s.o.AfterPush != nil {
			if err := s.o.AfterPush(g.in.newest.ev.GetEventId()); err != nil {
				outs[i].Err = err
				outs[i].Result.Calls = append(outs[i].Result.Calls, crm.Call{Op: "record outcome", Object: g.customerID, Outcome: "rolled_back"})
			}
		}
	}
	verdicts, err := s.settle(ctx, groups, outs)
	var repair []*group
	for i, g := range groups {
		switch {
		case outs[i].Err != nil:
			g.finish("", outs[i].Err)
		case err != nil:
			// The call landed; the redelivery makes it again, which is
			// harmless (see the package comment).
			g.finish("", fmt.Errorf("record outcome: %w", err))
		case verdicts[i] == verdictRepair:
			repair = append(repair, g)
		default:
			for _, e := range g.pending() {
				e.span.SetAttributes(attribute.String("push", verdicts[i]))
			}
			g.finish(OutcomeSynced, nil)
		}
	}
	return repair
}

// callContext is the context of the vendor call: the event's own when the
// call is for one event, so its trace shows the call; otherwise a span of
// its own, linked to every event it carries.
func (s *Syncer) callContext(ctx context.Context, groups []*group) (context.Context, func()) {
	var links []trace.Link
	for _, g := range groups {
		for _, e := range g.pending() {
			links = append(links, trace.Link{SpanContext: e.span.SpanContext()})
		}
	}
	if len(links) == 1 {
		return trace.ContextWithSpan(ctx, groups[0].pending()[0].span), func() {}
	}
	ctx, span := s.o.Tracer.Start(ctx, "crm-sync push", trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("customers", len(groups)), attribute.Int("events", len(links))))
	return ctx, func() { span.End() }
}

// settle is step 3 for every group in one transaction: a successful push
// records the ids, the documents now in the CRM, the calls and its events;
// a failed one keeps the ids it learned (they stay true whatever happens to
// the events) and its calls, and leaves the events for the bus to retry.
func (s *Syncer) settle(ctx context.Context, groups []*group, outs []crm.Outcome) ([]string, error) {
	ctx, cancel := outcomeContext(ctx)
	defer cancel()
	verdicts := make([]string, len(groups))
	provider := s.o.Adapter.Name()
	err := pg.InTx(ctx, s.o.Pool, func(tx *pg.Tx) error {
		lockCustomers(tx, groupKeys(groups))
		var calls callLog
		for i, g := range groups {
			res, newest := outs[i].Result, g.in.newest
			if outs[i].Err != nil {
				sent := false
				for _, c := range res.Calls {
					sent = sent || (c.Outcome != vendorhttp.OutcomeDeferred && c.Op != "record outcome")
				}
				if res.ContactCRMID != "" || len(res.Deals) > 0 {
					s.remember(tx, g.in.change, res, false)
				}
				calls.add(newest.ev, g.customerID, provider, newest.delivery, res.Calls)
				tx.Queue("abandon push of "+g.customerID, `SELECT crm.abandon_push($1, $2, $3, $4)`,
					g.in.id, provider, g.customerID, sent)
				continue
			}
			s.remember(tx, g.in.change, res, true)
			calls.add(newest.ev, g.customerID, provider, newest.delivery, res.Calls)
			ids, types := eventIDs(g.pending())
			if g.resync {
				ids, types = []string{}, []string{}
			}
			tx.QueueScan("settle push of "+g.customerID, `SELECT crm.settle_push($1, $2, $3, $4, $5, $6)`,
				[]any{g.in.id, provider, g.customerID, ids, types, OutcomeSynced}, &verdicts[i])
		}
		calls.queue(tx)
		return nil
	})
	return verdicts, err
}

// intentMargin outlasts the delivery's deadline by the time a cancelled
// request takes to give up.
const intentMargin = 5 * time.Second

// lockCustomers (see load.go) serialises the intent and outcome
// transactions of one customer (or object, see lockKey) across processes;
// the lock is held for a transaction, never across a CRM call.

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
