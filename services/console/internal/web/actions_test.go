package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/consoletest"
	"github.com/launchready/launchready/services/console/internal/policy"
	"github.com/launchready/launchready/services/console/internal/store"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

const testPolicy = `
refund_caps:
  billing_admin: 50000
approval:
  refund_above: 20000
`

type actionBundle struct {
	*bundle
	stripe *consoletest.StripeRecorder
}

// setupActions runs the console with billing-state's BillingAdminService
// in front of a recording Stripe (or stripe-mock, through the recorder,
// when upstream is set), under testPolicy.
func setupActions(t *testing.T, upstream string) *actionBundle {
	t.Helper()
	rec := consoletest.NewStripeRecorder(t, upstream)
	billing := startBillingState(t, rec.Server.URL)
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(o *Options) { o.Billing, o.Policy = billing, pol })
	return &actionBundle{bundle: b, stripe: rec}
}

// signedIn is a browser signed in as a new account with role.
func (b *actionBundle) signedIn(t *testing.T, email string, role auth.Role) *browser {
	t.Helper()
	b.addStaff(t, email, role, goodPassword, false)
	br := b.browser(t)
	if p := br.signIn(email, goodPassword); p.status != http.StatusSeeOther {
		t.Fatalf("sign in %s: %d", email, p.status)
	}
	return br
}

// refundForm draws the refund form and fills it in.
func refundForm(t *testing.T, br *browser, payment string, amount, reason string) url.Values {
	t.Helper()
	p := br.get("/actions/new/refund?customer=cus_TestA1&payment=" + payment)
	if p.status != http.StatusOK {
		t.Fatalf("refund form: %d", p.status)
	}
	return url.Values{"csrf": {br.csrf()}, "action_id": {actionIDOf(t, p.body)}, "customer": {"cus_TestA1"}, "payment": {payment},
		"scope": {"partial"}, "amount": {amount}, "stripe_reason": {"requested_by_customer"}, "reason": {reason}}
}

// confirm posts the form's review step, checks the confirmation page, then
// posts the confirmation.
func confirm(t *testing.T, br *browser, form url.Values) page {
	t.Helper()
	review := br.post("/actions/new/refund", form)
	if review.status != http.StatusOK || !strings.Contains(review.body, `id="confirm-form"`) {
		t.Fatalf("review: %d %s", review.status, review.body)
	}
	form.Set("confirm", "yes")
	return br.post("/actions/new/refund", form)
}

func (b *actionBundle) action(t *testing.T, id string) store.Action {
	t.Helper()
	a, err := store.ActionByID(b.ctx, b.pool, id, false)
	if err != nil {
		t.Fatalf("action %s: %v", id, err)
	}
	return a
}

// callsFor returns the Stripe calls made for action id: the tests share
// one Stripe, each with actions of its own.
func (b *actionBundle) callsFor(id string) []consoletest.StripeCall {
	var out []consoletest.StripeCall
	for _, c := range b.stripe.Calls() {
		if strings.Contains(c.IdempotencyKey, id) {
			out = append(out, c)
		}
	}
	return out
}

// actionsEnv is one billing-state and one recording Stripe for the action
// tests (billing-state takes seconds to start); each test has a console
// and a database of its own.
type actionsEnv struct {
	stripe  *consoletest.StripeRecorder
	billing *Billing
	policy  policy.Policy
}

func (e *actionsEnv) console(t *testing.T) *actionBundle {
	t.Helper()
	b := setup(t, func(o *Options) { o.Billing, o.Policy = e.billing, e.policy })
	return &actionBundle{bundle: b, stripe: e.stripe}
}

