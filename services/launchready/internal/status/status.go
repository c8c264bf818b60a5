// Package status is `launchready status`: the operator's quick look at a
// customer's canonical billing status, read from billing-state's gRPC API
// exactly as the business's backend sees it.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/billingclient"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/config"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/launchready/internal/cli"
)

const usage = `usage: launchready status [flags] cus_...
       launchready status [flags] --user USER_ID
       launchready status [flags] --email ADDRESS
       launchready status --link [--ttl 1h] cus_...

Prints a customer's canonical billing status from billing-state's gRPC API,
or with --link a signed link to the customer's hosted status page
(CreateStatusLink), valid for --ttl (default and most: STATUS_LINK_MAX_TTL).
The address is --addr, else GRPC_ADDR (127.0.0.1:9090). The bearer token is
--token, else STATUS_API_TOKEN, else the dev token that "launchready dev"
keeps in <data>/dev-secrets.json. Exits 1 when the customer is unknown or
the call fails, 2 on bad usage.

`

// Main runs the command; args follow the word "status".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := cli.FlagSet("status", usage, stderr)
	env := config.New(getenv)
	addr := fs.String("addr", env.String("GRPC_ADDR", "127.0.0.1:9090"), "billing-state gRPC address")
	token := fs.String("token", "", "bearer token with the read role")
	user := fs.String("user", "", "look up by the app's user id (metadata.user_id)")
	email := fs.String("email", "", "look up by email")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	events := fs.Int("events", 0, "also print this many of the customer's most recent audit events")
	useTLS := fs.Bool("tls", false, "connect with TLS (system roots)")
	dataDir := fs.String("data", ".data", "the dev data directory holding dev-secrets.json")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of the whole command")
	link := fs.Bool("link", false, "print a link to the customer's hosted status page instead")
	ttl := fs.Duration("ttl", 0, "with --link: how long the link works (0: STATUS_LINK_MAX_TTL)")
	rest, code, ok := cli.Parse(fs, args)
	if !ok {
		return code
	}
	req := &billingv1.GetCustomerStatusRequest{}
	switch {
	case len(rest) == 1 && *user == "" && *email == "":
		req.Lookup = &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: rest[0]}
	case len(rest) == 0 && *user != "" && *email == "":
		req.Lookup = &billingv1.GetCustomerStatusRequest_UserId{UserId: *user}
	case len(rest) == 0 && *email != "" && *user == "":
		req.Lookup = &billingv1.GetCustomerStatusRequest_Email{Email: *email}
	default:
		fs.Usage()
		return 2
	}
	if *link && (len(rest) != 1 || *asJSON || *events > 0) {
		fs.Usage()
		return 2
	}
	tok := Token(*token, env, *dataDir)
	if tok == "" {
		fmt.Fprintln(stderr, "launchready status: no token: pass --token or set STATUS_API_TOKEN")
		return 2
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := Dial(*addr, *useTLS)
	if err != nil {
		fmt.Fprintf(stderr, "launchready status: %v\n", err)
		return 1
	}
	defer conn.Close()
	client := billingv1.NewBillingStatusServiceClient(conn)
	ctx = billingclient.WithToken(ctx, tok)
	if *link {
		l, err := client.CreateStatusLink(ctx, &billingv1.CreateStatusLinkRequest{CustomerId: rest[0], Ttl: durationpb.New(*ttl)})
		if err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintf(stdout, "%s\t(until %s)\n", l.GetUrl(), l.GetExpiresAt().AsTime().UTC().Format(time.RFC3339))
		return 0
	}

	st, err := client.GetCustomerStatus(ctx, req)
	if err != nil {
		return fail(stderr, err)
	}
	var timeline []*billingv1.CustomerEvent
	if *events > 0 {
		resp, err := client.ListCustomerEvents(ctx, &billingv1.ListCustomerEventsRequest{CustomerId: st.GetCustomerId(), PageSize: int32(min(*events, 500))})
		if err != nil {
			return fail(stderr, err)
		}
		timeline = resp.GetEvents()
	}
	if *asJSON {
		return printJSON(stdout, stderr, st, timeline)
	}
	printStatus(stdout, st, timeline)
	return 0
}

func fail(stderr io.Writer, err error) int {
	s := grpcstatus.Convert(err)
	switch s.Code() {
	case codes.NotFound:
		fmt.Fprintln(stderr, "launchready status: customer not found")
	case codes.Unauthenticated, codes.PermissionDenied:
		fmt.Fprintf(stderr, "launchready status: %s: %s (check the token)\n", s.Code(), s.Message())
	case codes.Unavailable, codes.DeadlineExceeded:
		fmt.Fprintf(stderr, "launchready status: billing-state unreachable: %s\n", s.Message())
	default:
		fmt.Fprintf(stderr, "launchready status: %s: %s\n", s.Code(), s.Message())
	}
	return 1
}

