package grpcapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/bus"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Every string field of every BillingStatusService request has a bound,
// and every bound names a field that exists: a field added without one
// fails here before it can be served unbounded.
func TestEveryRequestFieldIsBounded(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		for j := 0; j < md.Fields().Len(); j++ {
			fd := md.Fields().Get(j)
			switch fd.Kind() {
			case protoreflect.StringKind, protoreflect.BytesKind:
				if _, ok := fieldBounds[fd.FullName()]; !ok {
					t.Errorf("%s has no bound in fieldBounds", fd.FullName())
				}
				seen[fd.FullName()] = true
			case protoreflect.MessageKind, protoreflect.GroupKind:
				if fd.IsList() || fd.IsMap() {
					t.Errorf("%s is a repeated message: checkBounds reads single nested messages only; extend it", fd.FullName())
				}
				walk(fd.Message())
			}
		}
	}
	for _, sd := range []protoreflect.ServiceDescriptor{
		billingv1.File_launchready_billing_v1_service_proto.Services().ByName("BillingStatusService"),
		billingv1.File_launchready_billing_v1_admin_proto.Services().ByName("BillingAdminService"),
	} {
		for i := 0; i < sd.Methods().Len(); i++ {
			walk(sd.Methods().Get(i).Input())
		}
	}
	for name := range fieldBounds {
		if !seen[name] {
			t.Errorf("fieldBounds lists %s, which no request has", name)
		}
	}
}

