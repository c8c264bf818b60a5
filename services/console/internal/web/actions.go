package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/pg"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/policy"
	"github.com/launchready/launchready/services/console/internal/store"
)

// actionRequest is one action's form, kept whole in the action's row so
// an approval runs exactly what was asked.
type actionRequest struct {
	ID         string `json:"action_id"`
	Kind       string `json:"kind"`
	CustomerID string `json:"customer_id"`
	// Refund: a payment intent (pi_) or charge (ch_), the amount in the
	// smallest currency unit, full or partial as the staff member chose,
	// and Stripe's reason code.
	Payment      string `json:"payment,omitempty"`
	Amount       int64  `json:"amount,omitempty"`
	Full         bool   `json:"full,omitempty"`
	StripeReason string `json:"stripe_reason,omitempty"`
	// Cancel and change plan.
	Subscription string `json:"subscription,omitempty"`
	AtPeriodEnd  bool   `json:"at_period_end,omitempty"`
	Price        string `json:"price,omitempty"`
	Item         string `json:"item,omitempty"`
	Proration    string `json:"proration,omitempty"`
	Reason       string `json:"reason"`
}

// Target is the Stripe object acted on.
func (a actionRequest) Target() string {
	if a.Kind == policy.Refund {
		return a.Payment
	}
	return a.Subscription
}

var kindTitles = map[string]string{
	policy.Refund: "Refund a payment", policy.Cancel: "Cancel a subscription", policy.ChangePlan: "Change a subscription's plan",
}

// kindOfPath maps the form's path to its kind.
var kindOfPath = map[string]string{"refund": policy.Refund, "cancel": policy.Cancel, "change-plan": policy.ChangePlan}

func stripeID(s string, prefixes ...string) bool {
	if len(s) > 255 || strings.ContainsAny(s, " /?#&") {
		return false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) && len(s) > len(p) {
			return true
		}
	}
	return false
}

