package grpcapi

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/launchready/launchready/services/billing-state/internal/portal"
)

// Bounds on what a caller may send. The .proto comments and the README
// state the same numbers; TestEveryRequestFieldIsBounded keeps fieldBounds
// complete.
const (
	// MaxIDBytes bounds customer and app user ids. Stripe's ids are far
	// shorter; 255 leaves room for an app's own user ids.
	MaxIDBytes = 255
	// MaxEmailBytes is the longest address SMTP allows (RFC 5321).
	MaxEmailBytes = 320
	// MaxPageTokenBytes bounds page tokens: the server's own are about 30.
	MaxPageTokenBytes = 64
	// MaxLocaleBytes bounds locale tags: BCP 47 puts the longest useful
	// tag at 35 characters.
	MaxLocaleBytes = 35
	// MaxRecvMsgBytes bounds one request message. The largest valid
	// request is well under 1 KiB; reflection requests are small too.
	MaxRecvMsgBytes = 8 << 10
	// MaxHeaderListBytes bounds a call's metadata (the bearer token,
	// trace context), instead of gRPC's default of 16 MiB.
	MaxHeaderListBytes = 16 << 10
)

// fieldBounds is the longest value, in bytes, of every string field of
// every BillingStatusService request.
var fieldBounds = map[protoreflect.FullName]int{
	"launchready.billing.v1.GetCustomerStatusRequest.customer_id":   MaxIDBytes,
	"launchready.billing.v1.GetCustomerStatusRequest.user_id":       MaxIDBytes,
	"launchready.billing.v1.GetCustomerStatusRequest.email":         MaxEmailBytes,
	"launchready.billing.v1.WatchCustomerStatusRequest.customer_id": MaxIDBytes,
	"launchready.billing.v1.ListCustomerEventsRequest.customer_id":  MaxIDBytes,
	"launchready.billing.v1.ListCustomerEventsRequest.page_token":   MaxPageTokenBytes,
	"launchready.billing.v1.ReconcileCustomerRequest.customer_id":   MaxIDBytes,
	"launchready.billing.v1.GetCustomerStatusRequest.locale":        MaxLocaleBytes,
	"launchready.billing.v1.WatchCustomerStatusRequest.locale":      MaxLocaleBytes,
	"launchready.billing.v1.GetDisplayMessagesRequest.locale":       MaxLocaleBytes,
	"launchready.billing.v1.CreatePortalSessionRequest.customer_id": MaxIDBytes,
	"launchready.billing.v1.CreatePortalSessionRequest.return_url":  portal.MaxURLBytes,
	"launchready.billing.v1.CreateStatusLinkRequest.customer_id":    MaxIDBytes,

	"launchready.billing.v1.Actor.email":                                        MaxEmailBytes,
	"launchready.billing.v1.Actor.role":                                         maxRoleBytes,
	"launchready.billing.v1.Actor.approved_by":                                  MaxEmailBytes,
	"launchready.billing.v1.RefundPaymentRequest.action_id":                     MaxActionIDBytes,
	"launchready.billing.v1.RefundPaymentRequest.customer_id":                   MaxIDBytes,
	"launchready.billing.v1.RefundPaymentRequest.payment_intent_id":             MaxIDBytes,
	"launchready.billing.v1.RefundPaymentRequest.charge_id":                     MaxIDBytes,
	"launchready.billing.v1.RefundPaymentRequest.reason":                        MaxReasonBytes,
	"launchready.billing.v1.RefundPaymentRequest.stripe_reason":                 maxEnumBytes,
	"launchready.billing.v1.CancelSubscriptionRequest.action_id":                MaxActionIDBytes,
	"launchready.billing.v1.CancelSubscriptionRequest.customer_id":              MaxIDBytes,
	"launchready.billing.v1.CancelSubscriptionRequest.subscription_id":          MaxIDBytes,
	"launchready.billing.v1.CancelSubscriptionRequest.reason":                   MaxReasonBytes,
	"launchready.billing.v1.ChangeSubscriptionPlanRequest.action_id":            MaxActionIDBytes,
	"launchready.billing.v1.ChangeSubscriptionPlanRequest.customer_id":          MaxIDBytes,
	"launchready.billing.v1.ChangeSubscriptionPlanRequest.subscription_id":      MaxIDBytes,
	"launchready.billing.v1.ChangeSubscriptionPlanRequest.subscription_item_id": MaxIDBytes,
	"launchready.billing.v1.ChangeSubscriptionPlanRequest.price_id":             MaxIDBytes,
	"launchready.billing.v1.ChangeSubscriptionPlanRequest.proration_behavior":   maxEnumBytes,
	"launchready.billing.v1.ChangeSubscriptionPlanRequest.reason":               MaxReasonBytes,
}

