package grpcapi

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/admin"
)

// Bounds of BillingAdminService's own fields.
const (
	MaxActionIDBytes = billingv1.MaxActionIDBytes
	MaxReasonBytes   = 1000
	maxEnumBytes     = 32
	maxRoleBytes     = 64
)

// adminServer is BillingAdminService over admin.Service.
type adminServer struct {
	billingv1.UnimplementedBillingAdminServiceServer
	svc *admin.Service
}

func (s *adminServer) RefundPayment(ctx context.Context, r *billingv1.RefundPaymentRequest) (*billingv1.AdminAction, error) {
	req, err := actionRequest(r.GetActionId(), r.GetActor(), r.GetCustomerId(), r.GetReason())
	if err != nil {
		return nil, err
	}
	if (r.GetPaymentIntentId() == "") == (r.GetChargeId() == "") {
		return nil, status.Error(codes.InvalidArgument, "name exactly one of payment_intent_id and charge_id")
	}
	if r.GetAmount() < 0 {
		return nil, status.Error(codes.InvalidArgument, "amount: must not be negative (0 refunds what is left)")
	}
	switch r.GetStripeReason() {
	case "", "duplicate", "fraudulent", "requested_by_customer":
	default:
		return nil, status.Error(codes.InvalidArgument, "stripe_reason: duplicate, fraudulent, requested_by_customer or empty")
	}
	a, err := s.svc.Refund(ctx, req, stripeapi.RefundRequest{PaymentIntent: r.GetPaymentIntentId(), Charge: r.GetChargeId(),
		Amount: r.GetAmount(), Reason: r.GetStripeReason()})
	return actionAnswer(a, err)
}

func (s *adminServer) CancelSubscription(ctx context.Context, r *billingv1.CancelSubscriptionRequest) (*billingv1.AdminAction, error) {
	req, err := actionRequest(r.GetActionId(), r.GetActor(), r.GetCustomerId(), r.GetReason())
	if err != nil {
		return nil, err
	}
	if !stripeevent.IsStripeID(r.GetSubscriptionId()) {
		return nil, status.Error(codes.InvalidArgument, "subscription_id is required (a Stripe id)")
	}
	a, err := s.svc.CancelSubscription(ctx, req, r.GetSubscriptionId(), r.GetAtPeriodEnd())
	return actionAnswer(a, err)
}

func (s *adminServer) ChangeSubscriptionPlan(ctx context.Context, r *billingv1.ChangeSubscriptionPlanRequest) (*billingv1.AdminAction, error) {
	req, err := actionRequest(r.GetActionId(), r.GetActor(), r.GetCustomerId(), r.GetReason())
	if err != nil {
		return nil, err
	}
	if !stripeevent.IsStripeID(r.GetSubscriptionId()) || !stripeevent.IsStripeID(r.GetPriceId()) {
		return nil, status.Error(codes.InvalidArgument, "subscription_id and price_id are required (Stripe ids)")
	}
	if item := r.GetSubscriptionItemId(); item != "" && !stripeevent.IsStripeID(item) {
		return nil, status.Error(codes.InvalidArgument, "subscription_item_id is not a Stripe id")
	}
	switch r.GetProrationBehavior() {
	case "", "create_prorations", "always_invoice", "none":
	default:
		return nil, status.Error(codes.InvalidArgument, "proration_behavior: create_prorations, always_invoice, none or empty")
	}
	a, err := s.svc.ChangePlan(ctx, req, stripeapi.PlanChange{Subscription: r.GetSubscriptionId(), Item: r.GetSubscriptionItemId(),
		Price: r.GetPriceId(), Proration: r.GetProrationBehavior()})
	return actionAnswer(a, err)
}