// Each field, at its bound, is served (NotFound: the customer does not
// exist; Watch: the NONE status); one byte more is InvalidArgument naming
// the field and the bound.
func TestRequestFieldBounds(t *testing.T) {
	b := setup(t, setupOptions{})
	c := b.client()
	ctx := testContext(t)
	stripeShaped := func(n int) string { return "cus_" + strings.Repeat("A", n-4) }
	watch := func(ctx context.Context, id string) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, first, err := openWatch(ctx, c, b.read, id)
		if err == nil && first.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_NONE {
			return errors.New("first message is not the NONE status")
		}
		return err
	}
	// A cursor of exactly n bytes that decodes (leading zeros).
	cursor := func(n int) string {
		for digits := 1; ; digits++ {
			tok := encodeCursorDigits(strings.Repeat("0", digits-1) + "1")
			if len(tok) >= n {
				return tok[:n]
			}
		}
	}
	// A locale tag of exactly n bytes: "de-" and private-use letters.
	locale := func(n int) string { return "de-" + strings.Repeat("x", n-3) }
	cases := []struct {
		field  protoreflect.FullName
		value  func(n int) string
		call   func(ctx context.Context, v string) error
		atMost codes.Code // the answer at the bound
	}{
		{"launchready.billing.v1.GetCustomerStatusRequest.customer_id", stripeShaped, func(ctx context.Context, v string) error {
			_, err := c.GetCustomerStatus(as(ctx, b.read), &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: v}})
			return err
		}, codes.NotFound},
		{"launchready.billing.v1.GetCustomerStatusRequest.user_id", func(n int) string { return strings.Repeat("u", n) }, func(ctx context.Context, v string) error {
			_, err := c.GetCustomerStatus(as(ctx, b.read), &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_UserId{UserId: v}})
			return err
		}, codes.NotFound},
		{"launchready.billing.v1.GetCustomerStatusRequest.email", func(n int) string { return strings.Repeat("e", n-12) + "@example.com" }, func(ctx context.Context, v string) error {
			_, err := c.GetCustomerStatus(as(ctx, b.read), &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_Email{Email: v}})
			return err
		}, codes.NotFound},
		{"launchready.billing.v1.WatchCustomerStatusRequest.customer_id", stripeShaped, watch, codes.OK},
		{"launchready.billing.v1.ListCustomerEventsRequest.customer_id", stripeShaped, func(ctx context.Context, v string) error {
			_, err := c.ListCustomerEvents(as(ctx, b.read), &billingv1.ListCustomerEventsRequest{CustomerId: v})
			return err
		}, codes.NotFound},
		{"launchready.billing.v1.ListCustomerEventsRequest.page_token", cursor, func(ctx context.Context, v string) error {
			_, err := c.ListCustomerEvents(as(ctx, b.read), &billingv1.ListCustomerEventsRequest{CustomerId: "cus_A", PageToken: v})
			return err
		}, codes.NotFound},
		{"launchready.billing.v1.ReconcileCustomerRequest.customer_id", stripeShaped, func(ctx context.Context, v string) error {
			_, err := c.ReconcileCustomer(as(ctx, b.admin), &billingv1.ReconcileCustomerRequest{CustomerId: v})
			return err
		}, codes.NotFound},
		{"launchready.billing.v1.GetCustomerStatusRequest.locale", locale, func(ctx context.Context, v string) error {
			_, err := c.GetCustomerStatus(as(ctx, b.read), &billingv1.GetCustomerStatusRequest{Locale: v, Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "cus_A"}})
			return err
		}, codes.NotFound},
		{"launchready.billing.v1.WatchCustomerStatusRequest.locale", locale, func(ctx context.Context, v string) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.WatchCustomerStatus(as(ctx, b.read), &billingv1.WatchCustomerStatusRequest{CustomerId: "cus_A", Locale: v})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}, codes.OK},
		{"launchready.billing.v1.CreatePortalSessionRequest.customer_id", stripeShaped, func(ctx context.Context, v string) error {
			_, err := c.CreatePortalSession(as(ctx, b.read), &billingv1.CreatePortalSessionRequest{CustomerId: v, ReturnUrl: "https://app.example.com/"})
			return err
		}, codes.FailedPrecondition},
		{"launchready.billing.v1.CreatePortalSessionRequest.return_url", func(n int) string { return "https://app.example.com/" + strings.Repeat("r", n-24) }, func(ctx context.Context, v string) error {
			_, err := c.CreatePortalSession(as(ctx, b.read), &billingv1.CreatePortalSessionRequest{CustomerId: "cus_A", ReturnUrl: v})
			return err
		}, codes.FailedPrecondition},
		{"launchready.billing.v1.CreateStatusLinkRequest.customer_id", stripeShaped, func(ctx context.Context, v string) error {
			_, err := c.CreateStatusLink(as(ctx, b.read), &billingv1.CreateStatusLinkRequest{CustomerId: v})
			return err
		}, codes.FailedPrecondition},
		{"launchready.billing.v1.GetDisplayMessagesRequest.locale", locale, func(ctx context.Context, v string) error {
			_, err := c.GetDisplayMessages(as(ctx, b.read), &billingv1.GetDisplayMessagesRequest{Locale: v})
			return err
		}, codes.OK},
	}
	// BillingAdminService: each request valid but for the one field; with
	// no Stripe key configured, a request within bounds is
	// FAILED_PRECONDITION (or INVALID_ARGUMENT where the value at the bound
	// is not an allowed one).
	ac := b.adminClient()
	actor := func() *billingv1.Actor { return &billingv1.Actor{Email: "ana@example.com"} }
	letters := func(n int) string { return strings.Repeat("a", n) }
	email := func(n int) string { return strings.Repeat("e", n-12) + "@example.com" }
	piShaped := func(n int) string { return "pi_" + strings.Repeat("A", n-3) }
	refundWith := func(set func(r *billingv1.RefundPaymentRequest, v string)) func(ctx context.Context, v string) error {
		return func(ctx context.Context, v string) error {
			r := &billingv1.RefundPaymentRequest{ActionId: "act_b", Actor: actor(), ChargeId: "ch_b", Reason: "bounds"}
			set(r, v)
			_, err := ac.RefundPayment(as(ctx, b.admin), r)
			return err
		}
	}
	cancelWith := func(set func(r *billingv1.CancelSubscriptionRequest, v string)) func(ctx context.Context, v string) error {
		return func(ctx context.Context, v string) error {
			r := &billingv1.CancelSubscriptionRequest{ActionId: "act_b", Actor: actor(), SubscriptionId: "sub_b", Reason: "bounds"}
			set(r, v)
			_, err := ac.CancelSubscription(as(ctx, b.admin), r)
			return err
		}
	}
	planWith := func(set func(r *billingv1.ChangeSubscriptionPlanRequest, v string)) func(ctx context.Context, v string) error {
		return func(ctx context.Context, v string) error {
			r := &billingv1.ChangeSubscriptionPlanRequest{ActionId: "act_b", Actor: actor(), SubscriptionId: "sub_b", PriceId: "price_b", Reason: "bounds"}
			set(r, v)
			_, err := ac.ChangeSubscriptionPlan(as(ctx, b.admin), r)
			return err
		}
	}
	fp, ia := codes.FailedPrecondition, codes.InvalidArgument
	cases = append(cases, []struct {
		field  protoreflect.FullName
		value  func(n int) string
		call   func(ctx context.Context, v string) error
		atMost codes.Code
	}{
		{"launchready.billing.v1.Actor.email", email, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.Actor.Email = v }), fp},
		{"launchready.billing.v1.Actor.role", letters, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.Actor.Role = v }), fp},
		{"launchready.billing.v1.Actor.approved_by", email, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.Actor.ApprovedBy = v }), fp},
		{"launchready.billing.v1.RefundPaymentRequest.action_id", letters, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.ActionId = v }), fp},
		{"launchready.billing.v1.RefundPaymentRequest.customer_id", stripeShaped, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.CustomerId = v }), fp},
		{"launchready.billing.v1.RefundPaymentRequest.payment_intent_id", piShaped, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.ChargeId, r.PaymentIntentId = "", v }), fp},
		{"launchready.billing.v1.RefundPaymentRequest.charge_id", letters, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.ChargeId = v }), fp},
		{"launchready.billing.v1.RefundPaymentRequest.reason", letters, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.Reason = v }), fp},
		{"launchready.billing.v1.RefundPaymentRequest.stripe_reason", letters, refundWith(func(r *billingv1.RefundPaymentRequest, v string) { r.StripeReason = v }), ia},
		{"launchready.billing.v1.CancelSubscriptionRequest.action_id", letters, cancelWith(func(r *billingv1.CancelSubscriptionRequest, v string) { r.ActionId = v }), fp},
		{"launchready.billing.v1.CancelSubscriptionRequest.customer_id", stripeShaped, cancelWith(func(r *billingv1.CancelSubscriptionRequest, v string) { r.CustomerId = v }), fp},
		{"launchready.billing.v1.CancelSubscriptionRequest.subscription_id", letters, cancelWith(func(r *billingv1.CancelSubscriptionRequest, v string) { r.SubscriptionId = v }), fp},
		{"launchready.billing.v1.CancelSubscriptionRequest.reason", letters, cancelWith(func(r *billingv1.CancelSubscriptionRequest, v string) { r.Reason = v }), fp},
		{"launchready.billing.v1.ChangeSubscriptionPlanRequest.action_id", letters, planWith(func(r *billingv1.ChangeSubscriptionPlanRequest, v string) { r.ActionId = v }), fp},
		{"launchready.billing.v1.ChangeSubscriptionPlanRequest.customer_id", stripeShaped, planWith(func(r *billingv1.ChangeSubscriptionPlanRequest, v string) { r.CustomerId = v }), fp},
		{"launchready.billing.v1.ChangeSubscriptionPlanRequest.subscription_id", letters, planWith(func(r *billingv1.ChangeSubscriptionPlanRequest, v string) { r.SubscriptionId = v }), fp},
		{"launchready.billing.v1.ChangeSubscriptionPlanRequest.subscription_item_id", letters, planWith(func(r *billingv1.ChangeSubscriptionPlanRequest, v string) { r.SubscriptionItemId = v }), fp},
		{"launchready.billing.v1.ChangeSubscriptionPlanRequest.price_id", letters, planWith(func(r *billingv1.ChangeSubscriptionPlanRequest, v string) { r.PriceId = v }), fp},
		{"launchready.billing.v1.ChangeSubscriptionPlanRequest.proration_behavior", letters, planWith(func(r *billingv1.ChangeSubscriptionPlanRequest, v string) { r.ProrationBehavior = v }), ia},
		{"launchready.billing.v1.ChangeSubscriptionPlanRequest.reason", letters, planWith(func(r *billingv1.ChangeSubscriptionPlanRequest, v string) { r.Reason = v }), fp},
	}...)
	tested := map[protoreflect.FullName]bool{}
	for _, tc := range cases {
		tested[tc.field] = true
		limit := fieldBounds[tc.field]
		t.Run(string(tc.field.Name())+"@"+string(tc.field.Parent().Name()), func(t *testing.T) {
			at := tc.value(limit)
			if len(at) != limit {
				t.Fatalf("test value has %d bytes, want %d", len(at), limit)
			}
			if err := tc.call(ctx, at); status.Code(err) != tc.atMost {
				t.Errorf("%d bytes: %v, want %s", limit, err, tc.atMost)
			}
			over := tc.value(limit + 1)
			err := tc.call(ctx, over)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "at most") {
				t.Errorf("%d bytes: %v, want InvalidArgument for the bound", limit+1, err)
			}
			if strings.Contains(status.Convert(err).Message(), over) {
				t.Error("the error echoes the value")
			}
		})
	}
	for name := range fieldBounds {
		if !tested[name] {
			t.Errorf("no case for %s", name)
		}
	}
}

