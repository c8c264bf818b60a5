package grpcapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// words is what a display must say in one locale.
type words struct{ headline, detail string }

// displayCase is a customer brought to a state by real fixture events.
type displayCase struct {
	name string
	// events builds the customer's journey; prepare runs after they are
	// applied, for what no event causes (a dead letter, a stale park).
	events  func(b *journey.Builder) []*billingv1.BillingEvent
	prepare func(t *testing.T, bd *bundle, b *journey.Builder)
	// now is the display's clock, in seconds after the journey's base.
	now    time.Duration
	status billingv1.BillingStatus
	kind   string
	tone   billingv1.DisplayTone
	action billingv1.DisplayAction
	grace  bool
	// accessUntil is the expected access_until, zero for none.
	accessUntil time.Time
	en, de      words
}

var displayBase = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func steps(f func(*journey.Builder) []journey.Step, n int) func(*journey.Builder) []*billingv1.BillingEvent {
	return func(b *journey.Builder) []*billingv1.BillingEvent {
		s := f(b)
		if n > 0 {
			s = s[:n]
		}
		return journey.Events(s)
	}
}

// withSubscription is a lifecycle's first three steps (active) and one
// more subscription update to status.
func withSubscription(status string) func(*journey.Builder) []*billingv1.BillingEvent {
	return func(b *journey.Builder) []*billingv1.BillingEvent {
		evs := steps(journey.SubscriptionLifecycle, 3)(b)
		sub := "sub_" + strings.TrimPrefix(b.CustomerID, "cus_")
		return append(evs, b.Subscription("customer.subscription.updated", 40*86400, sub, status, false, map[string]any{"status": "active"}))
	}
}

// pastDueRetry is a lifecycle up to a failed renewal whose invoice names
// Stripe's next attempt three days later.
func pastDueRetry(b *journey.Builder) []*billingv1.BillingEvent {
	evs := steps(journey.SubscriptionLifecycle, 3)(b)
	id := strings.TrimPrefix(b.CustomerID, "cus_")
	sub, renew := "sub_"+id, 30*86400
	inv := b.Event("stripe-ruby-mock/invoice.payment_failed.json", "invoice.payment_failed", renew, map[string]any{
		"id": "in_2" + sub, "customer": b.CustomerID, "subscription": sub, "charge": "ch_2" + sub, "payment_intent": "pi_2" + sub,
		"status": "open", "amount_due": 1500, "amount_paid": 0, "total": 1500, "billing_reason": "subscription_cycle",
		"attempt_count": 1, "next_payment_attempt": b.Base.Unix() + int64(renew+3*86400), "created": b.Base.Unix() + int64(renew),
	}, nil)
	return append(evs, inv, b.Subscription("customer.subscription.updated", renew, sub, "past_due", false, map[string]any{"status": "active"}))
}

