// Package drift compares billing-state's subscriptions with Stripe's and
// repairs the differences: the safety net under webhooks that never
// arrived.
//
// Only what Stripe can contradict is compared: the status of each
// subscription Stripe lists (GET /v1/subscriptions?status=all, paged)
// against the one stored for it, both read as canonical statuses. A
// subscription Stripe has and billing-state lacks is drift too. Customers
// without subscriptions (one-time buyers), refunds and disputes are not
// compared, nor are subscriptions only billing-state knows (synthetic smoke
// and test customers), Stripe subscriptions marked with the metadata key
// stripeevent.SmokeMetadataKey, or any subscription of a customer
// billing-state holds as a smoke test's (CustomerStatus.smoke_run, set by
// the events of `launchready smoke` whatever Stripe's objects carry): none
// of them can show as drift.
//
// A repair reads the customer's subscriptions from Stripe now and applies
// each as a snapshot (stripeevent.Snapshot) through the same ordering rules
// as any event: dated at the read, it is newer than every event created
// before it, so a late webhook cannot undo it. Each repair writes an
// audit_log row with its actor and the status before and after.
package drift

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// Drift is one subscription whose status differs.
type Drift struct {
	CustomerID     string
	SubscriptionID string
	// Ours and Stripe are canonical status names ("active", "canceled");
	// Ours is "missing" when billing-state has no such subscription.
	Ours, Stripe string
}

// Checker compares and repairs.
type Checker struct {
	api   *stripeapi.Client
	store *state.Store
	log   *slog.Logger

	customers prometheus.Gauge
	checks    *prometheus.CounterVec
}

// New returns a checker with its metrics registered in reg:
// lr_billing_drift_customers and lr_billing_drift_checks_total{outcome}.
func New(api *stripeapi.Client, store *state.Store, reg prometheus.Registerer, log *slog.Logger) (*Checker, error) {
	c := &Checker{api: api, store: store, log: log,
		customers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lr_billing_drift_customers",
			Help: "Customers whose subscription status differed from Stripe's at the last drift check.",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_billing_drift_checks_total",
			Help: "Drift checks run, by outcome (clean, drift, error).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		for _, m := range []prometheus.Collector{c.customers, c.checks} {
			if err := reg.Register(m); err != nil {
				return nil, fmt.Errorf("drift metrics: %w", err)
			}
		}
	}
	for _, o := range []string{"clean", "drift", "error"} {
		c.checks.WithLabelValues(o)
	}
	return c, nil
}

// Check lists Stripe's subscriptions and returns those that differ, ordered
// by customer, exports the count of customers with drift, and keeps the
// check's result in billing.drift_checks.
func (c *Checker) Check(ctx context.Context) ([]Drift, error) {
	started := time.Now()
	out, err := c.check(ctx)
	if err != nil {
		c.checks.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			// A check cut short by shutdown or its caller found nothing
			// to keep.
			c.record(ctx, state.DriftCheck{StartedAt: started, Outcome: "error", Error: redact.Error(err)})
		}
		return nil, err
	}
	customers := map[string]bool{}
	for _, d := range out {
		customers[d.CustomerID] = true
	}
	c.customers.Set(float64(len(customers)))
	outcome := "clean"
	if len(out) > 0 {
		outcome = "drift"
	}
	c.checks.WithLabelValues(outcome).Inc()
	c.record(ctx, state.DriftCheck{StartedAt: started, Outcome: outcome, Customers: len(customers), Subscriptions: len(out)})
	return out, nil
}

// maxRecordedError bounds the error text a failed check keeps.
const maxRecordedError = 1024

// record keeps a check's result. A failure to keep it is logged and does
// not change the check's own result: the metrics and the caller have it.
func (c *Checker) record(ctx context.Context, r state.DriftCheck) {
	r.FinishedAt = time.Now()
	if len(r.Error) > maxRecordedError {
		r.Error = strings.ToValidUTF8(r.Error[:maxRecordedError], "")
	}
	if err := c.store.RecordDriftCheck(ctx, r); err != nil {
		c.log.WarnContext(ctx, "drift check not recorded", "action", "drift_check", "outcome", r.Outcome, "error", redact.Error(err))
	}
}

type listedSubscription struct {
	ID       string            `json:"id"`
	Status   string            `json:"status"`
	Customer string            `json:"customer"`
	Metadata map[string]string `json:"metadata"`
}