func TestActions(t *testing.T) {
	rec := consoletest.NewStripeRecorder(t, "")
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	env := &actionsEnv{stripe: rec, billing: startBillingState(t, rec.Server.URL), policy: pol}
	for name, test := range map[string]func(*testing.T, *actionsEnv){
		"a refund submitted twice is one Stripe call":            testARefundSubmittedTwiceIsOneStripeCall,
		"a refund above the role's cap is refused before a call": testARefundAboveTheRoleCapIsRefusedBeforeAnyCall,
		"a refund above the threshold waits for a second staff":  testARefundAboveTheThresholdWaitsForASecondStaffMember,
		"a rejected action never runs":                           testARejectedActionNeverRuns,
		"Stripe's refusal is shown and nothing is marked done":   testStripesRefusalIsShownAndNothingIsMarkedDone,
		"only billing admins act":                                testOnlyBillingAdminsAct,
		"the customer page offers the actions to billing admins": testCustomerPageOffersTheActions,
	} {
		t.Run(name, func(t *testing.T) { test(t, env) })
	}
}

func testARefundSubmittedTwiceIsOneStripeCall(t *testing.T, env *actionsEnv) {
	b := env.console(t)
	br := b.signedIn(t, "fin@example.com", auth.BillingAdmin)
	form := refundForm(t, br, "pi_Good1", "1250", "customer asked on the phone")
	id := form.Get("action_id")

	first := confirm(t, br, form)
	second := br.post("/actions/new/refund", form) // a double click, or the browser's retry
	for _, p := range []page{first, second} {
		if p.status != http.StatusSeeOther || p.location != "/actions/"+id {
			t.Fatalf("submit: %d to %q: %s", p.status, p.location, p.body)
		}
	}
	calls := b.callsFor(id)
	if len(calls) != 1 {
		t.Fatalf("Stripe got %d refund calls, want 1: %+v", len(calls), calls)
	}
	c := calls[0]
	if c.IdempotencyKey == "" || !strings.Contains(c.IdempotencyKey, id) || c.Form.Get("amount") != "1250" ||
		c.Form.Get("payment_intent") != "pi_Good1" || c.Form.Get("metadata[launchready_action_id]") != id {
		t.Fatalf("Stripe call %+v", c)
	}
	a := b.action(t, id)
	if a.State != store.ActionSucceeded || !strings.HasPrefix(a.StripeObject, "re_test") || a.RequestedBy != "fin@example.com" {
		t.Fatalf("action %+v", a)
	}
	shown := br.get(first.location)
	if !strings.Contains(shown.body, "Done: Stripe made the change ("+a.StripeObject+")") {
		t.Fatalf("action page: %s", shown.body)
	}
	rows, err := store.ListAudit(b.ctx, b.pool, store.AuditFilter{Actor: "fin@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, r := range rows {
		if r.Action == policy.Refund {
			outcomes = append(outcomes, r.Outcome)
			if r.Reason != "customer asked on the phone" || r.CustomerID != "cus_TestA1" || len(r.After) == 0 {
				t.Errorf("audit row %+v", r)
			}
			if r.Outcome == "succeeded" && (!strings.Contains(string(r.Before), `"submitted"`) || !strings.Contains(string(r.After), a.StripeObject)) {
				t.Errorf("before/after of the result: %s -> %s", r.Before, r.After)
			}
		}
	}
	if !slices.Equal(outcomes, []string{"succeeded", "requested"}) {
		t.Fatalf("audit outcomes (newest first) %v", outcomes)
	}
}

func testARefundAboveTheRoleCapIsRefusedBeforeAnyCall(t *testing.T, env *actionsEnv) {
	b := env.console(t)
	br := b.signedIn(t, "fin@example.com", auth.BillingAdmin)
	form := refundForm(t, br, "pi_Big1", "50001", "goodwill")
	form.Set("confirm", "yes") // straight to the last step: the server checks anyway
	p := br.post("/actions/new/refund", form)
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "above your role&#39;s cap of 500.00") {
		t.Fatalf("above the cap: %d %s", p.status, p.body)
	}
	if n := len(b.callsFor(form.Get("action_id"))); n != 0 {
		t.Fatalf("Stripe got %d calls", n)
	}
	if _, err := store.ActionByID(b.ctx, b.pool, form.Get("action_id"), false); err == nil {
		t.Fatal("a refused action was recorded as an action")
	}
	if rows := b.auditRows(t, "fin@example.com"); !slices.Contains(rows, [2]string{"refund", "refused_by_policy"}) {
		t.Fatalf("audit %v", rows)
	}
}

