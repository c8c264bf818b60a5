// Package grpcapi serves BillingStatusService: the canonical status of a
// customer for the business's own backend, a stream of its changes, its
// audit timeline, and the admin reconcile action. Callers authenticate with
// bearer tokens that carry roles.
//
// New builds the whole gRPC server, so that every limit a caller meets is
// set in one place: bounded request fields (limits.go), a server-side
// deadline on unary calls, streams per connection, Watch streams per token,
// message and metadata sizes, keepalive enforcement and optional TLS with
// a key pair read again when its files change (tls.go).
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
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/drift"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
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
	// display attaches the customer-facing display to every status served.
	display *display.Viewer
	// portal opens billing portal sessions (nil without STRIPE_API_KEY)
	// that may lead back only to returnURLs.
	portal     PortalOpener
	returnURLs portal.ReturnURLs
	// statusLinks signs links to the hosted page at statusPageURL.
	statusLinks   *statuspage.Signer
	statusPageURL string
	// watchConn is Watch's own NATS connection (see Options.WatchConn).
	watchConn *nats.Conn
	log       *slog.Logger
	// stop ends every Watch stream, so a graceful stop does not wait for
	// clients that would stay forever.
	stop <-chan struct{}
	// watches caps the Watch streams per token; readTimeout bounds a
	// Watch's first read, which no unary deadline covers.
	watches     *watchSlots
	readTimeout time.Duration
	refused     prometheus.Counter
	// drift is nil without a Stripe API key.
	drift Drift
}

// Drift is the drift checker (internal/drift.Checker).
type Drift interface {
	Check(ctx context.Context) ([]drift.Drift, error)
	Repair(ctx context.Context, customerID, actor string) (int, error)
	RepairAll(ctx context.Context, drifts []drift.Drift, actor string) error
}

func newServer(o Options, cfg Config) *Server {
	return &Server{
		store: o.Store, display: o.Display, portal: o.Portal, returnURLs: o.ReturnURLs, statusLinks: o.StatusLinks, statusPageURL: o.StatusPageURL, watchConn: o.WatchConn, log: o.Logger, stop: o.Stop,
		watches: newWatchSlots(cfg.MaxWatchPerToken), readTimeout: cfg.UnaryTimeout,
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lr_billing_state_watch_refused_total",
			Help: "Watch streams refused because their token held GRPC_MAX_WATCH_PER_TOKEN already.",
		}),
	}
}

func (s *Server) registerMetrics(reg prometheus.Registerer) {
	_ = reg.Register(s.refused)
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lr_billing_state_watch_streams",
		Help: "Watch streams open.",
	}, func() float64 { return float64(s.watches.total()) }))
}

// GetCustomerStatus looks a customer up by id, app user id or email, and
// attaches the display in the request's locale. With include_empty, a
// lookup that finds no billing record answers status NONE and the
// empty-state display (or, for a customer id with a dead-lettered event,
// the error state) instead of NotFound.
func (s *Server) GetCustomerStatus(ctx context.Context, req *billingv1.GetCustomerStatusRequest) (*billingv1.CustomerStatus, error) {
	var st *billingv1.CustomerStatus
	var err error
	id := strings.TrimSpace(req.GetCustomerId())
	switch {
	case id != "":
		st, err = s.store.Status(ctx, id)
	case strings.TrimSpace(req.GetUserId()) != "":
		st, err = s.store.StatusByUserID(ctx, strings.TrimSpace(req.GetUserId()))
	case strings.TrimSpace(req.GetEmail()) != "":
		st, err = s.store.StatusByEmail(ctx, req.GetEmail())
	default:
		return nil, status.Error(codes.InvalidArgument, "one of customer_id, user_id or email is required")
	}
	switch {
	case errors.Is(err, state.ErrNotFound) && req.GetIncludeEmpty() && id != "":
		st = &billingv1.CustomerStatus{CustomerId: id, Status: billingv1.BillingStatus_BILLING_STATUS_NONE}
	case errors.Is(err, state.ErrNotFound) && req.GetIncludeEmpty():
		return s.display.Empty(req.GetLocale()), nil
	case err != nil:
		return nil, s.fail(ctx, "get customer status", id, err)
	}
	if err := s.display.Attach(ctx, st, req.GetLocale()); err != nil {
		return nil, s.fail(ctx, "get customer status", id, err)
	}
	return st, nil
}