// readAction reads and checks a submitted form; the message says what is
// wrong in the staff member's terms.
func readAction(kind string, f map[string][]string) (actionRequest, string) {
	get := func(k string) string {
		if v := f[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	a := actionRequest{ID: get("action_id"), Kind: kind, CustomerID: get("customer"), Reason: get("reason")}
	if !actionIDShape(a.ID) {
		return a, "The form has no action id; open it again."
	}
	if a.CustomerID != "" && !stripeID(a.CustomerID, "cus_") {
		return a, "The customer is not a Stripe customer id (cus_...)."
	}
	if a.Reason == "" || len(a.Reason) > maxReasonLength {
		return a, fmt.Sprintf("Give a reason (at most %d characters).", maxReasonLength)
	}
	switch kind {
	case policy.Refund:
		a.Payment, a.StripeReason = get("payment"), get("stripe_reason")
		a.Full = get("scope") == "full"
		if !stripeID(a.Payment, "pi_", "ch_") {
			return a, "Name the payment: a payment intent (pi_...) or a charge (ch_...)."
		}
		n, err := strconv.ParseInt(get("amount"), 10, 64)
		if err != nil || n <= 0 {
			return a, "The amount must be a whole number of the smallest currency unit (cents), above 0."
		}
		a.Amount = n
		switch a.StripeReason {
		case "", "duplicate", "fraudulent", "requested_by_customer":
		default:
			return a, "Stripe's reason must be duplicate, fraudulent or requested by the customer."
		}
	case policy.Cancel:
		a.Subscription, a.AtPeriodEnd = get("subscription"), get("when") == "period_end"
		if !stripeID(a.Subscription, "sub_") {
			return a, "Name the subscription (sub_...)."
		}
	case policy.ChangePlan:
		a.Subscription, a.Price, a.Item, a.Proration = get("subscription"), get("price"), get("item"), get("proration")
		if !stripeID(a.Subscription, "sub_") || !stripeID(a.Price, "price_") {
			return a, "Name the subscription (sub_...) and the new price (price_...)."
		}
		if a.Item != "" && !stripeID(a.Item, "si_") {
			return a, "The subscription item is not an item id (si_...)."
		}
		switch a.Proration {
		case "", "create_prorations", "always_invoice", "none":
		default:
			return a, "Proration must be create_prorations, always_invoice or none."
		}
	}
	return a, ""
}

// actionIDShape is billingv1.ValidActionID, and at least as long as the
// ids the forms draw ("act_" and 24 random characters), so a guessable
// short id is never taken.
func actionIDShape(id string) bool {
	return len(id) >= 16 && billingv1.ValidActionID(id)
}

// actionForm draws an action's form with a new action id: submitting it
// twice is one action.
func (s *Server) actionForm(w http.ResponseWriter, r *http.Request, q *request) {
	kind := kindOfPath[r.PathValue("kind")]
	if kind == "" {
		http.NotFound(w, r)
		return
	}
	id, err := randomToken(18)
	if err != nil {
		s.failed(w, r, q, "draw the form", err)
		return
	}
	in := r.URL.Query()
	a := actionRequest{ID: "act_" + id, Kind: kind, CustomerID: in.Get("customer"), Payment: in.Get("payment"),
		Subscription: in.Get("subscription")}
	if n, err := strconv.ParseInt(in.Get("amount"), 10, 64); err == nil && n > 0 {
		a.Amount = n
	}
	s.render(w, r, http.StatusOK, "action_form", q, map[string]any{"Title": kindTitles[kind], "A": a, "Path": r.PathValue("kind")})
}

// submitAction is a form's two steps: without confirm=yes it shows what
// will happen and asks again; with it, the policy decides, then the action
// waits for approval or runs.
func (s *Server) submitAction(w http.ResponseWriter, r *http.Request, q *request) {
	kind := kindOfPath[r.PathValue("kind")]
	if kind == "" {
		http.NotFound(w, r)
		return
	}
	a, problem := readAction(kind, r.PostForm)
	data := map[string]any{"Title": kindTitles[kind], "A": a, "Path": r.PathValue("kind")}
	if problem != "" {
		data["Message"] = problem
		s.render(w, r, http.StatusBadRequest, "action_form", q, data)
		return
	}
	ctx := r.Context()
	staff := q.Staff()
	needsApproval, err := s.opts.Policy.Check(q.Role, kind, a.Amount)
	var refusal *policy.Refusal
	if errors.As(err, &refusal) {
		s.audit(ctx, store.AuditEntry{Actor: staff.Email, Action: kind, Outcome: "refused_by_policy", CustomerID: a.CustomerID,
			Target: a.Target(), Reason: a.Reason, RemoteAddr: clientIP(r),
			After: jsonOf(map[string]any{"action_id": a.ID, "amount": a.Amount, "cap": refusal.Cap, "role": q.Role})})
		data["Message"] = fmt.Sprintf("Refused: a refund of %s is above your role's cap of %s. Ask someone whose role allows it.",
			money(a.Amount), money(refusal.Cap))
		s.render(w, r, http.StatusForbidden, "action_form", q, data)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		data["NeedsApproval"] = needsApproval
		s.render(w, r, http.StatusOK, "action_confirm", q, data)
		return
	}
	state := store.ActionSubmitted
	if needsApproval {
		state = store.ActionPendingApproval
	}
	params, _ := json.Marshal(a)
	var rec store.Action
	var created bool
	err = pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
		var err error
		rec, created, err = store.InsertAction(ctx, tx, store.Action{ID: a.ID, Kind: kind, CustomerID: a.CustomerID, Target: a.Target(),
			Params: params, Amount: a.Amount, Reason: a.Reason, RequestedBy: staff.Email, RequestedRole: string(q.Role), State: state})
		if err != nil || !created {
			return err
		}
		outcome := "requested"
		if needsApproval {
			outcome = "awaiting_approval"
		}
		return store.Audit(ctx, tx, store.AuditEntry{Actor: staff.Email, Action: kind, Outcome: outcome, CustomerID: a.CustomerID,
			Target: a.Target(), Reason: a.Reason, RemoteAddr: clientIP(r), After: jsonOf(map[string]any{"action": a, "state": state})})
	})
	if err != nil {
		s.failed(w, r, q, "record the action", err)
		return
	}
	if !created && rec.RequestedBy != staff.Email {
		s.forbidden(w, r, q, "action id "+a.ID+" belongs to another staff member")
		return
	}
	// A second submission of a form already answered shows the answer; one
	// still submitted (its answer lost, or in flight) asks billing-state
	// again with the same action id, which makes no second change.
	if rec.State == store.ActionSubmitted {
		s.runAction(ctx, q.Staff().Email, rec, "")
	}
	http.Redirect(w, r, "/actions/"+rec.ID, http.StatusSeeOther)
}