func encodeCursorDigits(digits string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + digits))
}

// A customer id that would break a NATS subject never reaches the watch
// connection: the 5,000-character one of the attack, separators,
// wildcards, whitespace. The connection stays up and Watch keeps working.
func TestWatchRefusesIDsThatAreNotStripeShaped(t *testing.T) {
	b := setup(t, setupOptions{})
	c := b.client()
	ctx := testContext(t)
	for _, id := range []string{strings.Repeat("a", 5000), "cus.A", "cus_*", ">", "cus A", "cus\tA", "cus_Ä", "cus-A", " ", ""} {
		if _, _, err := openWatch(ctx, c, b.read, id); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%.20q: %v, want InvalidArgument", id, err)
		}
	}
	if !b.watchConn.IsConnected() {
		t.Fatal("the watch connection is down")
	}
	if _, first, err := openWatch(ctx, c, b.read, " cus_A "); err != nil || first.GetCustomerId() != "cus_A" {
		t.Fatalf("watch after the refusals: %v %v", first, err)
	}
}

func TestPageSize(t *testing.T) {
	for _, c := range []struct {
		in   int32
		want int
		code codes.Code
	}{{0, DefaultPageSize, codes.OK}, {1, 1, codes.OK}, {MaxPageSize, MaxPageSize, codes.OK}, {MaxPageSize + 1, MaxPageSize, codes.OK},
		{1 << 30, MaxPageSize, codes.OK}, {-1, 0, codes.InvalidArgument}} {
		got, err := pageSize(c.in)
		if got != c.want || status.Code(err) != c.code {
			t.Errorf("pageSize(%d) = %d, %v; want %d, %s", c.in, got, err, c.want, c.code)
		}
	}
}