// GetDisplayMessages returns the words clients keep for when they get no
// answer at all.
func (s *Server) GetDisplayMessages(_ context.Context, req *billingv1.GetDisplayMessagesRequest) (*billingv1.DisplayMessages, error) {
	return s.display.Messages(req.GetLocale()), nil
}

// WatchCustomerStatus sends the current status, then every change, until
// the client goes away or the server stops. A customer billing-state has
// not seen yet is watched from status NONE: that is how an app waits for a
// checkout it just opened.
//
// The customer id becomes a NATS subject, so it must be Stripe-shaped: a
// subject token with no separator, wildcard or space, far below the
// server's control line limit. Each token holds at most MaxWatchPerToken
// streams at once; past that, ResourceExhausted.
func (s *Server) WatchCustomerStatus(req *billingv1.WatchCustomerStatusRequest, stream billingv1.BillingStatusService_WatchCustomerStatusServer) error {
	ctx := stream.Context()
	id, err := subjectCustomerID(req.GetCustomerId())
	if err != nil {
		return err
	}
	caller, _ := CallerFrom(ctx)
	release, ok := s.watches.acquire(caller.Name)
	if !ok {
		s.refused.Inc()
		return status.Errorf(codes.ResourceExhausted, "this token already holds %d watch streams", s.watches.max)
	}
	defer release()
	// A connection closed for good ends every stream on it, so clients
	// reconnect instead of waiting for changes that cannot come.
	closed := s.watchConn.StatusChanged(nats.CLOSED)
	defer s.watchConn.RemoveStatusListener(closed)
	// Subscribe before reading the current status, so no change can fall
	// between the two.
	ch := make(chan *nats.Msg, 256)
	sub, err := s.watchConn.ChanSubscribe(bus.StatusSubject(id), ch)
	if err != nil {
		return s.fail(ctx, "watch subscribe", id, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// A watch usually has no deadline, and FlushWithContext insists on one.
	fctx, cancel := context.WithTimeout(ctx, s.readTimeout)
	err = s.watchConn.FlushWithContext(fctx)
	cancel()
	if err != nil {
		return s.fail(ctx, "watch subscribe", id, err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.readTimeout)
	cur, err := s.store.Status(rctx, id)
	cancel()
	switch {
	case errors.Is(err, state.ErrNotFound):
		cur = &billingv1.CustomerStatus{CustomerId: id, Status: billingv1.BillingStatus_BILLING_STATUS_NONE}
	case err != nil:
		return s.fail(ctx, "watch current status", id, err)
	}
	last := proto.Clone(cur).(*billingv1.CustomerStatus)
	if err := s.attachWithin(ctx, cur, req.GetLocale()); err != nil {
		return s.fail(ctx, "watch current status", id, err)
	}
	if err := stream.Send(cur); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stop:
			return status.Error(codes.Unavailable, "server shutting down; reconnect")
		case <-closed:
			return status.Error(codes.Unavailable, "status feed lost; reconnect")
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
			last = proto.Clone(next).(*billingv1.CustomerStatus)
			if err := s.attachWithin(ctx, next, req.GetLocale()); err != nil {
				return s.fail(ctx, "watch status display", id, err)
			}
			if err := stream.Send(next); err != nil {
				return err
			}
		}
	}
}

// ListCustomerEvents pages through the audit timeline, newest first.
func (s *Server) ListCustomerEvents(ctx context.Context, req *billingv1.ListCustomerEventsRequest) (*billingv1.ListCustomerEventsResponse, error) {
	id, err := customerID(req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
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
	id, err := customerID(req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	actor := callerName(ctx)
	if req.GetFromStripe() {
		if s.drift == nil {
			return nil, status.Error(codes.FailedPrecondition, "from_stripe needs STRIPE_API_KEY on billing-state")
		}
		if _, err := s.drift.Repair(ctx, id, actor); err != nil {
			return nil, s.failStripe(ctx, "reconcile customer from stripe", id, err)
		}
	}
	st, err := s.store.Reconcile(ctx, id, actor)
	if err != nil {
		return nil, s.fail(ctx, "reconcile customer", id, err)
	}
	s.log.InfoContext(ctx, "customer reconciled by staff", "customer_id", id, "action", "reconcile", "actor", actor)
	if err := s.display.Attach(ctx, st, ""); err != nil {
		return nil, s.fail(ctx, "reconcile customer", id, err)
	}
	return st, nil
}

// CheckDrift compares Stripe's subscriptions with the stored ones and, with
// fix, repairs every customer that differs, audited with the token's name.
func (s *Server) CheckDrift(ctx context.Context, req *billingv1.CheckDriftRequest) (*billingv1.CheckDriftResponse, error) {
	if s.drift == nil {
		return nil, status.Error(codes.FailedPrecondition, "the drift check needs STRIPE_API_KEY on billing-state")
	}
	drifts, err := s.drift.Check(ctx)
	if err != nil {
		return nil, s.failStripe(ctx, "check drift", "", err)
	}
	out := &billingv1.CheckDriftResponse{}
	for _, d := range drifts {
		out.Drifts = append(out.Drifts, &billingv1.SubscriptionDrift{CustomerId: d.CustomerID, SubscriptionId: d.SubscriptionID, Ours: d.Ours, Stripe: d.Stripe})
	}
	if req.GetFix() && len(drifts) > 0 {
		actor := callerName(ctx)
		if err := s.drift.RepairAll(ctx, drifts, actor); err != nil {
			return nil, s.failStripe(ctx, "repair drift", "", err)
		}
		out.Fixed = true
		s.log.InfoContext(ctx, "drift repaired by staff", "action", "repair", "actor", actor, "subscriptions", len(drifts))
	}
	return out, nil
}

func callerName(ctx context.Context) string {
	caller, _ := CallerFrom(ctx)
	if caller.Name == "" {
		return "unknown"
	}
	return caller.Name
}

// failStripe maps a failure that may come from Stripe's API: Stripe
// unreachable or refusing is UNAVAILABLE, with no detail of the answer.
func (s *Server) failStripe(ctx context.Context, op, customerID string, err error) error {
	var ae *stripeapi.APIError
	if errors.As(err, &ae) || errors.Is(err, stripeapi.ErrRateLimited) {
		s.log.WarnContext(ctx, op+" failed", "customer_id", customerID, "action", op, "error", err.Error())
		return status.Error(codes.Unavailable, "stripe api unavailable; retry")
	}
	return s.fail(ctx, op, customerID, err)
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
	case ctx.Err() != nil:
		// pgx does not always wrap the context's error.
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		return status.Error(codes.Unavailable, "status feed unavailable; retry")
	}
	s.log.ErrorContext(ctx, op+" failed", "customer_id", customerID, "action", op, "error", bus.Redact(err.Error()))
	return status.Error(codes.Internal, "internal error")
}

// pageSize is the page size to serve for a requested one: 0 means
// DefaultPageSize, more than MaxPageSize is served as MaxPageSize, and a
// negative one is InvalidArgument.
func pageSize(requested int32) (int, error) {
	switch {
	case requested < 0:
		return 0, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case requested == 0:
		return DefaultPageSize, nil
	case requested > MaxPageSize:
		return MaxPageSize, nil
	}
	return int(requested), nil
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

// attachWithin attaches the display for a Watch, which has no deadline of
// its own: the read it costs is bounded like the first read.
func (s *Server) attachWithin(ctx context.Context, st *billingv1.CustomerStatus, locale string) error {
	rctx, cancel := context.WithTimeout(ctx, s.readTimeout)
	defer cancel()
	return s.display.Attach(rctx, st, locale)
}