func printJSON(stdout, stderr io.Writer, st *billingv1.CustomerStatus, timeline []*billingv1.CustomerEvent) int {
	m := protojson.MarshalOptions{UseProtoNames: true}
	b, err := m.Marshal(st)
	if err != nil {
		fmt.Fprintf(stderr, "launchready status: %v\n", err)
		return 1
	}
	if timeline == nil {
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	out := map[string]json.RawMessage{"status": b}
	var evs []json.RawMessage
	for _, e := range timeline {
		eb, err := m.Marshal(e)
		if err != nil {
			fmt.Fprintf(stderr, "launchready status: %v\n", err)
			return 1
		}
		evs = append(evs, eb)
	}
	out["events"], _ = json.Marshal(evs)
	b, _ = json.Marshal(out)
	fmt.Fprintln(stdout, string(b))
	return 0
}

func printStatus(w io.Writer, st *billingv1.CustomerStatus, timeline []*billingv1.CustomerEvent) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("customer", st.GetCustomerId())
	row("status", canonical.StatusName(st.GetStatus()))
	row("entitled", yesNo(st.GetEntitled()))
	plan := dash(st.GetPlan())
	if st.GetSubscriptionId() != "" {
		plan += " (" + st.GetSubscriptionId() + ")"
	}
	row("plan", plan)
	row("period end", when(st.GetCurrentPeriodEnd()))
	row("cancel at period end", yesNo(st.GetCancelAtPeriodEnd()))
	row("trial end", when(st.GetTrialEnd()))
	row("mrr", money(st.GetMrr(), st.GetCurrency()))
	row("refunded", money(st.GetAmountRefunded(), st.GetCurrency()))
	row("dispute open", yesNo(st.GetDisputeOpen()))
	row("last payment failure", when(st.GetLastPaymentFailedAt()))
	row("email", dash(st.GetEmail()))
	row("user id", dash(st.GetUserId()))
	row("deleted", yesNo(st.GetDeleted()))
	row("needs reconciliation", yesNo(st.GetNeedsReconciliation()))
	row("livemode", yesNo(st.GetLivemode()))
	if run := st.GetSmokeRun(); run != "" {
		row("smoke test", "run "+run+" (left out of counts, CRM reports and drift checks)")
	}
	row("last event", dash(st.GetLastEventId()))
	row("updated", when(st.GetUpdatedAt()))
	_ = tw.Flush()
	if len(timeline) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORDED\tACTION\tACTOR\tEVENT\tTYPE\tSTATUS")
	for _, e := range timeline {
		after := e.GetAfter().GetStatus()
		before := billingv1.BillingStatus_BILLING_STATUS_NONE // a customer first seen in this event
		if b := e.GetBefore(); b != nil {
			before = b.GetStatus()
		}
		change := canonical.StatusName(after)
		if before != after {
			change = canonical.StatusName(before) + " -> " + change
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", when(e.GetRecordedAt()), e.GetAction(), e.GetActor(),
			dash(e.GetEventId()), dash(e.GetEventType()), change)
	}
	_ = tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// money prints an amount in the smallest unit as the currency's units,
// assuming two decimals (zero-decimal currencies print as such).
func money(amount int64, currency string) string {
	if currency == "" {
		if amount == 0 {
			return "0"
		}
		return fmt.Sprintf("%d", amount)
	}
	cur := strings.ToUpper(currency)
	switch strings.ToLower(currency) {
	case "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf":
		return fmt.Sprintf("%d %s", amount, cur)
	}
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, amount/100, amount%100, cur)
}

// Token is the bearer token an operator's command sends: the flag's value,
// else STATUS_API_TOKEN, else the dev token "launchready dev" keeps in
// <dataDir>/dev-secrets.json; "" when there is none.
func Token(flagValue string, env *config.Env, dataDir string) string {
	if flagValue != "" {
		return flagValue
	}
	if t := env.String("STATUS_API_TOKEN", ""); t != "" {
		return t
	}
	return devToken(filepath.Join(dataDir, "dev-secrets.json"))
}

// Dial returns a client connection to billing-state's gRPC API at addr
// (host:port, or :port for the local host), with TLS on system roots when
// useTLS.
func Dial(addr string, useTLS bool) (*grpc.ClientConn, error) {
	return billingclient.Dial(cli.Dialable(addr), useTLS)
}

func devToken(path string) string {
	b, err := os.ReadFile(path) // #nosec G304 -- the dev secrets file in the data directory launchready dev owns
	if err != nil {
		return ""
	}
	var s struct {
		APIToken string `json:"api_token"`
	}
	if json.Unmarshal(b, &s) != nil {
		return ""
	}
	return s.APIToken
}
