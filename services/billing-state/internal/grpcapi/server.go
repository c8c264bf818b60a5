// Package grpcapi serves BillingStatusService: the canonical status of a
// customer for the business's own backend, a stream of its changes, its
// audit timeline, and the admin reconcile action. Callers authenticate with
// bearer tokens that carry roles.
package grpcapi

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// Page sizes of ListCustomerEvents.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Server implements billingv1.BillingStatusServiceServer.
type Server struct {
	billingv1.UnimplementedBillingStatusServiceServer
	store *state.Store
	nc    *nats.Conn
	log   *slog.Logger
	// stop ends every Watch stream, so a graceful stop does not wait for
	// clients that would stay forever.
	stop <-chan struct{}
}

// NewServer returns the service. nc carries the status changes Watch
// forwards (core NATS on billing.status.<customer>, so every replica sees
// every change); stop, when closed, ends open Watch streams.
func NewServer(store *state.Store, nc *nats.Conn, log *slog.Logger, stop <-chan struct{}) *Server {
	if log == nil {
		log = logging.Discard()
	}
	return &Server{store: store, nc: nc, log: log, stop: stop}
}

// GetCustomerStatus looks a customer up by id, app user id or email.
func (s *Server) GetCustomerStatus(ctx context.Context, req *billingv1.GetCustomerStatusRequest) (*billingv1.CustomerStatus, error) {
	var st *billingv1.CustomerStatus
	var err error
	switch {
	case strings.TrimSpace(req.GetCustomerId()) != "":
		st, err = s.store.Status(ctx, strings.TrimSpace(req.GetCustomerId()))
	case strings.TrimSpace(req.GetUserId()) != "":
		st, err = s.store.StatusByUserID(ctx, strings.TrimSpace(req.GetUserId()))
	case strings.TrimSpace(req.GetEmail()) != "":
		st, err = s.store.StatusByEmail(ctx, req.GetEmail())
	default:
		return nil, status.Error(codes.InvalidArgument, "one of customer_id, user_id or email is required")
	}
	if err != nil {
		return nil, s.fail(ctx, "get customer status", req.GetCustomerId(), err)
	}
	return st, nil
}

// WatchCustomerStatus sends the current status, then every change, until
// the client goes away or the server stops. A customer billing-state has
// not seen yet is watched from status NONE: that is how an app waits for a
// checkout it just opened.
func (s *Server) WatchCustomerStatus(req *billingv1.WatchCustomerStatusRequest, stream billingv1.BillingStatusService_WatchCustomerStatusServer) error {
	ctx := stream.Context()
	id := strings.TrimSpace(req.GetCustomerId())
	if id == "" {
		return status.Error(codes.InvalidArgument, "customer_id is required")
	}
	if strings.ContainsAny(id, ".*> \t\r\n") {
		return status.Error(codes.InvalidArgument, "customer_id is not a Stripe customer id")
	}
	// Subscribe before reading the current status, so no change can fall
	// between the two.
	ch := make(chan *nats.Msg, 256)
	sub, err := s.nc.ChanSubscribe(bus.StatusSubject(id), ch)
	if err != nil {
		return s.fail(ctx, "watch subscribe", id, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// A watch usually has no deadline, and FlushWithContext insists on one.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = s.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		return s.fail(ctx, "watch subscribe", id, err)
	}
	cur, err := s.store.Status(ctx, id)
	switch {
	case errors.Is(err, state.ErrNotFound):
		cur = &billingv1.CustomerStatus{CustomerId: id, Status: billingv1.BillingStatus_BILLING_STATUS_NONE}
	case err != nil:
		return s.fail(ctx, "watch current status", id, err)
	}
	if err := stream.Send(cur); err != nil {
		return err
	}
	last := cur
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stop:
			return status.Error(codes.Unavailable, "server shutting down; reconnect")
		case m := <-ch:
			next := &billingv1.CustomerStatus{}
			if err := proto.Unmarshal(m.Data, next); err != nil {
				s.log.WarnContext(ctx, "undecodable status message", "customer_id", id, "error", err.Error())
				continue
			}
			// The relay may publish a change the first read already showed,
			// or publish changes late and out of order after a failed
			// publish. updated_at moves only when something a watcher sees
			// changes, so a snapshot no newer than the last one sent adds
			// nothing, whatever its last_event_id.
			if u := next.GetUpdatedAt(); u != nil && last.GetUpdatedAt() != nil && !u.AsTime().After(last.GetUpdatedAt().AsTime()) {
				continue
			}
			if proto.Equal(next, last) {
				continue
			}
			if err := stream.Send(next); err != nil {
				return err
			}
			last = next
		}
	}
}

// ListCustomerEvents pages through the audit timeline, newest first.
func (s *Server) ListCustomerEvents(ctx context.Context, req *billingv1.ListCustomerEventsRequest) (*billingv1.ListCustomerEventsResponse, error) {
	id := strings.TrimSpace(req.GetCustomerId())
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "customer_id is required")
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	var before int64
	if tok := req.GetPageToken(); tok != "" {
		var ok bool
		if before, ok = decodeCursor(tok); !ok {
			return nil, status.Error(codes.InvalidArgument, "page_token is not valid")
		}
	}
	events, next, err := s.store.Timeline(ctx, id, before, size)
	if err != nil {
		return nil, s.fail(ctx, "list customer events", id, err)
	}
	resp := &billingv1.ListCustomerEventsResponse{Events: events}
	if next > 0 {
		resp.NextPageToken = encodeCursor(next)
	}
	return resp, nil
}

// ReconcileCustomer re-derives the status from stored state and clears the
// reconciliation mark; the audit row names the token.
func (s *Server) ReconcileCustomer(ctx context.Context, req *billingv1.ReconcileCustomerRequest) (*billingv1.CustomerStatus, error) {
	id := strings.TrimSpace(req.GetCustomerId())
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "customer_id is required")
	}
	caller, _ := CallerFrom(ctx)
	actor := caller.Name
	if actor == "" {
		actor = "unknown"
	}
	st, err := s.store.Reconcile(ctx, id, actor)
	if err != nil {
		return nil, s.fail(ctx, "reconcile customer", id, err)
	}
	s.log.InfoContext(ctx, "customer reconciled by staff", "customer_id", id, "action", "reconcile", "actor", actor)
	return st, nil
}

// fail maps a store error to a status. Internal errors are logged with
// their detail and answered with a generic message: a database error can
// carry connection details and data.
func (s *Server) fail(ctx context.Context, op, customerID string, err error) error {
	switch {
	case errors.Is(err, state.ErrNotFound):
		return status.Error(codes.NotFound, "customer not found")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.log.ErrorContext(ctx, op+" failed", "customer_id", customerID, "action", op, "error", err.Error())
	return status.Error(codes.Internal, "internal error")
}

// The cursor is opaque to callers: they must not build or compare them.
const cursorPrefix = "v1:"

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(id, 10)))
}

func decodeCursor(tok string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(b), cursorPrefix) {
		return 0, false
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(string(b), cursorPrefix), 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}