func testARefundAboveTheThresholdWaitsForASecondStaffMember(t *testing.T, env *actionsEnv) {
	b := env.console(t)
	asker := b.signedIn(t, "fin@example.com", auth.BillingAdmin)
	form := refundForm(t, asker, "pi_Mid1", "25000", "double charge")
	id := form.Get("action_id")
	review := asker.post("/actions/new/refund", form)
	if !strings.Contains(review.body, `id="needs-approval"`) {
		t.Fatalf("the confirmation should say an approval is needed: %s", review.body)
	}
	form.Set("confirm", "yes")
	if p := asker.post("/actions/new/refund", form); p.status != http.StatusSeeOther {
		t.Fatalf("submit: %d", p.status)
	}
	if a := b.action(t, id); a.State != store.ActionPendingApproval {
		t.Fatalf("state %s, want pending_approval", a.State)
	}
	if n := len(b.callsFor(id)); n != 0 {
		t.Fatalf("Stripe called before approval: %d", n)
	}
	// The asker cannot approve their own action.
	if p := asker.post("/approvals/"+id+"/approve", url.Values{"csrf": {asker.csrf()}}); p.status != http.StatusForbidden {
		t.Fatalf("self approval: %d", p.status)
	}
	if n := len(b.callsFor(id)); n != 0 || b.action(t, id).State != store.ActionPendingApproval {
		t.Fatal("a self approval ran the action")
	}
	// A second staff member sees it in the list and approves it.
	other := b.signedIn(t, "lead@example.com", auth.BillingAdmin)
	list := other.get("/approvals")
	if !strings.Contains(list.body, `id="approval-`+id+`"`) {
		t.Fatalf("pending approvals: %s", list.body)
	}
	if p := other.post("/approvals/"+id+"/approve", url.Values{"csrf": {other.csrf()}}); p.status != http.StatusSeeOther {
		t.Fatalf("approve: %d %s", p.status, p.body)
	}
	if calls := b.callsFor(id); len(calls) != 1 || calls[0].Form.Get("amount") != "25000" {
		t.Fatalf("Stripe calls after approval: %+v", calls)
	}
	a := b.action(t, id)
	if a.State != store.ActionSucceeded || a.ApprovedBy != "lead@example.com" {
		t.Fatalf("action %+v", a)
	}
	if rows := b.auditRows(t, "lead@example.com"); !slices.Contains(rows, [2]string{"refund_approval", "approved"}) || !slices.Contains(rows, [2]string{"refund", "succeeded"}) {
		t.Fatalf("approver's audit %v", rows)
	}
	if rows := b.auditRows(t, "fin@example.com"); !slices.Contains(rows, [2]string{"refund_approval", "refused_self_approval"}) {
		t.Fatalf("asker's audit %v", rows)
	}
}

func testARejectedActionNeverRuns(t *testing.T, env *actionsEnv) {
	b := env.console(t)
	asker := b.signedIn(t, "fin@example.com", auth.BillingAdmin)
	form := refundForm(t, asker, "pi_Mid2", "30000", "double charge")
	form.Set("confirm", "yes")
	asker.post("/actions/new/refund", form)
	other := b.signedIn(t, "lead@example.com", auth.BillingAdmin)
	id := form.Get("action_id")
	if p := other.post("/approvals/"+id+"/reject", url.Values{"csrf": {other.csrf()}}); p.status != http.StatusBadRequest {
		t.Fatalf("reject without a reason: %d", p.status)
	}
	if p := other.post("/approvals/"+id+"/reject", url.Values{"csrf": {other.csrf()}, "reason": {"not a double charge"}}); p.status != http.StatusSeeOther {
		t.Fatalf("reject: %d", p.status)
	}
	if p := other.post("/approvals/"+id+"/approve", url.Values{"csrf": {other.csrf()}}); p.status != http.StatusSeeOther {
		t.Fatalf("approve after reject: %d", p.status)
	}
	if a := b.action(t, id); a.State != store.ActionRejected || a.DecidedReason != "not a double charge" {
		t.Fatalf("action %+v", a)
	}
	if n := len(b.callsFor(id)); n != 0 {
		t.Fatalf("Stripe got %d calls for a rejected action", n)
	}
}

