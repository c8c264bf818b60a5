package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// PortalOpener creates Stripe Customer Portal sessions (stripeapi.Client).
type PortalOpener interface {
	CreatePortalSession(ctx context.Context, customer, returnURL string) (string, error)
}

// CreatePortalSession opens the billing portal for a customer billing-state
// knows, leading back to an allowed return URL.
func (s *Server) CreatePortalSession(ctx context.Context, req *billingv1.CreatePortalSessionRequest) (*billingv1.PortalSession, error) {
	id, err := customerID(req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	if s.portal == nil {
		return nil, status.Error(codes.FailedPrecondition, "the billing portal needs STRIPE_API_KEY on billing-state")
	}
	if !s.returnURLs.Allows(req.GetReturnUrl()) {
		return nil, status.Error(codes.InvalidArgument, "return_url does not match PORTAL_RETURN_URLS")
	}
	if _, err := s.store.Status(ctx, id); err != nil {
		return nil, s.fail(ctx, "create portal session", id, err)
	}
	u, err := s.portal.CreatePortalSession(ctx, id, req.GetReturnUrl())
	switch {
	case err == nil:
		s.log.InfoContext(ctx, "billing portal session created", "customer_id", id, "action", "portal_session")
		return &billingv1.PortalSession{Url: u}, nil
	case stripeapi.IsNotFound(err):
		return nil, status.Error(codes.NotFound, "customer not found at Stripe")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		return nil, s.fail(ctx, "create portal session", id, err)
	}
	// Stripe's own error is logged (type, code and request id, never its
	// message) and the caller told to retry.
	s.log.WarnContext(ctx, "billing portal session failed", "customer_id", id, "action", "portal_session", "error", bus.Redact(err.Error()))
	return nil, status.Error(codes.Unavailable, "the billing portal could not be opened; retry")
}