// A request larger than MaxRecvMsgBytes is refused before it is decoded.
func TestMaxRecvMsgSize(t *testing.T) {
	b := setup(t, setupOptions{})
	_, err := b.client().GetCustomerStatus(as(testContext(t), b.read), &billingv1.GetCustomerStatusRequest{
		Lookup: &billingv1.GetCustomerStatusRequest_UserId{UserId: strings.Repeat("u", MaxRecvMsgBytes+1)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("%v, want ResourceExhausted", err)
	}
}

// Metadata past MaxHeaderListBytes is not served, and the connection
// keeps serving calls within it.
func TestMaxHeaderListSize(t *testing.T) {
	b := setup(t, setupOptions{})
	c := b.client()
	ctx := testContext(t)
	req := byID("cus_A")
	// A first call, so the client has the server's settings.
	if _, err := c.GetCustomerStatus(as(ctx, b.read), req); status.Code(err) != codes.NotFound {
		t.Fatalf("first call: %v", err)
	}
	big := metadata.AppendToOutgoingContext(as(ctx, b.read), "x-padding", strings.Repeat("p", MaxHeaderListBytes))
	if _, err := c.GetCustomerStatus(big, req); status.Code(err) == codes.OK || status.Code(err) == codes.NotFound {
		t.Fatalf("oversized metadata served: %v", err)
	}
	if _, err := c.GetCustomerStatus(as(ctx, b.read), req); status.Code(err) != codes.NotFound {
		t.Fatalf("after the oversized call: %v", err)
	}
}

// Every unary call ends at the server's deadline, whatever the client
// asked for: here the API pool's only connection is taken, so the call
// waits for one until GRPC_UNARY_TIMEOUT.
func TestUnaryDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	b := setup(t, setupOptions{cfg: Config{UnaryTimeout: timeout}, poolSize: 1})
	c := b.client()
	ctx := testContext(t) // the client's own deadline: a minute
	req := byID("cus_A")
	held, err := b.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.GetCustomerStatus(as(ctx, b.read), req)
	took := time.Since(start)
	held.Release()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("%v, want DeadlineExceeded", err)
	}
	// At least the server's deadline; far less than the client's minute
	// (the margin is for a loaded machine).
	if took < timeout || took > 20*time.Second {
		t.Fatalf("the call took %s; the server's deadline is %s", took, timeout)
	}
	if _, err := c.GetCustomerStatus(as(ctx, b.read), req); status.Code(err) != codes.NotFound {
		t.Fatalf("once the connection is back: %v", err)
	}
}