func testStripesRefusalIsShownAndNothingIsMarkedDone(t *testing.T, env *actionsEnv) {
	b := env.console(t)
	br := b.signedIn(t, "fin@example.com", auth.BillingAdmin)
	for payment, words := range map[string]string{"pi_declined": "the card was declined", "pi_refundedbefore": "already been refunded"} {
		form := refundForm(t, br, payment, "500", "refund please")
		p := confirm(t, br, form)
		a := b.action(t, form.Get("action_id"))
		if a.State != store.ActionFailed || a.StripeObject != "" {
			t.Fatalf("%s: action %+v", payment, a)
		}
		shown := br.get(p.location)
		if !strings.Contains(strings.ToLower(shown.body), words) || !strings.Contains(shown.body, "Nothing was changed") || strings.Contains(shown.body, "Done:") {
			t.Fatalf("%s: page %s", payment, shown.body)
		}
	}
	if rows := b.auditRows(t, "fin@example.com"); !slices.Contains(rows, [2]string{"refund", "stripe_refused"}) || slices.Contains(rows, [2]string{"refund", "succeeded"}) {
		t.Fatalf("audit %v", rows)
	}
}

func testOnlyBillingAdminsAct(t *testing.T, env *actionsEnv) {
	b := env.console(t)
	admin := b.signedIn(t, "fin@example.com", auth.BillingAdmin)
	form := refundForm(t, admin, "pi_Forged1", "100", "forged")
	form.Set("confirm", "yes")
	for _, role := range []auth.Role{auth.Viewer, auth.Support} {
		br := b.signedIn(t, string(role)+"@example.com", role)
		if p := br.get("/"); strings.Contains(p.body, `id="nav-approvals"`) {
			t.Errorf("%s sees the approvals link", role)
		}
		if p := br.get("/actions/new/refund"); p.status != http.StatusForbidden {
			t.Errorf("%s gets the refund form: %d", role, p.status)
		}
		// The same POST a billing_admin would send, with this session's own
		// valid CSRF token.
		forged := url.Values{}
		for k, v := range form {
			forged[k] = v
		}
		forged.Set("csrf", br.csrf())
		if p := br.post("/actions/new/refund", forged); p.status != http.StatusForbidden {
			t.Errorf("%s's forged refund: %d", role, p.status)
		}
	}
	// A billing_admin's POST without its CSRF token.
	noToken := url.Values{}
	for k, v := range form {
		noToken[k] = v
	}
	noToken.Del("csrf")
	if p := admin.post("/actions/new/refund", noToken); p.status != http.StatusForbidden {
		t.Errorf("POST without a CSRF token: %d", p.status)
	}
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM console.actions`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("actions written: %d %v", n, err)
	}
	if calls := b.callsFor(form.Get("action_id")); len(calls) != 0 {
		t.Fatalf("Stripe got %d calls", len(calls))
	}
	if p := admin.get("/"); !strings.Contains(p.body, `id="nav-approvals"`) {
		t.Error("a billing_admin should see the approvals link")
	}
}

// submit draws the form at path with query, fills it in with fields, and
// goes through the review and the confirmation; it returns the action.
func (b *actionBundle) submit(t *testing.T, br *browser, path, query string, fields url.Values) store.Action {
	t.Helper()
	p := br.get("/actions/new/" + path + "?" + query)
	if p.status != http.StatusOK {
		t.Fatalf("%s form: %d", path, p.status)
	}
	fields.Set("csrf", br.csrf())
	fields.Set("action_id", actionIDOf(t, p.body))
	if review := br.post("/actions/new/"+path, fields); review.status != http.StatusOK || !strings.Contains(review.body, `id="confirm-form"`) {
		t.Fatalf("%s review: %d %s", path, review.status, review.body)
	}
	fields.Set("confirm", "yes")
	if done := br.post("/actions/new/"+path, fields); done.status != http.StatusSeeOther {
		t.Fatalf("%s confirm: %d %s", path, done.status, done.body)
	}
	return b.action(t, fields.Get("action_id"))
}

// The requests each action makes, against stripe-mock, which answers only
// what Stripe's specification allows.
func TestActionRequestsHaveStripesShape(t *testing.T) {
	b := setupActions(t, stripemock.Start(t))
	br := b.signedIn(t, "fin@example.com", auth.BillingAdmin)

	refund := b.submit(t, br, "refund", "customer=cus_ShapeA&payment=pi_ShapeA", url.Values{"customer": {"cus_ShapeA"},
		"payment": {"pi_ShapeA"}, "scope": {"partial"}, "amount": {"700"}, "stripe_reason": {"duplicate"}, "reason": {"charged twice"}})
	cancelNow := b.submit(t, br, "cancel", "customer=cus_ShapeA", url.Values{"customer": {"cus_ShapeA"},
		"subscription": {"sub_ShapeNow"}, "when": {"now"}, "reason": {"asked to stop"}})
	cancelLater := b.submit(t, br, "cancel", "customer=cus_ShapeA", url.Values{"customer": {"cus_ShapeA"},
		"subscription": {"sub_ShapeLater"}, "when": {"period_end"}, "reason": {"asked to stop at renewal"}})
	change := b.submit(t, br, "change-plan", "customer=cus_ShapeA", url.Values{"customer": {"cus_ShapeA"},
		"subscription": {"sub_ShapePlan"}, "item": {"si_ShapePlan"}, "price": {"price_ShapePro"}, "proration": {"always_invoice"},
		"reason": {"upgrade"}})
	for _, a := range []store.Action{refund, cancelNow, cancelLater, change} {
		if a.State != store.ActionSucceeded || a.StripeObject == "" {
			t.Errorf("%s %s: %s %q (stripe-mock refused the request?)", a.Kind, a.Target, a.State, a.ErrorCode)
		}
	}

	calls := map[string][]consoletest.StripeCall{}
	for _, c := range b.stripe.Calls() {
		calls[c.Method+" "+c.Path] = append(calls[c.Method+" "+c.Path], c)
	}
	want := func(key string, fields map[string]string, actionID string) {
		t.Helper()
		cs := calls[key]
		if len(cs) == 0 {
			t.Errorf("no %s; calls %v", key, calls)
			return
		}
		c := cs[0]
		if c.IdempotencyKey == "" || !strings.Contains(c.IdempotencyKey, actionID) {
			t.Errorf("%s: idempotency key %q for action %s", key, c.IdempotencyKey, actionID)
		}
		for k, v := range fields {
			if got := c.Form.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", key, k, got, v)
			}
		}
	}
	want("POST /v1/refunds", map[string]string{"payment_intent": "pi_ShapeA", "amount": "700", "reason": "duplicate",
		"metadata[launchready_action_id]": refund.ID}, refund.ID)
	want("DELETE /v1/subscriptions/sub_ShapeNow", nil, cancelNow.ID)
	want("POST /v1/subscriptions/sub_ShapeLater", map[string]string{"cancel_at_period_end": "true",
		"metadata[launchready_action_id]": cancelLater.ID}, cancelLater.ID)
	want("POST /v1/subscriptions/sub_ShapePlan", map[string]string{"items[0][id]": "si_ShapePlan", "items[0][price]": "price_ShapePro",
		"proration_behavior": "always_invoice", "metadata[launchready_action_id]": change.ID}, change.ID)
}

func testCustomerPageOffersTheActions(t *testing.T, env *actionsEnv) {
	b := env.console(t)
	admin := b.signedIn(t, "fin@example.com", auth.BillingAdmin)
	p := admin.get("/customers/cus_Page1")
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="action-buttons"`) ||
		!strings.Contains(p.body, `href="/actions/new/refund?customer=cus_Page1"`) {
		t.Fatalf("a billing_admin's customer page: %d %s", p.status, p.body)
	}
	for _, role := range []auth.Role{auth.Viewer, auth.Support} {
		br := b.signedIn(t, string(role)+"@example.com", role)
		if p := br.get("/customers/cus_Page1"); p.status != http.StatusOK || strings.Contains(p.body, `id="action-buttons"`) {
			t.Errorf("%s's customer page: %d, buttons shown: %v", role, p.status, strings.Contains(p.body, `id="action-buttons"`))
		}
	}
}