// runAction sends a submitted action to billing-state and records its
// answer. Only billing-state's word that Stripe made the change marks it
// succeeded; a refusal marks it failed with Stripe's code; no answer
// leaves it submitted (asking again is safe).
func (s *Server) runAction(ctx context.Context, actor string, rec store.Action, approvedBy string) {
	var a actionRequest
	if err := json.Unmarshal(rec.Params, &a); err != nil {
		s.opts.Log.ErrorContext(ctx, "action params", "action", rec.ID, "error", err)
		return
	}
	who := &billingv1.Actor{Email: rec.RequestedBy, Role: rec.RequestedRole, ApprovedBy: approvedBy}
	if approvedBy == "" {
		who.ApprovedBy = rec.ApprovedBy
	}
	var res *billingv1.AdminAction
	var err error
	switch rec.Kind {
	case policy.Refund:
		req := &billingv1.RefundPaymentRequest{ActionId: a.ID, Actor: who, CustomerId: a.CustomerID, Amount: a.Amount,
			Reason: a.Reason, StripeReason: a.StripeReason}
		if strings.HasPrefix(a.Payment, "ch_") {
			req.ChargeId = a.Payment
		} else {
			req.PaymentIntentId = a.Payment
		}
		res, err = s.opts.Billing.Admin.RefundPayment(ctx, req)
	case policy.Cancel:
		res, err = s.opts.Billing.Admin.CancelSubscription(ctx, &billingv1.CancelSubscriptionRequest{ActionId: a.ID, Actor: who,
			CustomerId: a.CustomerID, SubscriptionId: a.Subscription, AtPeriodEnd: a.AtPeriodEnd, Reason: a.Reason})
	case policy.ChangePlan:
		res, err = s.opts.Billing.Admin.ChangeSubscriptionPlan(ctx, &billingv1.ChangeSubscriptionPlanRequest{ActionId: a.ID, Actor: who,
			CustomerId: a.CustomerID, SubscriptionId: a.Subscription, SubscriptionItemId: a.Item, PriceId: a.Price,
			ProrationBehavior: a.Proration, Reason: a.Reason})
	}
	state, object, code, outcome := store.ActionSubmitted, "", "", "no_answer"
	var words string
	switch {
	case err == nil && res.GetState() == billingv1.AdminAction_STATE_SUCCEEDED:
		state, object, outcome = store.ActionSucceeded, res.GetStripeObjectId(), "succeeded"
	case err == nil:
		// Recorded by billing-state, Stripe's answer not known yet.
	default:
		if c, w, ok := stripeRefusal(err); ok {
			state, code, words, outcome = store.ActionFailed, c, w, "stripe_refused"
		} else {
			words = status.Convert(err).Message()
			s.opts.Log.WarnContext(ctx, "staff action not answered", "action", rec.ID, "error", err)
		}
	}
	err = pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
		if state != store.ActionSubmitted {
			if err := store.FinishAction(ctx, tx, rec.ID, state, object, code); err != nil {
				return err
			}
		}
		return store.Audit(ctx, tx, store.AuditEntry{Actor: actor, Action: rec.Kind, Outcome: outcome, CustomerID: rec.CustomerID,
			Target: rec.Target, Reason: rec.Reason,
			Before: jsonOf(map[string]any{"action_id": rec.ID, "state": store.ActionSubmitted}),
			After: jsonOf(map[string]any{"action_id": rec.ID, "state": state, "stripe_object_id": object, "error_code": code,
				"message": words, "replayed": res.GetReplayed(), "approved_by": who.ApprovedBy})})
	})
	if err != nil {
		s.opts.Log.ErrorContext(ctx, "record the action's answer", "action", rec.ID, "error", err)
	}
}

// stripeRefusal reads billing-state's answer that Stripe refused: its
// ErrorInfo in the stripe.com domain, with the words it gives.
func stripeRefusal(err error) (code, words string, ok bool) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo && info.GetDomain() == "stripe.com" {
			return info.GetReason(), st.Message(), true
		}
	}
	return "", "", false
}

// plainWords says what a Stripe error code means, for the action's page.
var plainWords = map[string]string{
	"card_declined":           "The card was declined.",
	"charge_already_refunded": "This payment has already been refunded.",
	"amount_too_large":        "The amount is more than is left to refund on this payment.",
	"charge_disputed":         "The payment is disputed; a refund must go through the dispute.",
	"resource_missing":        "Stripe has no such payment or subscription.",
}

func explain(code string) string {
	if w, ok := plainWords[code]; ok {
		return w
	}
	return "Stripe refused the action (" + code + ")."
}

func money(minor int64) string {
	return fmt.Sprintf("%d.%02d", minor/100, minor%100)
}

// actionPage shows one action and what became of it.
func (s *Server) actionPage(w http.ResponseWriter, r *http.Request, q *request) {
	rec, err := store.ActionByID(r.Context(), s.opts.Pool, r.PathValue("id"), false)
	if errors.Is(err, store.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.failed(w, r, q, "load the action", err)
		return
	}
	var a actionRequest
	_ = json.Unmarshal(rec.Params, &a)
	data := map[string]any{"Title": kindTitles[rec.Kind], "Rec": rec, "A": a}
	if rec.State == store.ActionFailed {
		data["Refusal"] = explain(rec.ErrorCode)
	}
	s.render(w, r, http.StatusOK, "action", q, data)
}

