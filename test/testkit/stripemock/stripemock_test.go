package stripemock_test

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/launchready/launchready/test/testkit/stripemock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartServesStripesAPI(t *testing.T) {
	base := stripemock.Start(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/customers", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("sk_test_"+t.Name(), "")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/customers: %s, want 200", resp.Status)
	}
	// Without a key stripe-mock answers as Stripe does.
	resp2, err := client.Get(base + "/v1/customers")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without a key: %s, want 401", resp2.Status)
	}
}