func displayCases() []displayCase {
	periodEnd := displayBase.Add(30 * day)
	return []displayCase{
		{name: "no plan (customer created only)", events: steps(journey.TrialToActive, 1),
			status: billingv1.BillingStatus_BILLING_STATUS_NONE, kind: "none", tone: neutral, action: noAction,
			en: words{"No active plan", "You don't have a plan yet."},
			de: words{"Kein aktives Abo", "Sie haben noch kein Abo."}},
		{name: "trialing", events: steps(journey.TrialToActive, 2), now: day,
			status: billingv1.BillingStatus_BILLING_STATUS_TRIALING, kind: "trialing", tone: ok, action: managePlan,
			en: words{"Your free trial is on", "It runs until March 16, 2026."},
			de: words{"Ihr kostenloser Testzeitraum läuft", "Er läuft bis zum 16. März 2026."}},
		{name: "trial ending in 3 days", events: steps(journey.TrialToActive, 2), now: 11 * day,
			status: billingv1.BillingStatus_BILLING_STATUS_TRIALING, kind: "trial_ending", tone: attention, action: managePlan,
			en: words{"Your trial ends in 3 days", "It ends on March 16, 2026. Your plan starts then unless you change it."},
			de: words{"Ihr Testzeitraum endet in 3 Tagen", "Er endet am 16. März 2026. Danach beginnt Ihr Abo, sofern Sie es nicht ändern."}},
		{name: "trial ending in 1 day", events: steps(journey.TrialToActive, 2), now: 13*day + time.Hour,
			status: billingv1.BillingStatus_BILLING_STATUS_TRIALING, kind: "trial_ending", tone: attention, action: managePlan,
			en: words{"Your trial ends in 1 day", "It ends on March 16, 2026. Your plan starts then unless you change it."},
			de: words{"Ihr Testzeitraum endet in 1 Tag", "Er endet am 16. März 2026. Danach beginnt Ihr Abo, sofern Sie es nicht ändern."}},
		{name: "active", events: steps(journey.SubscriptionLifecycle, 3), now: day,
			status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, kind: "active", tone: ok, action: managePlan,
			en: words{"Your plan is active", "It renews on April 1, 2026."},
			de: words{"Ihr Abo ist aktiv", "Es verlängert sich am 1. April 2026."}},
		{name: "one-time purchase", events: steps(journey.OneTimeRefunded, 1), now: day,
			status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, kind: "active", tone: ok, action: noAction,
			en: words{"Your plan is active", "You have full access."},
			de: words{"Ihr Abo ist aktiv", "Sie haben vollen Zugang."}},
		{name: "past due with a retry date", events: pastDueRetry, now: 30*day + time.Hour,
			status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE, kind: "past_due_retry", tone: problem, action: updatePayment, grace: true,
			en: words{"Your payment didn't go through", "We'll try again on April 4, 2026. Update your payment method to keep your plan."},
			de: words{"Ihre Zahlung ist fehlgeschlagen", "Wir versuchen es am 4. April 2026 erneut. Ändern Sie Ihre Zahlungsmethode, um Ihr Abo zu behalten."}},
		{name: "past due, no retry left", events: steps(journey.SubscriptionLifecycle, 4), now: 30*day + time.Hour,
			status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE, kind: "past_due", tone: problem, action: updatePayment, grace: true,
			en: words{"Your payment didn't go through", "Update your payment method to keep your plan."},
			de: words{"Ihre Zahlung ist fehlgeschlagen", "Ändern Sie Ihre Zahlungsmethode, um Ihr Abo zu behalten."}},
		{name: "unpaid", events: withSubscription("unpaid"), now: 41 * day,
			status: billingv1.BillingStatus_BILLING_STATUS_UNPAID, kind: "unpaid", tone: problem, action: updatePayment,
			en: words{"Your payment is overdue", "Your access is on hold until the payment goes through. Update your payment method."},
			de: words{"Ihre Zahlung ist überfällig", "Ihr Zugang ist gesperrt, bis die Zahlung eingeht. Ändern Sie Ihre Zahlungsmethode."}},
		{name: "paused", events: withSubscription("paused"), now: 41 * day,
			status: billingv1.BillingStatus_BILLING_STATUS_PAUSED, kind: "paused", tone: neutral, action: managePlan,
			en: words{"Your plan is paused", "You can resume it whenever you like."},
			de: words{"Ihr Abo ist pausiert", "Sie können es jederzeit fortsetzen."}},
		{name: "incomplete (pending verification)", events: steps(journey.SubscriptionLifecycle, 2), now: time.Hour,
			status: billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE, kind: "incomplete", tone: attention, action: noAction,
			en: words{"Your payment is being verified", "We're waiting for your bank to confirm it. This can take a few days; there is nothing you need to do."},
			de: words{"Ihre Zahlung wird geprüft", "Wir warten auf die Bestätigung Ihrer Bank. Das kann einige Tage dauern; Sie müssen nichts tun."}},
		{name: "canceled at period end", events: steps(journey.SubscriptionLifecycle, 6), now: 40 * day,
			status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, kind: "canceled_at_period_end", tone: attention, action: resubscribe, accessUntil: periodEnd,
			en: words{"Your plan ends on April 1, 2026", "You keep access until then. Resubscribe to keep it going."},
			de: words{"Ihr Abo endet am 1. April 2026", "Bis dahin behalten Sie Ihren Zugang. Abonnieren Sie erneut, um ihn zu behalten."}},
		{name: "canceled and ended", events: steps(journey.SubscriptionLifecycle, 0), now: 61 * day,
			status: billingv1.BillingStatus_BILLING_STATUS_CANCELED, kind: "canceled", tone: neutral, action: resubscribe, accessUntil: periodEnd,
			en: words{"Your plan has ended", "It ended on April 1, 2026. Resubscribe whenever you like."},
			de: words{"Ihr Abo ist beendet", "Es endete am 1. April 2026. Sie können jederzeit erneut abonnieren."}},
		{name: "refunded", events: steps(journey.OneTimeRefunded, 0), now: day,
			status: billingv1.BillingStatus_BILLING_STATUS_REFUNDED, kind: "refunded", tone: neutral, action: noAction,
			en: words{"Your purchase was refunded", "$20.00 went back to your payment method."},
			de: words{"Ihr Kauf wurde erstattet", "20,00 $ wurden an Ihre Zahlungsmethode zurückgezahlt."}},
		{name: "dispute open", events: steps(journey.DisputeOpenedClosed, 2), now: 2 * day,
			status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, kind: "dispute_open", tone: attention, action: support,
			en: words{"A payment is disputed", "Your bank told us you disputed a payment. Contact us so we can sort it out."},
			de: words{"Eine Zahlung wird angefochten", "Ihre Bank hat uns eine Anfechtung gemeldet. Bitte kontaktieren Sie uns, damit wir das klären können."}},
		{name: "status unknown: a dead letter, access kept", events: steps(journey.SubscriptionLifecycle, 3), now: day,
			prepare: deadLetterOf("customer.subscription.updated"),
			status:  billingv1.BillingStatus_BILLING_STATUS_ACTIVE, kind: "unknown", tone: attention, action: support,
			en: words{"We can't confirm your billing status right now", "We're on it. You keep access to your plan meanwhile."},
			de: words{"Wir können Ihren Abo-Status gerade nicht bestätigen", "Wir kümmern uns darum. Ihr Zugang bleibt in der Zwischenzeit erhalten."}},
		{name: "status unknown: a dead letter, no access", events: steps(journey.SubscriptionLifecycle, 2), now: day,
			prepare: deadLetterOf("invoice.paid"),
			status:  billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE, kind: "unknown", tone: attention, action: support,
			en: words{"We can't confirm your billing status right now", "We're on it. Nothing on your account changes meanwhile."},
			de: words{"Wir können Ihren Abo-Status gerade nicht bestätigen", "Wir kümmern uns darum. An Ihrem Konto ändert sich in der Zwischenzeit nichts."}},
		{name: "status unknown: parked past STATUS_STALE_AFTER", events: steps(journey.OneTimeRefunded, 1), now: day,
			prepare: parkedRefund(10 * time.Minute),
			status:  billingv1.BillingStatus_BILLING_STATUS_ACTIVE, kind: "unknown", tone: attention, action: support,
			en: words{"We can't confirm your billing status right now", "We're on it. You keep access to your plan meanwhile."},
			de: words{"Wir können Ihren Abo-Status gerade nicht bestätigen", "Wir kümmern uns darum. Ihr Zugang bleibt in der Zwischenzeit erhalten."}},
		{name: "parked for less than STATUS_STALE_AFTER", events: steps(journey.OneTimeRefunded, 1), now: day,
			prepare: parkedRefund(time.Minute),
			status:  billingv1.BillingStatus_BILLING_STATUS_ACTIVE, kind: "active", tone: ok, action: noAction,
			en: words{"Your plan is active", "You have full access."},
			de: words{"Ihr Abo ist aktiv", "Sie haben vollen Zugang."}},
	}
}

