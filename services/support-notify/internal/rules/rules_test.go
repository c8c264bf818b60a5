package rules

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

func TestDefaultsAreValid(t *testing.T) {
	if _, err := New(File{Rules: defaultRules()}); err != nil {
		t.Fatalf("built-in defaults do not validate: %v", err)
	}
}

// The documented example must be exactly the defaults, so that copying it
// changes nothing until someone edits it.
func TestExampleFileIsTheDefaults(t *testing.T) {
	s, err := Load(filepath.Join("..", "..", "rules.example.yaml"))
	if err != nil {
		t.Fatalf("load example: %v", err)
	}
	if !reflect.DeepEqual(s.Rules(), Defaults().Rules()) {
		t.Fatalf("rules.example.yaml differs from the defaults:\n file: %+v\n defaults: %+v", s.Rules(), Defaults().Rules())
	}
}

func TestDefaultDecisions(t *testing.T) {
	d := Defaults()
	cases := []struct {
		name string
		ev   *billingv1.BillingEvent
		want Decision
	}{
		{"invoice failed", &billingv1.BillingEvent{Type: "invoice.payment_failed", InvoiceId: "in_1"}, Decision{Ticket: true, Alert: true, Priority: "normal"}},
		{"dispute", &billingv1.BillingEvent{Type: "charge.dispute.created"}, Decision{Ticket: true, Alert: true, Priority: "urgent", Urgent: true}},
		{"cancel by request", &billingv1.BillingEvent{Type: "customer.subscription.deleted", CancellationReason: "cancellation_requested"}, Decision{Alert: true}},
		{"cancel after failed payments", &billingv1.BillingEvent{Type: "customer.subscription.deleted", CancellationReason: "payment_failed"}, Decision{Alert: true, Ticket: true, Priority: "normal"}},
		{"refund", &billingv1.BillingEvent{Type: "charge.refunded"}, Decision{Alert: true}},
		{"async checkout failed", &billingv1.BillingEvent{Type: "checkout.session.async_payment_failed"}, Decision{Ticket: true, Priority: "normal"}},
		{"one-off payment failed", &billingv1.BillingEvent{Type: "payment_intent.payment_failed"}, Decision{Ticket: true, Priority: "normal"}},
		{"invoice payment intent failed", &billingv1.BillingEvent{Type: "payment_intent.payment_failed", InvoiceId: "in_1"}, Decision{}},
		{"basil subscription payment failed", &billingv1.BillingEvent{Type: "payment_intent.payment_failed", RawJson: []byte(`{"data":{"object":{"object":"payment_intent","description":"Subscription creation"}}}`)}, Decision{}},
		{"one-off payment with a description", &billingv1.BillingEvent{Type: "payment_intent.payment_failed", RawJson: []byte(`{"data":{"object":{"object":"payment_intent","description":"Created by stripe.com/docs demo"}}}`)}, Decision{Ticket: true, Priority: "normal"}},
		{"action required", &billingv1.BillingEvent{Type: "invoice.payment_action_required"}, Decision{Ticket: true, Priority: "normal"}},
		{"trial ending is off by default", &billingv1.BillingEvent{Type: "customer.subscription.trial_will_end"}, Decision{}},
		{"paid resolves", &billingv1.BillingEvent{Type: "invoice.paid"}, Decision{Resolve: true}},
		{"successful purchase", &billingv1.BillingEvent{Type: "checkout.session.completed", PaymentStatus: "paid"}, Decision{}},
		{"charge succeeded", &billingv1.BillingEvent{Type: "charge.succeeded"}, Decision{}},
		{"unknown type", &billingv1.BillingEvent{Type: "some.future.event"}, Decision{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := d.Decide(c.ev); got != c.want {
				t.Fatalf("Decide = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseYAMLAndJSON(t *testing.T) {
	yml := `
rules:
  - event: customer.subscription.trial_will_end
    actions: [ticket]
    priority: low
  - event: invoice.payment_failed
    actions: [alert]
    when: {livemode: true}
`
	jsn := `{"rules":[
  {"event":"customer.subscription.trial_will_end","actions":["ticket"],"priority":"low"},
  {"event":"invoice.payment_failed","actions":["alert"],"when":{"livemode":true}}]}`
	for name, doc := range map[string]string{"yaml": yml, "json": jsn} {
		t.Run(name, func(t *testing.T) {
			s, err := Parse([]byte(doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := s.Decide(&billingv1.BillingEvent{Type: "customer.subscription.trial_will_end"}); got != (Decision{Ticket: true, Priority: "low"}) {
				t.Fatalf("trial rule: %+v", got)
			}
			if got := s.Decide(&billingv1.BillingEvent{Type: "invoice.payment_failed", Livemode: false}); !got.None() {
				t.Fatalf("test-mode failure should match nothing, got %+v", got)
			}
			if got := s.Decide(&billingv1.BillingEvent{Type: "invoice.payment_failed", Livemode: true}); got != (Decision{Alert: true}) {
				t.Fatalf("live failure: %+v", got)
			}
			// The file replaced the defaults: disputes do nothing now.
			if got := s.Decide(&billingv1.BillingEvent{Type: "charge.dispute.created"}); !got.None() {
				t.Fatalf("file should replace defaults, dispute got %+v", got)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]struct{ doc, want string }{
		"unknown event type":               {`rules: [{event: invoice.payment_faild, actions: [ticket]}]`, "unknown event type"},
		"unknown action":                   {`rules: [{event: invoice.payment_failed, actions: [page]}]`, `unknown action "page"`},
		"no actions":                       {`rules: [{event: invoice.payment_failed}]`, "actions is empty"},
		"duplicate action":                 {`rules: [{event: invoice.payment_failed, actions: [alert, alert]}]`, "listed twice"},
		"bad priority":                     {`rules: [{event: invoice.payment_failed, actions: [ticket], priority: critical}]`, "priority \"critical\""},
		"priority without ticket or alert": {`rules: [{event: invoice.paid, actions: [resolve], priority: high}]`, "needs the ticket or alert action"},
		"email_customer on a success":      {`rules: [{event: invoice.paid, actions: [email_customer]}]`, "email_customer only applies to failed payments"},
		"resolve on failure":               {`rules: [{event: invoice.payment_failed, actions: [resolve]}]`, "resolve only applies"},
		"ticket on success":                {`rules: [{event: invoice.paid, actions: [ticket]}]`, "does not open them"},
		"unknown key":                      {`rules: [{event: invoice.payment_failed, actions: [ticket], wen: {livemode: true}}]`, "unknown field"},
		"unknown condition":                {`rules: [{event: invoice.payment_failed, actions: [ticket], when: {amount_over: 5}}]`, "unknown field"},
		"bad reason":                       {`rules: [{event: customer.subscription.deleted, actions: [ticket], when: {cancellation_reason: [broke]}}]`, `cancellation_reason "broke"`},
		"reason on invoice":                {`rules: [{event: invoice.payment_failed, actions: [ticket], when: {cancellation_reason: [payment_failed]}}]`, "only applies to subscription events"},
		"outside_invoice misuse":           {`rules: [{event: invoice.payment_failed, actions: [ticket], when: {outside_invoice: true}}]`, "only applies to payment_intent"},
		"missing rules key":                {`{}`, `no "rules" list`},
		"empty file":                       {``, `no "rules" list`},
		"not yaml":                         {"rules: [\n  - {", "invalid support rules"},
		"missing event":                    {`{"rules":[{"actions":["alert"]}]}`, "event is required"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatalf("Parse accepted %q", c.doc)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`rules:
  - {event: nope.nope, actions: [ticket]}
  - {event: invoice.payment_failed, actions: [shout]}`))
	if err == nil || !strings.Contains(err.Error(), "nope.nope") || !strings.Contains(err.Error(), "shout") {
		t.Fatalf("want both problems reported, got %v", err)
	}
}

func TestEmptyRulesListTurnsEverythingOff(t *testing.T) {
	s, err := Parse([]byte("rules: []"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := s.Decide(&billingv1.BillingEvent{Type: "invoice.payment_failed"}); !got.None() {
		t.Fatalf("got %+v", got)
	}
}

func TestLoad(t *testing.T) {
	if s, err := Load(""); err != nil || !reflect.DeepEqual(s.Rules(), Defaults().Rules()) {
		t.Fatalf("empty path should give the defaults: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "SUPPORT_RULES_FILE") {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(p, []byte(`{"rules":[{"event":"charge.refunded","actions":["ticket"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := s.Decide(&billingv1.BillingEvent{Type: "charge.refunded"}); got != (Decision{Ticket: true, Priority: "normal"}) {
		t.Fatalf("got %+v", got)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules: [{event: x.y, actions: [ticket]}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file error should name the file: %v", err)
	}
}

func TestTypesAreTheRulesEventsForTheActions(t *testing.T) {
	s := Defaults()
	for _, actions := range [][]Action{{Alert}, {Ticket, Resolve}} {
		got := s.Types(actions...)
		if !sort.StringsAreSorted(got) || len(got) == 0 {
			t.Fatalf("Types(%v) = %v, want a sorted, non-empty list", actions, got)
		}
		want := map[string]bool{}
		for _, r := range s.Rules() {
			for _, a := range r.Actions {
				if slices.Contains(actions, a) {
					want[r.Event] = true
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("Types(%v) = %v, want each of %v once", actions, got, want)
		}
		for _, typ := range got {
			if !want[typ] {
				t.Fatalf("Types(%v) has %s, which no such rule names", actions, typ)
			}
		}
	}
	if got := (*Set)(nil).Types(Alert); len(got) != 0 {
		t.Fatalf("nil set: %v", got)
	}
}
