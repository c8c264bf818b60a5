package grpcapi

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// CreateStatusLink signs a link to the hosted status page of a customer
// billing-state knows.
func (s *Server) CreateStatusLink(ctx context.Context, req *billingv1.CreateStatusLinkRequest) (*billingv1.StatusLink, error) {
	id, err := subjectCustomerID(req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	if !s.statusLinks.Configured() || s.statusPageURL == "" {
		return nil, status.Error(codes.FailedPrecondition, "status links need STATUS_PAGE_URL and STATUS_LINK_SECRETS on billing-state")
	}
	ttl := req.GetTtl().AsDuration()
	if req.GetTtl() != nil && (!req.GetTtl().IsValid() || ttl < 0) {
		return nil, status.Error(codes.InvalidArgument, "ttl must not be negative")
	}
	if _, err := s.store.Status(ctx, id); err != nil {
		return nil, s.fail(ctx, "create status link", id, err)
	}
	token, exp := s.statusLinks.Sign(id, ttl)
	s.log.InfoContext(ctx, "status link created", "customer_id", id, "action", "status_link", "expires_at", exp)
	return &billingv1.StatusLink{Url: strings.TrimSuffix(s.statusPageURL, "/") + "/s/" + token, ExpiresAt: timestamppb.New(exp)}, nil
}
