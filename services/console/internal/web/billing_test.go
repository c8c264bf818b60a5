package web

import (
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/billingclient"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/consoletest"
)

// startBillingState runs billing-state against stripeBase and returns its
// gRPC API, called with the console's token (read and admin).
func startBillingState(t *testing.T, stripeBase string) *Billing {
	t.Helper()
	addr, token := consoletest.StartBillingState(t, stripeBase)
	conn, err := billingclient.Dial(addr, false, billingclient.Bearer(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &Billing{Status: billingv1.NewBillingStatusServiceClient(conn), Admin: billingv1.NewBillingAdminServiceClient(conn)}
}

// actionIDOf reads the action id of a drawn form.
func actionIDOf(t *testing.T, body string) string {
	t.Helper()
	const mark = `name="action_id" value="`
	i := strings.Index(body, mark)
	if i < 0 {
		t.Fatalf("no action id on the form: %s", body)
	}
	rest := body[i+len(mark):]
	return rest[:strings.IndexByte(rest, '"')]
}