// deadLetterOf records as dead-lettered a further event of type typ, as
// billing-state does when it gives up on one.
func deadLetterOf(typ string) func(t *testing.T, bd *bundle, b *journey.Builder) {
	return func(t *testing.T, bd *bundle, b *journey.Builder) {
		sub := "sub_" + strings.TrimPrefix(b.CustomerID, "cus_")
		ev := b.Subscription(typ, 5*86400, sub, "active", false, nil)
		if typ == "invoice.paid" {
			ev = b.Invoice(typ, 5*86400, "in_9"+sub, sub, "ch_9"+sub, "pi_9"+sub, "paid")
		}
		if err := bd.store.RecordDeadLetter(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// parkedRefund parks a refund of a charge billing-state does not know yet
// and then, as a later charge event would, teaches the charge's customer
// without the parked event being applied yet, age ago.
func parkedRefund(age time.Duration) func(t *testing.T, bd *bundle, b *journey.Builder) {
	return func(t *testing.T, bd *bundle, b *journey.Builder) {
		ctx := context.Background()
		ch := "ch_later_" + strings.TrimPrefix(b.CustomerID, "cus_")
		res, err := bd.store.ApplyEvent(ctx, b.Refund("refund.created", 3600, "re_"+ch, ch, 500, "succeeded"), state.ApplyOptions{ParkUnresolved: true})
		if err != nil || res.Outcome != state.OutcomeUnresolved {
			t.Fatalf("park: %v %v", res.Outcome, err)
		}
		if _, err := bd.pool.Exec(ctx, `UPDATE billing.unresolved_events SET recorded_at = now() - $1 * interval '1 second' WHERE ref = $2`, age.Seconds(), ch); err != nil {
			t.Fatal(err)
		}
		if _, err := bd.pool.Exec(ctx, `INSERT INTO billing.payment_refs (ref, customer_id) VALUES ($1, $2)`, ch, b.CustomerID); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	ok            = billingv1.DisplayTone_DISPLAY_TONE_OK
	attention     = billingv1.DisplayTone_DISPLAY_TONE_ATTENTION
	problem       = billingv1.DisplayTone_DISPLAY_TONE_PROBLEM
	neutral       = billingv1.DisplayTone_DISPLAY_TONE_NEUTRAL
	noAction      = billingv1.DisplayAction_DISPLAY_ACTION_NONE
	updatePayment = billingv1.DisplayAction_DISPLAY_ACTION_UPDATE_PAYMENT_METHOD
	resubscribe   = billingv1.DisplayAction_DISPLAY_ACTION_RESUBSCRIBE
	support       = billingv1.DisplayAction_DISPLAY_ACTION_CONTACT_SUPPORT
	managePlan    = billingv1.DisplayAction_DISPLAY_ACTION_MANAGE_PLAN
)

var actionLabels = map[string]map[billingv1.DisplayAction]string{
	"en": {updatePayment: "Update payment method", resubscribe: "Resubscribe", support: "Contact support", managePlan: "Manage plan"},
	"de": {updatePayment: "Zahlungsmethode ändern", resubscribe: "Erneut abonnieren", support: "Support kontaktieren", managePlan: "Abo verwalten"},
}

// TestDisplayFromJourneys: every canonical status and every case of the
// display, reached by real fixture events applied to the store, read over
// gRPC in two locales.
func TestDisplayFromJourneys(t *testing.T) {
	bd := setup(t, setupOptions{policy: canonical.Policy{PastDueEntitled: true}})
	cli := bd.client()
	seen := map[billingv1.BillingStatus]bool{}
	kinds := map[string]bool{}
	for i, tc := range displayCases() {
		cus := "cus_disp" + strings.Repeat("x", i%3) + string(rune('a'+i))
		b := journey.New(t, cus, displayBase)
		for _, ev := range tc.events(b) {
			if _, err := bd.store.ApplyEvent(context.Background(), ev, state.ApplyOptions{}); err != nil {
				t.Fatalf("%s: apply %s: %v", tc.name, ev.GetType(), err)
			}
		}
		if tc.prepare != nil {
			tc.prepare(t, bd, b)
		}
		bd.clock.set(displayBase.Add(tc.now))
		for _, loc := range []struct {
			tag, want string
			w         words
		}{{"en", "en", tc.en}, {"de-AT", "de", tc.de}} {
			ctx, cancel := context.WithTimeout(as(context.Background(), bd.read), 5*time.Second)
			st, err := cli.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: cus}, Locale: loc.tag})
			cancel()
			if err != nil {
				t.Fatalf("%s (%s): %v", tc.name, loc.tag, err)
			}
			d := st.GetDisplay()
			if st.GetStatus() != tc.status {
				t.Errorf("%s: status %v, want %v", tc.name, st.GetStatus(), tc.status)
			}
			if d.GetKind() != tc.kind || d.GetTone() != tc.tone || d.GetAction() != tc.action || d.GetGrace() != tc.grace || d.GetLocale() != loc.want {
				t.Errorf("%s (%s): kind %q tone %v action %v grace %v locale %q; want %q %v %v %v %q", tc.name, loc.tag,
					d.GetKind(), d.GetTone(), d.GetAction(), d.GetGrace(), d.GetLocale(), tc.kind, tc.tone, tc.action, tc.grace, loc.want)
			}
			if d.GetHeadline() != loc.w.headline || d.GetDetail() != loc.w.detail {
				t.Errorf("%s (%s):\n got  %q / %q\n want %q / %q", tc.name, loc.tag, d.GetHeadline(), d.GetDetail(), loc.w.headline, loc.w.detail)
			}
			if want := actionLabels[loc.want][tc.action]; d.GetActionLabel() != want {
				t.Errorf("%s (%s): action label %q, want %q", tc.name, loc.tag, d.GetActionLabel(), want)
			}
			var until time.Time
			if d.GetAccessUntil() != nil {
				until = d.GetAccessUntil().AsTime()
			}
			if !until.Equal(tc.accessUntil) {
				t.Errorf("%s: access_until %v, want %v", tc.name, until, tc.accessUntil)
			}
		}
		seen[tc.status] = true
		kinds[tc.kind] = true
	}
	// The empty lookup is the remaining way to status NONE.
	for _, s := range billingv1.BillingStatus_value {
		st := billingv1.BillingStatus(s)
		if st != billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED && !seen[st] {
			t.Errorf("no case reaches %v", st)
		}
	}
	for _, k := range []string{"none", "trialing", "trial_ending", "active", "canceled_at_period_end", "canceled",
		"past_due_retry", "past_due", "unpaid", "paused", "incomplete", "refunded", "dispute_open", "unknown"} {
		if !kinds[k] {
			t.Errorf("no case shows %q", k)
		}
	}
}

// TestDisplayUnknownClears: a dead letter stops making the status unknown
// once its event is applied (a replay), and staff clear the rest by
// reconciling the customer.
func TestDisplayUnknownClears(t *testing.T) {
	bd := setup(t, setupOptions{})
	cli := bd.client()
	ctx := as(context.Background(), bd.read)
	b := journey.New(t, "cus_dlclear", displayBase)
	for _, ev := range journey.Events(journey.SubscriptionLifecycle(b)[:3]) {
		if _, err := bd.store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kind := func() string {
		t.Helper()
		st, err := cli.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: b.CustomerID}})
		if err != nil {
			t.Fatal(err)
		}
		return st.GetDisplay().GetKind()
	}
	sub := "sub_dlclear"
	replayed := b.Subscription("customer.subscription.updated", 40*86400, sub, "active", false, map[string]any{"cancel_at_period_end": true})
	if err := bd.store.RecordDeadLetter(ctx, replayed); err != nil {
		t.Fatal(err)
	}
	if got := kind(); got != "unknown" {
		t.Fatalf("after the dead letter: %q, want unknown", got)
	}
	if _, err := bd.store.ApplyEvent(ctx, replayed, state.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := kind(); got != "active" {
		t.Fatalf("after the replay applied: %q, want active", got)
	}
	purged := b.Invoice("invoice.paid", 41*86400, "in_purged", sub, "ch_purged", "pi_purged", "paid")
	if err := bd.store.RecordDeadLetter(ctx, purged); err != nil {
		t.Fatal(err)
	}
	if got := kind(); got != "unknown" {
		t.Fatalf("after a second dead letter: %q, want unknown", got)
	}
	st, err := cli.ReconcileCustomer(as(context.Background(), bd.admin), &billingv1.ReconcileCustomerRequest{CustomerId: b.CustomerID})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetDisplay().GetKind() != "active" || kind() != "active" {
		t.Fatalf("after reconcile: %q, want active", st.GetDisplay().GetKind())
	}
}

