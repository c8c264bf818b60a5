package state

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// The rows a transaction reads for a customer, and how they are encoded.

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
	// smokeRun marks a customer made by a smoke test; once set it stays.
	smokeRun string
	// status is the stored CustomerStatus; nil for a customer first seen in
	// this transaction.
	status *billingv1.CustomerStatus
}

const customerColumns = `id, email, name, user_id, livemode, placeholder, deleted, profile_event_created, profile_event_id,
	profile_event_type, last_payment_failed_at, needs_reconciliation, smoke_run, status_json`

func scanCustomer(row pgx.Row) (customerRow, error) {
	var c customerRow
	var statusJSON []byte
	if err := row.Scan(&c.id, &c.email, &c.name, &c.userID, &c.livemode, &c.placeholder, &c.deleted, &c.profileCreated,
		&c.profileEventID, &c.profileEventType, &c.lastPaymentFailedAt, &c.needsReconciliation, &c.smokeRun, &statusJSON); err != nil {
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

const subscriptionColumns = `id, customer_id, status, price_id, created, current_period_end, trial_end, cancel_at_period_end, deleted,
	quantity, unit_amount, interval, interval_count, currency, user_id, livemode, last_event_id, last_event_type, last_event_created,
	prev_status, prev_cancel_at_period_end, prev_price_id`

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
		s.Created, s.CurrentPeriodEnd, s.TrialEnd, s.LastEventCreated = timeOrZero(created), timeOrZero(cpe), timeOrZero(trialEnd), timeOrZero(lastCreated)
		out = append(out, s)
	}
	return out, rows.Err()
}

// collectIDs reads the next result of a batch: one text column.
func collectIDs(br pgx.BatchResults) ([]string, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
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

// timeOrZero is a nullable column's time, zero for NULL, in UTC.
func timeOrZero(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}
