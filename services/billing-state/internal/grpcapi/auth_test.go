package grpcapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

func TestParseTokens(t *testing.T) {
	tok, err := ParseTokens(" mobile=abc:def:read , ops=x=y:read+admin,")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Len() != 2 || strings.Join(tok.Names(), ",") != "mobile:read,ops:admin+read" {
		t.Fatalf("names %v", tok.Names())
	}
	// The token is everything between the first "=" and the last ":".
	if e, ok := tok.authenticate("abc:def"); !ok || e.name != "mobile" {
		t.Fatalf("token with a colon: %v %v", e, ok)
	}
	if e, ok := tok.authenticate("x=y"); !ok || !e.roles[RoleRead] || !e.roles[RoleAdmin] {
		t.Fatalf("admin implies read: %v %v", e, ok)
	}
	if _, ok := tok.authenticate("abc"); ok {
		t.Fatal("prefix of a token accepted")
	}
	if empty, err := ParseTokens(""); err != nil || empty.Len() != 0 {
		t.Fatalf("empty: %v %v", empty, err)
	}
	for _, bad := range []string{"noequals:read", "=tok:read", "name=:read", "name=tok", "name=tok:", "name=tok:write", "a=t1:read,a=t2:read"} {
		_, err := ParseTokens(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "tok:") || strings.Contains(err.Error(), "t1") {
			t.Errorf("%q: error echoes the token: %v", bad, err)
		}
	}
	if s := tok.String(); strings.Contains(s, "abc") {
		t.Fatalf("String() = %q", s)
	}
}

func TestAuthorize(t *testing.T) {
	tok, err := ParseTokens("mobile=r-token:read,ops=a-token:admin")
	if err != nil {
		t.Fatal(err)
	}
	with := func(v string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", v))
	}
	get, rec := billingv1.BillingStatusService_GetCustomerStatus_FullMethodName, billingv1.BillingStatusService_ReconcileCustomer_FullMethodName
	cases := []struct {
		ctx    context.Context
		method string
		want   codes.Code
		caller string
	}{
		{context.Background(), get, codes.Unauthenticated, ""},
		{with("Bearer nope"), get, codes.Unauthenticated, ""},
		{with("r-token"), get, codes.Unauthenticated, ""},
		{with("Bearer r-token"), get, codes.OK, "mobile"},
		{with("bearer r-token"), get, codes.OK, "mobile"},
		{with("Bearer r-token"), rec, codes.PermissionDenied, ""},
		{with("Bearer a-token"), rec, codes.OK, "ops"},
		{with("Bearer a-token"), get, codes.OK, "ops"},
		{context.Background(), "/grpc.health.v1.Health/Check", codes.OK, ""},
		{with("Bearer a-token"), "/launchready.billing.v1.BillingStatusService/Unlisted", codes.PermissionDenied, ""},
	}
	for i, c := range cases {
		ctx, err := tok.authorize(c.ctx, c.method)
		if status.Code(err) != c.want {
			t.Errorf("case %d: %v, want %s", i, err, c.want)
			continue
		}
		if caller, _ := CallerFrom(ctx); caller.Name != c.caller {
			t.Errorf("case %d: caller %q, want %q", i, caller.Name, c.caller)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []int64{1, 42, 1 << 40} {
		got, ok := decodeCursor(encodeCursor(id))
		if !ok || got != id {
			t.Fatalf("%d: %d %v", id, got, ok)
		}
	}
	for _, bad := range []string{"", "!!", "djE6", encodeCursor(0), "djE6LTU"} {
		if _, ok := decodeCursor(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}
