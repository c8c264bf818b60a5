package grpcapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Roles a token can carry. admin implies read.
const (
	RoleRead  = "read"
	RoleAdmin = "admin"
)

type tokenEntry struct {
	name  string
	hash  [sha256.Size]byte
	roles map[string]bool
}

// MinTokenLength is the shortest token ParseTokens accepts, in
// characters: 32 random hex digits carry 128 bits, beyond guessing over the
// network, and a short token is usually a placeholder left in place.
const MinTokenLength = 32

// Tokens holds the configured API tokens as SHA-256 hashes only: the
// plaintext is dropped once parsed, so a heap dump or a debug print of the
// config shows nothing usable.
type Tokens struct {
	entries []tokenEntry
}

// ParseTokens reads STATUS_API_TOKENS: "name=token:role[+role],...", e.g.
// "mobile=...:read,ops=...:read+admin". The token is everything between the
// first "=" and the last ":", and must be at least MinTokenLength
// characters long. An empty spec gives an empty set, which refuses every
// call. Errors name the entry, never its token.
func ParseTokens(spec string) (*Tokens, error) {
	t := &Tokens{}
	for i, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		eq := strings.Index(item, "=")
		colon := strings.LastIndex(item, ":")
		if eq <= 0 || colon <= eq+1 || colon == len(item)-1 {
			// Never echo the item: it holds a token.
			return nil, fmt.Errorf("STATUS_API_TOKENS: entry %d is not name=token:role[+role]", i+1)
		}
		name, token, roleSpec := item[:eq], item[eq+1:colon], item[colon+1:]
		if utf8.RuneCountInString(token) < MinTokenLength {
			return nil, fmt.Errorf("STATUS_API_TOKENS: the token of %q is shorter than %d characters (make one with: openssl rand -hex 24)", name, MinTokenLength)
		}
		roles := map[string]bool{}
		for _, r := range strings.Split(roleSpec, "+") {
			switch r = strings.TrimSpace(r); r {
			case RoleRead, RoleAdmin:
				roles[r] = true
			default:
				return nil, fmt.Errorf("STATUS_API_TOKENS: entry %q: unknown role %q (want read or admin)", name, r)
			}
		}
		if roles[RoleAdmin] {
			roles[RoleRead] = true
		}
		for _, e := range t.entries {
			if e.name == name {
				return nil, fmt.Errorf("STATUS_API_TOKENS: name %q appears twice", name)
			}
		}
		t.entries = append(t.entries, tokenEntry{name: name, hash: sha256.Sum256([]byte(token)), roles: roles})
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Names lists the token names and roles, for the startup log.
func (t *Tokens) Names() []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, e := range t.entries {
		var roles []string
		for r := range e.roles {
			roles = append(roles, r)
		}
		sort.Strings(roles)
		out = append(out, e.name+":"+strings.Join(roles, "+"))
	}
	return out
}

// String never shows hashes either.
func (t *Tokens) String() string { return fmt.Sprintf("%d tokens", t.Len()) }

// authenticate returns the entry for token. Every entry is compared, in
// constant time, so timing says nothing about which or how many exist.
func (t *Tokens) authenticate(token string) (tokenEntry, bool) {
	var found tokenEntry
	ok := 0
	if t == nil || token == "" {
		return found, false
	}
	h := sha256.Sum256([]byte(token))
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found = e
			ok = 1
		}
	}
	return found, ok == 1
}

// Caller is who made the call.
type Caller struct {
	Name  string
	Roles map[string]bool
}

type callerKey struct{}

// CallerFrom returns the authenticated caller of a request.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// requiredRole maps each BillingStatusService method to the role it needs.
// Methods of other services (health, reflection) need no token: probes and
// tooling must work without one.
var requiredRole = map[string]string{
	billingv1.BillingStatusService_GetCustomerStatus_FullMethodName:   RoleRead,
	billingv1.BillingStatusService_WatchCustomerStatus_FullMethodName: RoleRead,
	billingv1.BillingStatusService_ListCustomerEvents_FullMethodName:  RoleRead,
	billingv1.BillingStatusService_ReconcileCustomer_FullMethodName:   RoleAdmin,
	billingv1.BillingStatusService_CheckDrift_FullMethodName:          RoleAdmin,
	billingv1.BillingStatusService_GetDisplayMessages_FullMethodName:  RoleRead,
	billingv1.BillingStatusService_CreatePortalSession_FullMethodName: RoleRead,
	billingv1.BillingStatusService_CreateStatusLink_FullMethodName:    RoleRead,

	billingv1.BillingAdminService_RefundPayment_FullMethodName:          RoleAdmin,
	billingv1.BillingAdminService_CancelSubscription_FullMethodName:     RoleAdmin,
	billingv1.BillingAdminService_ChangeSubscriptionPlan_FullMethodName: RoleAdmin,
}

const (
	servicePrefix      = "/" + "launchready.billing.v1.BillingStatusService/"
	adminServicePrefix = "/" + "launchready.billing.v1.BillingAdminService/"
)

func (t *Tokens) authorize(ctx context.Context, method string) (context.Context, error) {
	role, ok := requiredRole[method]
	if !ok {
		if ours(method) {
			// A method added to the service but not to the table: refuse
			// rather than serve it unauthenticated.
			return ctx, status.Error(codes.PermissionDenied, "method not authorised")
		}
		return ctx, nil
	}
	token := bearer(ctx)
	if token == "" {
		return ctx, status.Error(codes.Unauthenticated, "missing bearer token")
	}
	e, ok := t.authenticate(token)
	if !ok {
		return ctx, status.Error(codes.Unauthenticated, "invalid token")
	}
	if !e.roles[role] {
		return ctx, status.Errorf(codes.PermissionDenied, "token %q lacks the %s role", e.name, role)
	}
	return context.WithValue(ctx, callerKey{}, Caller{Name: e.name, Roles: e.roles}), nil
}

func bearer(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	for _, v := range md.Get("authorization") {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
	}
	return ""
}

// UnaryInterceptor authenticates and authorises unary calls.
func (t *Tokens) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := t.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor authenticates and authorises streaming calls.
func (t *Tokens) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := t.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
