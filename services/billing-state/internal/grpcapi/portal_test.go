package grpcapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// TestCreatePortalSession opens the billing portal through stripe-mock
// (which checks the request against Stripe's API specification) for a
// customer billing-state knows, and refuses what it must.
func TestCreatePortalSession(t *testing.T) {
	key := make([]byte, 12)
	_, _ = rand.Read(key)
	client, err := stripeapi.New(stripeapi.Config{Key: config.Secret("sk_test_" + hex.EncodeToString(key)), Base: stripemock.Start(t), Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	urls, err := portal.ParseReturnURLs("https://app.example.com/billing/,myapp://billing/done")
	if err != nil {
		t.Fatal(err)
	}
	bd := setup(t, setupOptions{portal: client, returnURLs: urls})
	cli := bd.client()
	ctx := as(context.Background(), bd.read)
	b := journey.New(t, "cus_portal1", displayBase)
	for _, ev := range journey.Events(journey.SubscriptionLifecycle(b)[:4]) {
		if _, err := bd.store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ret := range []string{"https://app.example.com/billing/done?tab=card", "myapp://billing/done"} {
		s, err := cli.CreatePortalSession(ctx, &billingv1.CreatePortalSessionRequest{CustomerId: b.CustomerID, ReturnUrl: ret})
		if err != nil {
			t.Fatalf("%s: %v", ret, err)
		}
		if u, err := url.Parse(s.GetUrl()); err != nil || u.Scheme != "https" || u.Host == "" {
			t.Fatalf("portal url %q", s.GetUrl())
		}
	}
	for _, c := range []struct {
		name string
		req  *billingv1.CreatePortalSessionRequest
		want codes.Code
	}{
		{"return url off the list", &billingv1.CreatePortalSessionRequest{CustomerId: b.CustomerID, ReturnUrl: "https://evil.example.com/billing/"}, codes.InvalidArgument},
		{"return url climbing out", &billingv1.CreatePortalSessionRequest{CustomerId: b.CustomerID, ReturnUrl: "https://app.example.com/billing/../admin"}, codes.InvalidArgument},
		{"no return url", &billingv1.CreatePortalSessionRequest{CustomerId: b.CustomerID}, codes.InvalidArgument},
		{"unknown customer", &billingv1.CreatePortalSessionRequest{CustomerId: "cus_nobody", ReturnUrl: "myapp://billing/done"}, codes.NotFound},
		{"no customer", &billingv1.CreatePortalSessionRequest{ReturnUrl: "myapp://billing/done"}, codes.InvalidArgument},
	} {
		if _, err := cli.CreatePortalSession(ctx, c.req); status.Code(err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
	if _, err := cli.CreatePortalSession(context.Background(), &billingv1.CreatePortalSessionRequest{CustomerId: b.CustomerID, ReturnUrl: "myapp://billing/done"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v", err)
	}
}

// TestCreatePortalSessionNeedsAKey: without STRIPE_API_KEY the call says so.
func TestCreatePortalSessionNeedsAKey(t *testing.T) {
	urls, _ := portal.ParseReturnURLs("https://app.example.com/billing/")
	bd := setup(t, setupOptions{returnURLs: urls})
	_, err := bd.client().CreatePortalSession(as(context.Background(), bd.read),
		&billingv1.CreatePortalSessionRequest{CustomerId: "cus_x", ReturnUrl: "https://app.example.com/billing/"})
	if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "the billing portal needs STRIPE_API_KEY on billing-state" {
		t.Fatalf("%v", err)
	}
}