func (c *Checker) check(ctx context.Context) ([]Drift, error) {
	// Ours first: a subscription that changes while Stripe is listed then
	// shows Stripe's newer state against ours, not the other way round.
	ours, err := c.store.Subscriptions(ctx)
	if err != nil {
		return nil, err
	}
	smoke, err := c.store.SmokeCustomers(ctx)
	if err != nil {
		return nil, err
	}
	var out []Drift
	err = c.api.ListObjects(ctx, stripeapi.Subscriptions, stripeapi.ObjectQuery{}, func(objs []stripeapi.Object) error {
		for _, o := range objs {
			sub, err := readSubscription(o)
			if err != nil {
				return err
			}
			mine, ok := ours[sub.ID]
			if _, marked := sub.Metadata[stripeevent.SmokeMetadataKey]; marked || sub.Customer == "" ||
				smoke[sub.Customer] || (ok && smoke[mine.CustomerID]) {
				continue
			}
			theirs := canonical.StatusName(canonical.SubscriptionStatus(sub.Status))
			switch {
			case !ok:
				out = append(out, Drift{CustomerID: sub.Customer, SubscriptionID: sub.ID, Ours: "missing", Stripe: theirs})
			case storedStatus(mine) != theirs:
				out = append(out, Drift{CustomerID: mine.CustomerID, SubscriptionID: sub.ID, Ours: storedStatus(mine), Stripe: theirs})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("drift check: %w", err)
	}
	slices.SortFunc(out, func(a, b Drift) int {
		return strings.Compare(a.CustomerID+" "+a.SubscriptionID, b.CustomerID+" "+b.SubscriptionID)
	})
	return out, nil
}

func storedStatus(s state.StoredSubscription) string {
	if s.Deleted {
		return canonical.StatusName(canonical.SubscriptionStatus("canceled"))
	}
	return canonical.StatusName(canonical.SubscriptionStatus(s.Status))
}

func readSubscription(o stripeapi.Object) (listedSubscription, error) {
	var sub listedSubscription
	if err := json.Unmarshal(o.Raw, &sub); err != nil {
		return sub, fmt.Errorf("subscription %s: %w", o.ID, err)
	}
	return sub, nil
}

// Repair applies Stripe's current subscriptions of customerID as snapshots
// with actor in the audit log. It returns how many changed stored state
// (a snapshot of an unchanged subscription is recorded as stale or as a
// duplicate).
func (c *Checker) Repair(ctx context.Context, customerID, actor string) (int, error) {
	at := time.Now()
	applied := 0
	err := c.api.ListObjects(ctx, stripeapi.Subscriptions, stripeapi.ObjectQuery{Customer: customerID}, func(objs []stripeapi.Object) error {
		for _, o := range objs {
			ev, err := stripeevent.Snapshot(o.Raw, at)
			if err != nil {
				return err
			}
			ev.ReceivedAt = timestamppb.New(at)
			res, err := c.store.ApplyEvent(ctx, ev, state.ApplyOptions{Actor: actor})
			if err != nil {
				return err
			}
			if res.Outcome == state.OutcomeApplied {
				applied++
			}
			c.log.InfoContext(ctx, "drift repaired from stripe", "customer_id", customerID, "subscription_id", o.ID,
				"event_id", ev.GetEventId(), "action", state.ActionRepair, "actor", actor, "outcome", string(res.Outcome))
		}
		return nil
	})
	if err != nil {
		return applied, fmt.Errorf("repair %s: %w", customerID, err)
	}
	return applied, nil
}

// RepairAll repairs every customer of drifts, once each.
func (c *Checker) RepairAll(ctx context.Context, drifts []Drift, actor string) error {
	done := map[string]bool{}
	for _, d := range drifts {
		if done[d.CustomerID] {
			continue
		}
		done[d.CustomerID] = true
		if _, err := c.Repair(ctx, d.CustomerID, actor); err != nil {
			return err
		}
	}
	return nil
}

// Schedule checks every interval until ctx ends, logging what it finds.
// The schedule only detects: lr_billing_drift_customers and its alert bring
// a person to look, and `launchready drift --fix` repairs.
func (c *Checker) Schedule(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		drifts, err := c.Check(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			c.log.WarnContext(ctx, "drift check failed", "action", "drift_check", "outcome", "error", "error", err.Error())
		case len(drifts) > 0:
			for _, d := range drifts {
				c.log.WarnContext(ctx, "drift: status differs from stripe", "customer_id", d.CustomerID, "subscription_id", d.SubscriptionID,
					"action", "drift_check", "outcome", "drift", "ours", d.Ours, "stripe", d.Stripe)
			}
		default:
			c.log.InfoContext(ctx, "drift check clean", "action", "drift_check", "outcome", "clean")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
