package billingclient_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/billingclient"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// tokenEcho answers GetCustomerStatus with the customer id only when the
// call carries the bearer token it expects.
type tokenEcho struct {
	billingv1.UnimplementedBillingStatusServiceServer
	want string
}

func (s tokenEcho) GetCustomerStatus(ctx context.Context, req *billingv1.GetCustomerStatusRequest) (*billingv1.CustomerStatus, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+s.want {
		return nil, status.Error(codes.Unauthenticated, "no or wrong token")
	}
	return &billingv1.CustomerStatus{CustomerId: req.GetCustomerId()}, nil
}

func serve(t *testing.T, token string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	billingv1.RegisterBillingStatusServiceServer(srv, tokenEcho{want: token})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func TestTokenPerCallAndPerConnection(t *testing.T) {
	const tok = "0123456789abcdef0123456789abcdef"
	addr := serve(t, tok)
	req := &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "cus_1"}}

	plain, err := billingclient.Dial(addr, false)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	c := billingv1.NewBillingStatusServiceClient(plain)
	if _, err := c.GetCustomerStatus(t.Context(), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a token: %v, want Unauthenticated", err)
	}
	if st, err := c.GetCustomerStatus(billingclient.WithToken(t.Context(), tok), req); err != nil || st.GetCustomerId() != "cus_1" {
		t.Fatalf("WithToken: %v %v", st, err)
	}

	withBearer, err := billingclient.Dial(addr, false, billingclient.Bearer(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer withBearer.Close()
	if st, err := billingv1.NewBillingStatusServiceClient(withBearer).GetCustomerStatus(t.Context(), req); err != nil || st.GetCustomerId() != "cus_1" {
		t.Fatalf("Bearer: %v %v", st, err)
	}
	wrong, err := billingclient.Dial(addr, false, billingclient.Bearer("not the token at all, but long enough"))
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if _, err := billingv1.NewBillingStatusServiceClient(wrong).GetCustomerStatus(t.Context(), req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong token: %v, want Unauthenticated", err)
	}
}