// The interceptor keeps a client's shorter deadline and cuts a longer one.
func TestUnaryDeadlineKeepsTheEarlierDeadline(t *testing.T) {
	intercept := unaryDeadline(time.Hour)
	deadlineSeen := func(ctx context.Context) time.Time {
		var got time.Time
		_, _ = intercept(ctx, nil, nil, func(ctx context.Context, _ any) (any, error) {
			got, _ = ctx.Deadline()
			return nil, nil
		})
		return got
	}
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	want, _ := short.Deadline()
	if got := deadlineSeen(short); !got.Equal(want) {
		t.Errorf("client deadline %s became %s", want, got)
	}
	if got := deadlineSeen(context.Background()); got.IsZero() || time.Until(got) > time.Hour {
		t.Errorf("no deadline: the handler saw %s", got)
	}
}

// A token holds at most MaxWatchPerToken Watch streams: the extra ones get
// ResourceExhausted while the first ones keep receiving changes, another
// token is not affected, and a stream that ends gives its slot back.
func TestWatchCapPerToken(t *testing.T) {
	b := setup(t, setupOptions{cfg: Config{MaxWatchPerToken: 2}})
	c := b.client()
	ctx := testContext(t)
	open := func(ctx context.Context, token, id string) (billingv1.BillingStatusService_WatchCustomerStatusClient, error) {
		st, _, err := openWatch(ctx, c, token, id)
		return st, err
	}
	first, err := open(ctx, b.read, "cus_A")
	if err != nil {
		t.Fatal(err)
	}
	secondCtx, endSecond := context.WithCancel(ctx)
	if _, err := open(secondCtx, b.read, "cus_B"); err != nil {
		t.Fatal(err)
	}
	if _, err := open(ctx, b.read, "cus_C"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third stream: %v, want ResourceExhausted", err)
	}
	if _, err := open(ctx, b.admin, "cus_C"); err != nil {
		t.Fatalf("another token: %v", err)
	}
	if n := metricValue(t, b, "lr_billing_state_watch_refused_total"); n != 1 {
		t.Errorf("refused counter %v, want 1", n)
	}
	if n := metricValue(t, b, "lr_billing_state_watch_streams"); n != 3 {
		t.Errorf("open streams gauge %v, want 3", n)
	}

	// The first stream still gets changes.
	change := &billingv1.CustomerStatus{CustomerId: "cus_A", Status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, UpdatedAt: timestamppb.New(time.Now().Add(time.Hour))}
	data, err := proto.Marshal(change)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.publisher.Publish(bus.StatusSubject("cus_A"), data); err != nil {
		t.Fatal(err)
	}
	got, err := first.Recv()
	if err != nil || got.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE {
		t.Fatalf("first stream after the refusal: %v %v", got, err)
	}

	// Ending the second stream frees its slot (the server notices the
	// cancel asynchronously, hence the poll).
	endSecond()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := open(ctx, b.read, "cus_C")
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after a stream ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// metricValue reads an unlabelled counter or gauge from the bundle's
// registry.
func metricValue(t *testing.T, b *bundle, name string) float64 {
	t.Helper()
	families, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// One connection carries at most MaxStreams calls at once: a third stream
// on it waits (the client honours the server's MAX_CONCURRENT_STREAMS)
// while a second connection is served.
func TestMaxStreamsPerConnection(t *testing.T) {
	b := setup(t, setupOptions{cfg: Config{MaxStreams: 2}})
	c := b.client()
	ctx := testContext(t)
	for _, id := range []string{"cus_A", "cus_B"} {
		if _, _, err := openWatch(ctx, c, b.read, id); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := c.GetCustomerStatus(as(short, b.read), byID("cus_A"))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("third call on a full connection: %v, want it to wait until its deadline", err)
	}
	_, err = b.client().GetCustomerStatus(as(ctx, b.read), byID("cus_A"))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("another connection: %v", err)
	}
}

// When the watch connection is closed for good, its streams end with
// Unavailable, so clients reconnect (to a replica that can serve them).
func TestWatchEndsWhenItsConnectionCloses(t *testing.T) {
	b := setup(t, setupOptions{})
	c := b.client()
	ctx := testContext(t)
	st, _, err := openWatch(ctx, c, b.read, "cus_A")
	if err != nil {
		t.Fatal(err)
	}
	b.watchConn.Close()
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("open stream: %v, want Unavailable", err)
	}
	if _, _, err := openWatch(ctx, c, b.read, "cus_A"); status.Code(err) != codes.Unavailable {
		t.Fatalf("new stream: %v, want Unavailable", err)
	}
	// Reads do not need the watch connection.
	_, err = c.GetCustomerStatus(as(ctx, b.read), byID("cus_A"))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetCustomerStatus: %v", err)
	}
}

