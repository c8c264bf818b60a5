package stripeevent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// SnapshotPrefix starts the id of every snapshot, which no Stripe event id
// does.
const SnapshotPrefix = "snap_"

// ErrNoSnapshot: the object says nothing a snapshot could apply (an open
// checkout session, an object type no consumer reads).
var ErrNoSnapshot = fmt.Errorf("%w: object carries no billing state", ErrMalformed)

// Snapshot turns an object read from Stripe's API (a list or a retrieve)
// into an event that carries it as data.object, normalised exactly as a
// webhook's: the one way every consumer reads Stripe objects.
//
// The event is dated at, the time the object was read, so the ordering
// rules make it the newest truth about the object: an event created before
// the read is older than what the snapshot shows, and one created after it
// wins. Its type is the event Stripe sends when an object reaches the
// object's state (a canceled subscription is customer.subscription.deleted,
// a paid invoice invoice.paid). Its id is SnapshotPrefix, the object's id
// and a digest of the object's bytes: the same object read twice is one
// message, and a changed object a new one. Source is EVENT_SOURCE_SNAPSHOT,
// so that support-notify opens no ticket and sends no alert about history.
func Snapshot(object []byte, at time.Time) (*billingv1.BillingEvent, error) {
	var head struct {
		ID             string `json:"id"`
		Object         string `json:"object"`
		Livemode       bool   `json:"livemode"`
		Status         string `json:"status"`
		Paid           bool   `json:"paid"`
		Refunded       bool   `json:"refunded"`
		AmountRefunded int64  `json:"amount_refunded"`
		AttemptCount   int64  `json:"attempt_count"`
		Deleted        bool   `json:"deleted"`
	}
	if err := json.Unmarshal(object, &head); err != nil || head.ID == "" {
		return nil, fmt.Errorf("%w: a snapshot needs an object with an id", ErrMalformed)
	}
	typ, err := snapshotType(head.Object, head.Status, head.Deleted, head.AmountRefunded > 0 || head.Refunded, head.AttemptCount)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", head.ID, err)
	}
	sum := sha256.Sum256(object)
	id := SnapshotPrefix + head.ID + "_" + hex.EncodeToString(sum[:8])
	env, err := json.Marshal(struct {
		ID              string          `json:"id"`
		Object          string          `json:"object"`
		Created         int64           `json:"created"`
		Livemode        bool            `json:"livemode"`
		Type            string          `json:"type"`
		PendingWebhooks int             `json:"pending_webhooks"`
		Data            json.RawMessage `json:"data"`
	}{id, "event", at.Unix(), head.Livemode, typ, 0, json.RawMessage(`{"object":` + string(object) + `}`)})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	ev, err := Normalize(env)
	if err != nil {
		return nil, err
	}
	ev.Source = billingv1.EventSource_EVENT_SOURCE_SNAPSHOT
	return ev, nil
}

func snapshotType(object, status string, deleted, refunded bool, attempts int64) (string, error) {
	switch object {
	case "customer":
		if deleted {
			return "customer.deleted", nil
		}
		return "customer.updated", nil
	case "subscription":
		if status == "canceled" {
			return "customer.subscription.deleted", nil
		}
		return "customer.subscription.updated", nil
	case "invoice":
		switch {
		case status == "paid":
			return "invoice.paid", nil
		case status == "open" && attempts > 0:
			return "invoice.payment_failed", nil
		}
		return "invoice.updated", nil
	case "checkout.session":
		switch status {
		case "complete":
			return "checkout.session.completed", nil
		case "expired":
			return "checkout.session.expired", nil
		}
		return "", ErrNoSnapshot
	case "charge":
		switch {
		case refunded:
			return "charge.refunded", nil
		case status == "succeeded":
			return "charge.succeeded", nil
		case status == "failed":
			return "charge.failed", nil
		}
		return "charge.pending", nil
	case "refund":
		return "refund.updated", nil
	case "dispute":
		switch status {
		case "won", "lost", "warning_closed", "prevented":
			return "charge.dispute.closed", nil
		}
		return "charge.dispute.updated", nil
	}
	return "", ErrNoSnapshot
}
