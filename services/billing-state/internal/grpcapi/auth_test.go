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
	long := strings.Repeat("k", MinTokenLength)
	mobile, ops := "abc:def"+long, "x=y"+long
	tok, err := ParseTokens(" mobile=" + mobile + ":read , ops=" + ops + ":read+admin,")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Len() != 2 || strings.Join(tok.Names(), ",") != "mobile:read,ops:admin+read" {
		t.Fatalf("names %v", tok.Names())
	}
	// The token is everything between the first "=" and the last ":".
	if e, ok := tok.authenticate(mobile); !ok || e.name != "mobile" {
		t.Fatalf("token with a colon: %v %v", e, ok)
	}
	if e, ok := tok.authenticate(ops); !ok || !e.roles[RoleRead] || !e.roles[RoleAdmin] {
		t.Fatalf("admin implies read: %v %v", e, ok)
	}
	if _, ok := tok.authenticate(mobile[:len(mobile)-1]); ok {
		t.Fatal("prefix of a token accepted")
	}
	if empty, err := ParseTokens(""); err != nil || empty.Len() != 0 {
		t.Fatalf("empty: %v %v", empty, err)
	}
	for _, bad := range []string{"noequals:read", "=" + long + ":read", "name=:read", "name=" + long, "name=" + long + ":",
		"name=" + long + ":write", "a=" + long + "1:read,a=" + long + "2:read"} {
		_, err := ParseTokens(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), long[:8]) {
			t.Errorf("%q: error echoes the token: %v", bad, err)
		}
	}
	if s := tok.String(); strings.Contains(s, "abc") {
		t.Fatalf("String() = %q", s)
	}
}

// A token shorter than MinTokenLength characters is refused with a
// message that names the entry and never shows the token.
func TestParseTokensRefusesShortTokens(t *testing.T) {
	for _, short := range []string{"x7Q", "0123456789abcdef0123456789abcde", strings.Repeat("é", MinTokenLength-1)} {
		_, err := ParseTokens("ok=" + strings.Repeat("k", 40) + ":read,mobile=" + short + ":read")
		if err == nil {
			t.Errorf("%d-character token accepted", len([]rune(short)))
			continue
		}
		if !strings.Contains(err.Error(), `"mobile"`) || !strings.Contains(err.Error(), "32 characters") || strings.Contains(err.Error(), short) {
			t.Errorf("message %q: want the entry's name and the rule, without the token", err)
		}
	}
	// Exactly 32 characters, multi-byte ones too, is enough.
	for _, ok := range []string{strings.Repeat("a", MinTokenLength), strings.Repeat("é", MinTokenLength)} {
		if _, err := ParseTokens("mobile=" + ok + ":read"); err != nil {
			t.Errorf("32-character token refused: %v", err)
		}
	}
}

func TestAuthorize(t *testing.T) {
	r, a := "r-token-"+strings.Repeat("r", 32), "a-token-"+strings.Repeat("a", 32)
	tok, err := ParseTokens("mobile=" + r + ":read,ops=" + a + ":admin")
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
		{with(r), get, codes.Unauthenticated, ""},
		{with("Bearer " + r), get, codes.OK, "mobile"},
		{with("bearer " + r), get, codes.OK, "mobile"},
		{with("Bearer " + r), rec, codes.PermissionDenied, ""},
		{with("Bearer " + a), rec, codes.OK, "ops"},
		{with("Bearer " + a), get, codes.OK, "ops"},
		{context.Background(), "/grpc.health.v1.Health/Check", codes.OK, ""},
		{with("Bearer " + a), "/launchready.billing.v1.BillingStatusService/Unlisted", codes.PermissionDenied, ""},
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
