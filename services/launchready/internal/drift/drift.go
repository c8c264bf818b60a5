// Package drift is `launchready drift`: it asks billing-state to compare
// its subscriptions with Stripe's and prints each customer whose status
// differs, with ours and Stripe's. It exits 1 when there is any drift, so
// a script or a cron job can act on it. `launchready drift --fix` has
// billing-state repair them from Stripe, through the same ordering rules
// as any event, with an audit_log row naming the token.
package drift

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/billingclient"
	"github.com/launchready/launchready/pkg/config"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/launchready/internal/cli"
	"github.com/launchready/launchready/services/launchready/internal/status"
)

const usage = `usage: launchready drift [--fix] [flags]

Compares every subscription Stripe lists (all statuses) with billing-state's
and prints those whose status differs: customer, subscription, ours and
Stripe's. Exits 0 when there is none, 1 when there is drift or the check
fails, 2 on bad usage. --fix repairs each customer from Stripe (audited
with the token's name) and exits 0 once every repair is applied.

Needs billing-state with STRIPE_API_KEY. The address is --addr, else
GRPC_ADDR (127.0.0.1:9090); the token (admin role) is --token, else
STATUS_API_TOKEN, else the dev token of "launchready dev".

`

// Main runs the command; args follow the word "drift".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := cli.FlagSet("drift", usage, stderr)
	env := config.New(getenv)
	addr := fs.String("addr", env.String("GRPC_ADDR", "127.0.0.1:9090"), "billing-state gRPC address")
	token := fs.String("token", "", "bearer token with the admin role")
	fix := fs.Bool("fix", false, "repair every customer with drift from Stripe")
	useTLS := fs.Bool("tls", false, "connect with TLS (system roots)")
	dataDir := fs.String("data", ".data", "the dev data directory holding dev-secrets.json")
	timeout := fs.Duration("timeout", time.Minute, "timeout of the whole command")
	if code, ok := cli.ParseFlagsOnly(fs, args); !ok {
		return code
	}
	tok := status.Token(*token, env, *dataDir)
	if tok == "" {
		fmt.Fprintln(stderr, "launchready drift: no token: pass --token or set STATUS_API_TOKEN (admin role)")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := status.Dial(*addr, *useTLS)
	if err != nil {
		fmt.Fprintf(stderr, "launchready drift: %v\n", err)
		return 1
	}
	defer conn.Close()
	client := billingv1.NewBillingStatusServiceClient(conn)
	resp, err := client.CheckDrift(billingclient.WithToken(ctx, tok), &billingv1.CheckDriftRequest{Fix: *fix})
	if err != nil {
		s := grpcstatus.Convert(err)
		switch s.Code() {
		case codes.Unauthenticated, codes.PermissionDenied:
			fmt.Fprintf(stderr, "launchready drift: %s: %s (an admin token is needed)\n", s.Code(), s.Message())
		default:
			fmt.Fprintf(stderr, "launchready drift: %s: %s\n", s.Code(), s.Message())
		}
		return 1
	}
	drifts := resp.GetDrifts()
	if len(drifts) == 0 {
		fmt.Fprintln(stdout, "no drift: every subscription Stripe lists has its status here")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CUSTOMER\tSUBSCRIPTION\tOURS\tSTRIPE")
	customers := map[string]bool{}
	for _, d := range drifts {
		customers[d.GetCustomerId()] = true
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.GetCustomerId(), d.GetSubscriptionId(), d.GetOurs(), d.GetStripe())
	}
	_ = tw.Flush()
	if resp.GetFixed() {
		fmt.Fprintf(stdout, "repaired %d customer(s) from Stripe; see their audit log (launchready status --events 5 cus_...)\n", len(customers))
		return 0
	}
	fmt.Fprintf(stdout, "%d customer(s) differ from Stripe; `launchready drift --fix` repairs them\n", len(customers))
	return 1
}