// checkBounds answers InvalidArgument when a string field of req is longer
// than its bound. The message names the field and the bound, never the
// value. A string or bytes field missing from fieldBounds is refused: a
// field added to a request without a bound must not be served unbounded.
func checkBounds(req proto.Message) error {
	var err error
	req.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
			// A nested message (the actor) is bounded field by field too.
			err = checkBounds(v.Message().Interface())
			return err == nil
		}
		if fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.BytesKind {
			return true
		}
		limit, ok := fieldBounds[fd.FullName()]
		if !ok || fd.IsList() || fd.IsMap() {
			err = status.Errorf(codes.Internal, "field %s has no bound on this server", fd.Name())
			return false
		}
		n := len(v.String())
		if fd.Kind() == protoreflect.BytesKind {
			n = len(v.Bytes())
		}
		if n > limit {
			err = status.Errorf(codes.InvalidArgument, "%s: at most %d bytes", fd.Name(), limit)
			return false
		}
		return true
	})
	return err
}

// customerID returns the trimmed customer_id of a request, or
// InvalidArgument when it is empty. Its length is bounded by checkBounds.
func customerID(raw string) (string, error) {
	id := strings.TrimSpace(raw)
	if id == "" {
		return "", status.Error(codes.InvalidArgument, "customer_id is required")
	}
	return id, nil
}

// subjectCustomerID is customerID for a request that builds a NATS subject
// from the id: it must also be Stripe-shaped.
func subjectCustomerID(raw string) (string, error) {
	id, err := customerID(raw)
	if err != nil {
		return "", err
	}
	if !stripeevent.IsStripeID(id) {
		return "", status.Error(codes.InvalidArgument, "customer_id is not a Stripe customer id (letters, digits and _, at most 255 bytes)")
	}
	return id, nil
}

// ours reports whether method belongs to BillingStatusService or
// BillingAdminService; health and reflection keep their own rules.
func ours(method string) bool {
	return strings.HasPrefix(method, servicePrefix) || strings.HasPrefix(method, adminServicePrefix)
}

// unaryDeadline bounds every unary call to d, whatever deadline the client
// asked for (a shorter one is kept): a caller cannot hold a connection of
// the API pool longer than that.
func unaryDeadline(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return handler(ctx, req)
	}
}

// unaryBounds checks the request of every BillingStatusService unary call.
func unaryBounds(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok && ours(info.FullMethod) {
		if err := checkBounds(m); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// streamBounds checks each request a BillingStatusService stream receives.
func streamBounds(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !ours(info.FullMethod) {
		return handler(srv, ss)
	}
	return handler(srv, boundedStream{ss})
}

type boundedStream struct{ grpc.ServerStream }

func (b boundedStream) RecvMsg(m any) error {
	if err := b.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		return checkBounds(pm)
	}
	return nil
}

// watchSlots caps the Watch streams open at once per token, so that one
// caller cannot hold every subscription and goroutine the server can give.
type watchSlots struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newWatchSlots(max int) *watchSlots { return &watchSlots{max: max, open: map[string]int{}} }

// acquire takes a slot for token. It returns false when token already
// holds max streams; otherwise release gives the slot back (once).
func (w *watchSlots) acquire(token string) (release func(), ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[token] >= w.max {
		return nil, false
	}
	w.open[token]++
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.open[token]--; w.open[token] <= 0 {
				delete(w.open, token)
			}
		})
	}, true
}

// total is the number of Watch streams open, for the gauge.
func (w *watchSlots) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.open {
		n += c
	}
	return n
}
