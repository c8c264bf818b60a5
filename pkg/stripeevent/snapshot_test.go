package stripeevent_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

func TestSnapshotReadsAnObjectAsTheEventOfItsState(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	cases := []struct {
		object, wantType, wantStatus string
	}{
		{`{"id":"sub_1","object":"subscription","status":"canceled","customer":"cus_1","livemode":false,"items":{"data":[]}}`, "customer.subscription.deleted", "canceled"},
		{`{"id":"sub_2","object":"subscription","status":"past_due","customer":"cus_1","livemode":false}`, "customer.subscription.updated", "past_due"},
		{`{"id":"in_1","object":"invoice","status":"paid","customer":"cus_1","subscription":"sub_2","attempt_count":1}`, "invoice.paid", "paid"},
		{`{"id":"in_2","object":"invoice","status":"open","customer":"cus_1","attempt_count":2}`, "invoice.payment_failed", "open"},
		{`{"id":"cs_1","object":"checkout.session","status":"complete","mode":"payment","payment_status":"paid","customer":"cus_1"}`, "checkout.session.completed", ""},
		{`{"id":"ch_1","object":"charge","status":"succeeded","amount":500,"amount_refunded":500,"refunded":true,"customer":"cus_1"}`, "charge.refunded", "succeeded"},
		{`{"id":"dp_1","object":"dispute","status":"lost","charge":"ch_1"}`, "charge.dispute.closed", "lost"},
		{`{"id":"dp_2","object":"dispute","status":"needs_response","charge":"ch_1"}`, "charge.dispute.updated", "needs_response"},
		{`{"id":"cus_1","object":"customer","email":"a@example.com"}`, "customer.updated", ""},
	}
	for _, c := range cases {
		ev, err := stripeevent.Snapshot([]byte(c.object), at)
		if err != nil {
			t.Fatalf("%s: %v", c.object, err)
		}
		if ev.Type != c.wantType || ev.Source != billingv1.EventSource_EVENT_SOURCE_SNAPSHOT || !ev.Created.AsTime().Equal(at) {
			t.Fatalf("%s: type %s, source %v, created %s", c.object, ev.Type, ev.Source, ev.Created.AsTime())
		}
		if c.wantStatus != "" && ev.Status != c.wantStatus {
			t.Fatalf("%s: status %q, want %q", c.object, ev.Status, c.wantStatus)
		}
		if !strings.HasPrefix(ev.EventId, stripeevent.SnapshotPrefix) || stripeevent.CheckPlausible(ev) != nil {
			t.Fatalf("%s: id %q not a plausible snapshot id (%v)", c.object, ev.EventId, stripeevent.CheckPlausible(ev))
		}
	}
	sub := `{"id":"sub_1","object":"subscription","status":"active","customer":"cus_1"}`
	a, _ := stripeevent.Snapshot([]byte(sub), at)
	b, _ := stripeevent.Snapshot([]byte(sub), at.Add(time.Hour))
	c, _ := stripeevent.Snapshot([]byte(strings.Replace(sub, "active", "past_due", 1)), at)
	if a.EventId != b.EventId || a.EventId == c.EventId {
		t.Fatalf("ids: same object %s / %s, changed object %s", a.EventId, b.EventId, c.EventId)
	}
	if a.CustomerId != "cus_1" || a.SubscriptionId != "sub_1" {
		t.Fatalf("normalised ids: %+v", a)
	}
	if _, err := stripeevent.Snapshot([]byte(`{"id":"cs_2","object":"checkout.session","status":"open"}`), at); !errors.Is(err, stripeevent.ErrNoSnapshot) {
		t.Fatalf("an open checkout session: %v", err)
	}
}