// TestIncludeEmpty: a lookup with no billing record answers NONE and the
// empty state instead of NotFound, only when asked to.
func TestIncludeEmpty(t *testing.T) {
	bd := setup(t, setupOptions{})
	cli := bd.client()
	ctx := as(context.Background(), bd.read)
	_, err := cli.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_Email{Email: "nobody@example.com"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("without include_empty: %v, want NotFound", err)
	}
	for _, req := range []*billingv1.GetCustomerStatusRequest{
		{Lookup: &billingv1.GetCustomerStatusRequest_Email{Email: "nobody@example.com"}, IncludeEmpty: true, Locale: "de"},
		{Lookup: &billingv1.GetCustomerStatusRequest_UserId{UserId: "user_nobody"}, IncludeEmpty: true, Locale: "de"},
		{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "cus_nobody"}, IncludeEmpty: true, Locale: "de"},
	} {
		st, err := cli.GetCustomerStatus(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		d := st.GetDisplay()
		if st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_NONE || st.GetEntitled() || d.GetKind() != "none" ||
			d.GetHeadline() != "Kein aktives Abo" || d.GetTone() != neutral || d.GetAction() != noAction {
			t.Errorf("%v: %v", req, st)
		}
	}
	// A customer known only by a dead-lettered event is not empty: its
	// status cannot be vouched for.
	b := journey.New(t, "cus_onlydead", displayBase)
	if err := bd.store.RecordDeadLetter(ctx, b.Subscription("customer.subscription.created", 0, "sub_onlydead", "active", false, nil)); err != nil {
		t.Fatal(err)
	}
	st, err := cli.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: b.CustomerID}, IncludeEmpty: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_NONE || st.GetDisplay().GetKind() != "unknown" ||
		st.GetDisplay().GetDetail() != "We're on it. Nothing on your account changes meanwhile." {
		t.Errorf("dead-lettered only: %v", st)
	}
}

// TestDisplayMessages: the words for when the server cannot be reached,
// per locale, with the closest catalogue for a regional tag and English
// for one no catalogue has.
func TestDisplayMessages(t *testing.T) {
	bd := setup(t, setupOptions{})
	cli := bd.client()
	ctx := as(context.Background(), bd.read)
	for tag, want := range map[string]string{"en": "We can't reach the server", "de-CH": "Der Server ist nicht erreichbar", "fr": "We can't reach the server", "": "We can't reach the server"} {
		m, err := cli.GetDisplayMessages(ctx, &billingv1.GetDisplayMessagesRequest{Locale: tag})
		if err != nil {
			t.Fatal(err)
		}
		if m.GetUnreachableHeadline() != want || m.GetUnreachableDetail() == "" || m.GetRetryLabel() == "" || len(m.GetActionLabels()) != 4 {
			t.Errorf("%q: %v", tag, m)
		}
	}
	if _, err := cli.GetDisplayMessages(context.Background(), &billingv1.GetDisplayMessagesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v", err)
	}
	_, err := cli.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Locale: strings.Repeat("a", 36), Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "cus_x"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("36-byte locale: %v, want InvalidArgument", err)
	}
}