// approvals lists the actions waiting for a second staff member.
func (s *Server) approvals(w http.ResponseWriter, r *http.Request, q *request) {
	list, err := store.ListActions(r.Context(), s.opts.Pool, store.ActionPendingApproval, 200)
	if err != nil {
		s.failed(w, r, q, "list the approvals", err)
		return
	}
	s.render(w, r, http.StatusOK, "approvals", q, map[string]any{"Title": "Pending approvals", "Actions": list,
		"Notice": r.URL.Query().Get("done")})
}

// decide approves or rejects a pending action. The approver must be
// another staff member, whose own cap covers the amount; an approved
// action runs at once, with both names.
func (s *Server) decide(approve bool) handler {
	return func(w http.ResponseWriter, r *http.Request, q *request) {
		ctx := r.Context()
		me := q.Staff().Email
		reason := strings.TrimSpace(r.PostForm.Get("reason"))
		if len(reason) > maxReasonLength || (!approve && reason == "") {
			s.render(w, r, http.StatusBadRequest, "error", q, map[string]any{"Title": "Reason needed",
				"Message": fmt.Sprintf("A rejection needs a reason (at most %d characters).", maxReasonLength)})
			return
		}
		var rec store.Action
		var refused string
		err := pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
			var err error
			rec, err = store.ActionByID(ctx, tx, r.PathValue("id"), true)
			if err != nil {
				return err
			}
			if rec.State != store.ActionPendingApproval {
				refused = "not_pending"
				return nil
			}
			switch {
			case strings.EqualFold(rec.RequestedBy, me):
				refused = "self_approval"
			case approve && !s.opts.Policy.CanApprove(q.Role, rec.Kind, rec.Amount):
				refused = "above_approver_cap"
			}
			if refused != "" {
				return store.Audit(ctx, tx, store.AuditEntry{Actor: me, Action: rec.Kind + "_approval", Outcome: "refused_" + refused,
					CustomerID: rec.CustomerID, Target: rec.Target, Reason: reason, RemoteAddr: clientIP(r),
					After: jsonOf(map[string]any{"action_id": rec.ID, "requested_by": rec.RequestedBy})})
			}
			next, outcome := store.ActionSubmitted, "approved"
			if !approve {
				next, outcome = store.ActionRejected, "rejected"
			}
			if err := store.DecideAction(ctx, tx, rec.ID, next, me, reason); err != nil {
				return err
			}
			rec.State, rec.ApprovedBy = next, me
			return store.Audit(ctx, tx, store.AuditEntry{Actor: me, Action: rec.Kind + "_approval", Outcome: outcome,
				CustomerID: rec.CustomerID, Target: rec.Target, Reason: reason, RemoteAddr: clientIP(r),
				Before: jsonOf(map[string]any{"action_id": rec.ID, "state": store.ActionPendingApproval}),
				After:  jsonOf(map[string]any{"action_id": rec.ID, "state": next, "requested_by": rec.RequestedBy, "decided_by": me})})
		})
		if errors.Is(err, store.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			s.failed(w, r, q, "record the decision", err)
			return
		}
		switch refused {
		case "":
		case "not_pending":
			http.Redirect(w, r, "/actions/"+rec.ID, http.StatusSeeOther)
			return
		default:
			msg := "A second, different staff member must approve this action."
			if refused == "above_approver_cap" {
				msg = "The amount is above your own role's refund cap."
			}
			s.render(w, r, http.StatusForbidden, "error", q, map[string]any{"Title": "Not allowed", "Message": msg})
			return
		}
		if approve {
			s.runAction(ctx, me, rec, me)
		}
		http.Redirect(w, r, "/actions/"+rec.ID, http.StatusSeeOther)
	}
}

// actionRoutes adds the staff actions: forms and approvals for
// billing_admin and up, the action pages for support and up.
func (s *Server) actionRoutes() {
	s.mux.Handle("GET /actions/new/{kind}", s.page(auth.BillingAdmin, s.actionForm))
	s.mux.Handle("POST /actions/new/{kind}", s.action(auth.BillingAdmin, s.submitAction))
	s.mux.Handle("GET /actions/{id}", s.page(auth.Support, s.actionPage))
	s.mux.Handle("GET /approvals", s.page(auth.BillingAdmin, s.approvals))
	s.mux.Handle("POST /approvals/{id}/approve", s.action(auth.BillingAdmin, s.decide(true)))
	s.mux.Handle("POST /approvals/{id}/reject", s.action(auth.BillingAdmin, s.decide(false)))
}
