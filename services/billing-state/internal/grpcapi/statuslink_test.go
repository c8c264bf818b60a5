package grpcapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
	"github.com/launchready/launchready/test/testkit/journey"
)

func TestCreateStatusLink(t *testing.T) {
	secrets, err := statuspage.ParseSecrets(strings.Repeat("s", 40))
	if err != nil {
		t.Fatal(err)
	}
	signer := statuspage.NewSigner(secrets, 2*time.Hour, nil)
	bd := setup(t, setupOptions{statusLinks: signer, statusPageURL: "https://status.example.com/"})
	cli := bd.client()
	ctx := as(context.Background(), bd.read)
	b := journey.New(t, "cus_link1", displayBase)
	for _, ev := range journey.Events(journey.SubscriptionLifecycle(b)[:3]) {
		if _, err := bd.store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		ttl  *durationpb.Duration
		want time.Duration
	}{{nil, 2 * time.Hour}, {durationpb.New(10 * time.Minute), 10 * time.Minute}, {durationpb.New(48 * time.Hour), 2 * time.Hour}} {
		link, err := cli.CreateStatusLink(ctx, &billingv1.CreateStatusLinkRequest{CustomerId: b.CustomerID, Ttl: c.ttl})
		if err != nil {
			t.Fatal(err)
		}
		token, ok := strings.CutPrefix(link.GetUrl(), "https://status.example.com/s/")
		if !ok {
			t.Fatalf("url %q", link.GetUrl())
		}
		if id, err := signer.Verify(token); err != nil || id != b.CustomerID {
			t.Fatalf("the link names %q (%v)", id, err)
		}
		if d := time.Until(link.GetExpiresAt().AsTime()); d > c.want+time.Second || d < c.want-time.Minute {
			t.Errorf("ttl %v: expires in %s, want %s", c.ttl, d, c.want)
		}
	}
	for name, req := range map[string]*billingv1.CreateStatusLinkRequest{
		"negative ttl":     {CustomerId: b.CustomerID, Ttl: durationpb.New(-time.Minute)},
		"not a stripe id":  {CustomerId: "cus.x>"},
		"unknown customer": {CustomerId: "cus_nobody"},
	} {
		want := codes.InvalidArgument
		if name == "unknown customer" {
			want = codes.NotFound
		}
		if _, err := cli.CreateStatusLink(ctx, req); status.Code(err) != want {
			t.Errorf("%s: %v, want %s", name, err, want)
		}
	}
}