// actionRequest checks what every action carries. Lengths are bounded by
// checkBounds already.
func actionRequest(actionID string, actor *billingv1.Actor, customerID, reason string) (admin.Request, error) {
	if !billingv1.ValidActionID(actionID) {
		return admin.Request{}, status.Errorf(codes.InvalidArgument, "action_id is required: letters, digits, _ and -, at most %d bytes", MaxActionIDBytes)
	}
	if actor == nil || !strings.Contains(actor.GetEmail(), "@") {
		return admin.Request{}, status.Error(codes.InvalidArgument, "actor.email is required")
	}
	if strings.TrimSpace(reason) == "" {
		return admin.Request{}, status.Error(codes.InvalidArgument, "reason is required")
	}
	if customerID != "" && !stripeevent.IsStripeID(customerID) {
		return admin.Request{}, status.Error(codes.InvalidArgument, "customer_id is not a Stripe customer id")
	}
	return admin.Request{ActionID: actionID, CustomerID: customerID, Reason: reason,
		Actor: admin.Actor{Email: actor.GetEmail(), Role: actor.GetRole(), ApprovedBy: actor.GetApprovedBy()}}, nil
}

// invalidArgumentCodes are Stripe error codes that say the request itself
// was wrong; every other refusal is about the state of the object.
var invalidArgumentCodes = map[string]bool{
	"amount_too_large": true, "amount_too_small": true, "parameter_invalid_integer": true, "parameter_invalid_empty": true,
	"parameter_missing": true, "parameter_unknown": true, "resource_missing": true, "invalid_request_error": true,
}

// plainWords says what Stripe's most common refusals mean.
var plainWords = map[string]string{
	"card_declined":           "the card was declined",
	"charge_already_refunded": "the payment has already been refunded",
	"amount_too_large":        "the amount is more than is left to refund",
	"charge_disputed":         "the payment is disputed; a refund must go through the dispute",
	"resource_missing":        "Stripe has no such object",
}

// actionAnswer turns an action or its error into the gRPC answer.
func actionAnswer(a admin.Action, err error) (*billingv1.AdminAction, error) {
	switch {
	case errors.Is(err, admin.ErrNoStripe):
		return nil, status.Error(codes.FailedPrecondition, "staff actions need STRIPE_API_KEY on billing-state")
	case errors.Is(err, admin.ErrInProgress):
		return nil, status.Error(codes.Aborted, "this action is being made right now; retry with the same action_id")
	case errors.Is(err, admin.ErrReused):
		return nil, status.Error(codes.InvalidArgument, "action_id was used before for a different request")
	case errors.Is(err, admin.ErrNoAnswer):
		return nil, status.Error(codes.Unavailable, "Stripe gave no answer; retry with the same action_id (it makes no second change)")
	case err != nil:
		return nil, status.Error(codes.Internal, "the action could not be recorded; retry with the same action_id")
	}
	if a.State == admin.StateFailed {
		code := codes.FailedPrecondition
		if invalidArgumentCodes[a.ErrorCode] {
			code = codes.InvalidArgument
		}
		words, ok := plainWords[a.ErrorCode]
		if !ok {
			words = "Stripe refused the action (" + a.ErrorCode + ")"
		}
		st, derr := status.New(code, words+"; nothing was changed").WithDetails(&errdetails.ErrorInfo{
			Reason: a.ErrorCode, Domain: "stripe.com", Metadata: map[string]string{"action_id": a.ID}})
		if derr != nil {
			return nil, status.Error(code, words)
		}
		return nil, st.Err()
	}
	out := &billingv1.AdminAction{ActionId: a.ID, Kind: a.Kind, StripeObjectId: a.StripeObjectID, ErrorCode: a.ErrorCode,
		RequestedAt: timestamppb.New(a.RequestedAt), Replayed: a.Replayed, EventIds: a.EventIDs}
	switch a.State {
	case admin.StateSucceeded:
		out.State = billingv1.AdminAction_STATE_SUCCEEDED
	case admin.StateRequested:
		out.State = billingv1.AdminAction_STATE_REQUESTED
	}
	if !a.CompletedAt.IsZero() {
		out.CompletedAt = timestamppb.New(a.CompletedAt)
	}
	return out, nil
}