// A client that pings more often than the enforcement policy allows is
// sent GOAWAY "too_many_pings". grpc-go's own client never pings that
// often, so this speaks HTTP/2 itself.
func TestKeepaliveEnforcement(t *testing.T) {
	b := setup(t, setupOptions{})
	conn, err := net.DialTimeout("tcp", b.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		var data [8]byte
		_, _ = rand.Read(data[:])
		if err := fr.WritePing(false, data); err != nil {
			t.Fatal(err)
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || !bytes.Contains(ga.DebugData(), []byte("too_many_pings")) {
				t.Fatalf("GOAWAY %v %q", ga.ErrCode, ga.DebugData())
			}
			return
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			_ = fr.WriteSettingsAck()
		}
	}
}

func TestWatchSlotsReleaseOnce(t *testing.T) {
	w := newWatchSlots(1)
	release, ok := w.acquire("a")
	if !ok {
		t.Fatal("first slot refused")
	}
	if _, ok := w.acquire("a"); ok {
		t.Fatal("second slot granted")
	}
	release()
	release() // a second call must not free a slot it does not hold
	again, ok := w.acquire("a")
	if !ok {
		t.Fatal("slot not released")
	}
	if _, ok := w.acquire("a"); ok {
		t.Fatal("a double release freed two slots")
	}
	again()
	if w.total() != 0 {
		t.Fatalf("total %d", w.total())
	}
}
