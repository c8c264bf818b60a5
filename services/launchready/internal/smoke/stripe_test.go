package smoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// TestStripeSandboxFailureShapes makes the --via stripe calls against
// stripe-mock, which checks every request against Stripe's OpenAPI
// description: the customer, the failing card attached and made default,
// the product, the subscription whose charge fails, and the clean-up.
func TestStripeSandboxFailureShapes(t *testing.T) {
	base := stripemock.Start(t)
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	cfg := Config{StripeBase: base, StripeKey: config.Secret("sk_test_" + hex.EncodeToString(b)), HTTP: client, CustomerEmail: "ops@example.com"}
	p, err := failViaStripe(context.Background(), cfg, "run1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.CustomerID, "cus_") || !strings.HasPrefix(p.InvoiceID, "in_") || p.EventID != "" {
		t.Fatalf("payment %+v", p)
	}
	if err := p.resolve(context.Background()); err != nil {
		t.Fatal(err)
	}

	cfg.StripeKey = config.Secret("sk_live_" + hex.EncodeToString(b))
	if _, err := failViaStripe(context.Background(), cfg, "run2"); err == nil || !strings.Contains(err.Error(), "test-mode") {
		t.Fatalf("a live key must be refused, got %v", err)
	}
}
