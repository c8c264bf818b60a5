package stripeevent_test

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

// The rules as the issue states them; CheckType and IsStripeID are
// hand-written for the request path and must agree with these exactly.
var (
	typeRule = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_*]+){1,5}$`)
	idRule   = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)
)

// TestEveryFixtureIsPlausible: no envelope Stripe ever sent may be refused.
func TestEveryFixtureIsPlausible(t *testing.T) {
	dir := testkit.FixturesDir(t)
	checked := 0
	for _, e := range readIndex(t, dir) {
		if e.Kind != "envelope" {
			continue
		}
		ev, err := stripeevent.Normalize(readFixture(t, dir, e.File))
		if err != nil {
			t.Fatalf("%s: Normalize: %v", e.File, err)
		}
		if err := stripeevent.CheckPlausible(ev); err != nil {
			t.Errorf("%s: %v", e.File, err)
		}
		if stripeevent.HasWildcard(ev.GetType()) {
			t.Errorf("%s: type %q reads as a wildcard", e.File, ev.GetType())
		}
		checked++
	}
	if checked < 150 {
		t.Fatalf("checked %d envelopes, want at least 150", checked)
	}
}

func TestCheckType(t *testing.T) {
	tests := []struct {
		typ    string
		ok     bool
		reason string
	}{
		{"invoice.paid", true, ""},
		{"customer.subscription.trial_will_end", true, ""},
		{"issuing_authorization.request", true, ""},
		{"v2.core.event_destination.ping", true, ""},
		{"a.b.c.d.e.f", true, ""},
		{"customer.*", true, ""},
		{"customer.sub*", true, ""},
		{"a." + strings.Repeat("b", stripeevent.MaxTypeLen-2), true, ""},
		{"a." + strings.Repeat("b", stripeevent.MaxTypeLen-1), false, "101 bytes"},
		{"customer." + strings.Repeat("x", 5000), false, "5009 bytes"},
		{"", false, "empty word"},
		{"invoice", false, "1 words"},
		{"a.b.c.d.e.f.g", false, "7 words"},
		{"*.created", false, "lowercase words"},
		{"Invoice.paid", false, "lowercase words"},
		{"invoice.paid ", false, "lowercase words"},
		{"invoice.>", false, "lowercase words"},
		{"invoice..paid", false, "empty word"},
		{".invoice.paid", false, "empty word"},
		{"invoice.paid.", false, "empty word"},
		{"invoice-paid.x", false, "lowercase words"},
		{"invoice.p\u00e4id", false, "lowercase words"},
		{"invoice.paid\n", false, "lowercase words"},
	}
	for _, tc := range tests {
		err := stripeevent.CheckType(tc.typ)
		if got := typeRule.MatchString(tc.typ) && len(tc.typ) <= stripeevent.MaxTypeLen; got != tc.ok {
			t.Fatalf("table error: the rule says %v for %q", got, tc.typ)
		}
		if tc.ok {
			if err != nil {
				t.Errorf("CheckType(%q) = %v, want nil", tc.typ, err)
			}
			continue
		}
		if !errors.Is(err, stripeevent.ErrImplausible) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("CheckType(%.40q) = %v, want ErrImplausible saying %q", tc.typ, err, tc.reason)
		}
		if len(err.Error()) > 200 {
			t.Errorf("error for a %d-byte type is %d bytes long: it must not echo the input", len(tc.typ), len(err.Error()))
		}
	}
}

// TestRulesAgreeWithTheirRegexps compares the hand-written checks with the
// stated regular expressions on many random strings over the alphabets
// that matter, plus every string of up to three characters from them.
func TestRulesAgreeWithTheirRegexps(t *testing.T) {
	const typeAlphabet = "ab_09.*A-> "
	const idAlphabet = "aZ_9.-* \x00"
	rng := rand.New(rand.NewPCG(16, 16))
	random := func(alphabet string, maxLen int) string {
		b := make([]byte, rng.IntN(maxLen+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	var all func(alphabet, prefix string, depth int, visit func(string))
	all = func(alphabet, prefix string, depth int, visit func(string)) {
		visit(prefix)
		if depth == 0 {
			return
		}
		for i := range len(alphabet) {
			all(alphabet, prefix+alphabet[i:i+1], depth-1, visit)
		}
	}
	checkType := func(s string) {
		want := typeRule.MatchString(s) && len(s) <= stripeevent.MaxTypeLen
		if got := stripeevent.CheckType(s) == nil; got != want {
			t.Fatalf("CheckType(%q) ok=%v, regexp says %v", s, got, want)
		}
	}
	checkID := func(s string) {
		if got, want := stripeevent.IsStripeID(s), idRule.MatchString(s); got != want {
			t.Fatalf("IsStripeID(%q) = %v, regexp says %v", s, got, want)
		}
	}
	all(typeAlphabet, "", 3, checkType)
	all(idAlphabet, "", 3, checkID)
	for range 20000 {
		checkType(random(typeAlphabet, 24))
		checkType(random("abc.", 120))
		checkID(random(idAlphabet, 12))
		checkID(random("aZ_9", 260))
	}
}

func TestCheckPlausibleRefusesNonStripeIDs(t *testing.T) {
	valid := func() *billingv1.BillingEvent {
		return &billingv1.BillingEvent{EventId: "evt_1", Type: "invoice.paid", ObjectId: "in_1", InvoiceId: "in_1",
			CustomerId: "cus_1", SubscriptionId: "sub_1", Account: "acct_1", PriceId: "gold-monthly", ProductId: "Gold plan"}
	}
	if err := stripeevent.CheckPlausible(valid()); err != nil {
		t.Fatalf("valid event (with an account-chosen plan id): %v", err)
	}
	long := strings.Repeat("x", stripeevent.MaxIDLen+1)
	tests := []struct {
		name   string
		change func(*billingv1.BillingEvent)
		reason string
	}{
		{"event id with a dot", func(ev *billingv1.BillingEvent) { ev.EventId = "evt_1.>" }, "event id"},
		{"empty event id", func(ev *billingv1.BillingEvent) { ev.EventId = "" }, "event id is empty"},
		{"event id too long", func(ev *billingv1.BillingEvent) { ev.EventId = long }, "256 bytes"},
		{"customer id with a space", func(ev *billingv1.BillingEvent) { ev.CustomerId = "cus 1" }, "customer id"},
		{"customer id wildcard", func(ev *billingv1.BillingEvent) { ev.CustomerId = "*" }, "customer id"},
		{"object id", func(ev *billingv1.BillingEvent) { ev.ObjectId = "in-1" }, "data.object.id"},
		{"subscription id", func(ev *billingv1.BillingEvent) { ev.SubscriptionId = "sub_1\n" }, "subscription id"},
		{"invoice id", func(ev *billingv1.BillingEvent) { ev.InvoiceId = long }, "invoice id"},
		{"charge id", func(ev *billingv1.BillingEvent) { ev.ChargeId = "ch_é" }, "charge id"},
		{"payment intent id", func(ev *billingv1.BillingEvent) { ev.PaymentIntentId = "pi.1" }, "payment intent id"},
		{"refund id", func(ev *billingv1.BillingEvent) { ev.RefundId = "re/1" }, "refund id"},
		{"dispute id", func(ev *billingv1.BillingEvent) { ev.DisputeId = "dp 1" }, "dispute id"},
		{"checkout session id", func(ev *billingv1.BillingEvent) { ev.CheckoutSessionId = "cs_1>" }, "checkout session id"},
		{"account", func(ev *billingv1.BillingEvent) { ev.Account = "acct_1.x" }, "account"},
		{"type", func(ev *billingv1.BillingEvent) { ev.Type = "invoice" }, "event type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := valid()
			tc.change(ev)
			err := stripeevent.CheckPlausible(ev)
			if !errors.Is(err, stripeevent.ErrImplausible) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("CheckPlausible = %v, want ErrImplausible naming %q", err, tc.reason)
			}
			if strings.Contains(err.Error(), long) {
				t.Fatal("the error echoes a 256-byte id")
			}
		})
	}
}

func TestHasWildcard(t *testing.T) {
	for typ, want := range map[string]bool{"customer.*": true, "customer.sub*.x": true, "customer.created": false} {
		if got := stripeevent.HasWildcard(typ); got != want {
			t.Errorf("HasWildcard(%q) = %v, want %v", typ, got, want)
		}
	}
}

// An unmapped object (a plan, a coupon, a redacted capture) keeps its event
// with the non-Stripe ids left out; a mapped one keeps them so that
// CheckPlausible refuses it.
func TestNormalizeLeavesOutOddIDsOfUnmappedObjects(t *testing.T) {
	plan := []byte(`{"id":"evt_1","type":"plan.created","data":{"object":{"id":"gold-monthly","object":"plan","customer":"cus_9..."}}}`)
	ev, err := stripeevent.Normalize(plan)
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetObjectId() != "" || ev.GetCustomerId() != "" || ev.GetObjectType() != "plan" {
		t.Fatalf("object %q id %q customer %q, want plan with both ids left out", ev.GetObjectType(), ev.GetObjectId(), ev.GetCustomerId())
	}
	if err := stripeevent.CheckPlausible(ev); err != nil {
		t.Fatalf("plan event: %v", err)
	}
	card := []byte(`{"id":"evt_2","type":"payment_method.attached","data":{"object":{"id":"pm_1","object":"payment_method","customer":"cus_1"}}}`)
	if ev, err := stripeevent.Normalize(card); err != nil || ev.GetObjectId() != "pm_1" || ev.GetCustomerId() != "cus_1" {
		t.Fatalf("Stripe ids of an unmapped object: %v %v", ev, err)
	}
	sub := []byte(`{"id":"evt_3","type":"customer.subscription.updated","data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_9..."}}}`)
	ev, err = stripeevent.Normalize(sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := stripeevent.CheckPlausible(ev); !errors.Is(err, stripeevent.ErrImplausible) {
		t.Fatalf("subscription of customer %q: %v, want ErrImplausible", ev.GetCustomerId(), err)
	}
}
