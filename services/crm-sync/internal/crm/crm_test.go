package crm_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/vendorhttp"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
)

func token(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pat-eu1-" + hex.EncodeToString(b)
}

// Many workers on one caller: the fake, measuring arrival times, never
// sees more than the limit in any window.
func TestCallerRateIsSharedAcrossWorkers(t *testing.T) {
	tok := token(t)
	fake := hubspotfake.Start(tok)
	defer fake.Close()
	const limit, window = 10, 500 * time.Millisecond
	reg := prometheus.NewRegistry()
	c := crm.NewClient(crm.ClientConfig{Vendor: "hubspot", Limit: limit, Window: window, Metrics: crm.NewMetrics(reg)})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				req, _ := http.NewRequest(http.MethodGet, fake.URL()+"/crm/v3/objects/contacts/1", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				if _, _, err := c.Do(context.Background(), "GET contact", req); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got := fake.MaxInWindow(window); got > limit {
		t.Fatalf("%d requests in one %s window, limit %d", got, window, limit)
	}
	if got := testutil.ToFloat64(crm.NewMetrics(reg).Calls.WithLabelValues("hubspot", "rejected")); got != 40 {
		t.Fatalf("lr_crm_calls_total{outcome=rejected} = %v, want 40 (404s)", got)
	}
}

func TestClassify(t *testing.T) {
	tok := token(t)
	c := crm.NewClient(crm.ClientConfig{Vendor: "hubspot", Secrets: []string{tok}})
	if err := c.Classify("op", &vendorhttp.Response{Status: 200}); err != nil {
		t.Fatalf("200: %v", err)
	}
	h := http.Header{"Retry-After": []string{"2"}}
	err := c.Classify("op", &vendorhttp.Response{Status: 429, Header: h})
	if err == nil || bus.IsPermanent(err) {
		t.Fatalf("429: %v; want a retry", err)
	}
	err = c.Classify("op", &vendorhttp.Response{Status: 503, Header: http.Header{}, Body: []byte("upstream down")})
	if err == nil || bus.IsPermanent(err) {
		t.Fatalf("503: %v; want a retry", err)
	}
	body := `{"status":"error","message":"bad token ` + tok + ` and Authorization: Bearer abc.def and sk_test_51Hxyz"}`
	err = c.Classify("op", &vendorhttp.Response{Status: 400, Header: http.Header{}, Body: []byte(body)})
	if !bus.IsPermanent(err) {
		t.Fatalf("400: %v; want permanent", err)
	}
	for _, leak := range []string{tok, "abc.def", "sk_test_51Hxyz"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("400 reason %q leaks %q", err.Error(), leak)
		}
	}
	if !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "bad token") {
		t.Errorf("400 reason %q lost the vendor's message", err.Error())
	}
}

func TestMoney(t *testing.T) {
	for _, c := range []struct {
		minor    int64
		currency string
		want     string
	}{{2900, "usd", "29.00"}, {5, "eur", "0.05"}, {0, "", "0.00"}, {500, "JPY", "500"}, {-150, "usd", "-1.50"}} {
		if got := crm.Money(c.minor, c.currency); got != c.want {
			t.Errorf("Money(%d, %s) = %s, want %s", c.minor, c.currency, got, c.want)
		}
	}
}

// sync1 pushes one change alone.
func sync1(a crm.Adapter, ctx context.Context, ch *crm.Change) (crm.Result, error) {
	out := a.Sync(ctx, []*crm.Change{ch})[0]
	return out.Result, out.Err
}

func newHubSpot(t *testing.T) (*crm.HubSpot, *hubspotfake.Server) {
	t.Helper()
	tok := token(t)
	fake := hubspotfake.Start(tok)
	t.Cleanup(fake.Close)
	c := crm.NewClient(crm.ClientConfig{Vendor: "hubspot", Limit: 10000, Window: time.Second, Secrets: []string{tok}})
	return crm.NewHubSpot(c, crm.HubSpotConfig{BaseURL: fake.URL(), Token: tok}), fake
}

// A contact first known without an email, then with one: the email upsert
// would create a second contact holding the same stripe_customer_id, so
// HubSpot answers 409 and the adapter updates the existing contact.
func TestHubSpotEmailArrivesAfterIDOnlyContact(t *testing.T) {
	hs, fake := newHubSpot(t)
	ctx := context.Background()
	c := crm.Contact{CustomerID: "cus_A", Status: "trialing"}
	res, err := sync1(hs, ctx, &crm.Change{EventID: "evt_1", Contact: c, ContactChanged: true})
	if err != nil {
		t.Fatal(err)
	}
	first := res.ContactCRMID
	// Lost id (a crash before it was stored): the email is now known.
	c.Email, c.Status = "a@example.com", "active"
	res, err = sync1(hs, ctx, &crm.Change{EventID: "evt_2", Contact: c, ContactChanged: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.ContactCRMID != first || len(fake.Contacts()) != 1 {
		t.Fatalf("contact %s (first %s), %d contacts; want the same one", res.ContactCRMID, first, len(fake.Contacts()))
	}
	got, _ := fake.Find("contacts", "stripe_customer_id", "cus_A")
	if got.Properties["email"] != "a@example.com" || got.Properties["billing_status"] != "active" {
		t.Fatalf("contact properties %v", got.Properties)
	}
	statuses := []int{}
	for _, r := range fake.Requests() {
		statuses = append(statuses, r.Status)
	}
	if len(statuses) != 3 || statuses[1] != http.StatusConflict {
		t.Fatalf("answers %v; want 200, 409 (email upsert), 200 (fallback)", statuses)
	}
}

// A lead already in HubSpot with the same email (created by a form, so
// without stripe_customer_id) becomes the customer's contact instead of a
// duplicate.
func TestHubSpotMergesIntoExistingLead(t *testing.T) {
	tok := token(t)
	fake := hubspotfake.Start(tok)
	defer fake.Close()
	req, _ := http.NewRequest(http.MethodPost, fake.URL()+"/crm/v3/objects/contacts",
		strings.NewReader(`{"properties":{"email":"Lead@Example.com","firstname":"Lead"}}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("seed lead: %v %v", resp, err)
	}
	resp.Body.Close()
	// The fake refuses a second contact with the same email, as HubSpot does.
	req2, _ := http.NewRequest(http.MethodPost, fake.URL()+"/crm/v3/objects/contacts",
		strings.NewReader(`{"properties":{"email":"lead@example.com"}}`))
	req2.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req2); err != nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("duplicate create: %v %v; want 409", resp, err)
	} else {
		resp.Body.Close()
	}
	c := crm.NewClient(crm.ClientConfig{Vendor: "hubspot", Limit: 1000, Window: time.Second})
	hs := crm.NewHubSpot(c, crm.HubSpotConfig{BaseURL: fake.URL(), Token: tok})
	res, err := sync1(hs, context.Background(), &crm.Change{EventID: "evt_1", ContactChanged: true,
		Contact: crm.Contact{CustomerID: "cus_B", Email: "lead@example.com", Status: "active"}})
	if err != nil {
		t.Fatal(err)
	}
	contacts := fake.Contacts()
	if len(contacts) != 1 || contacts[0].ID != res.ContactCRMID || contacts[0].Properties["stripe_customer_id"] != "cus_B" {
		t.Fatalf("contacts %+v, result %s; want the lead, now carrying cus_B", contacts, res.ContactCRMID)
	}
}

func TestHubSpotDealUpsertAndAssociation(t *testing.T) {
	hs, fake := newHubSpot(t)
	ctx := context.Background()
	ch := &crm.Change{EventID: "evt_1", ContactChanged: true,
		Contact: crm.Contact{CustomerID: "cus_C", Email: "c@example.com", Status: "active"},
		Deals:   []crm.DealChange{{Changed: true, Deal: crm.Deal{SubscriptionID: "sub_C", CustomerID: "cus_C", Status: "past_due", MonthlyAmount: 1999, Currency: "usd", Plan: "price_x"}}}}
	res, err := sync1(hs, ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	deal, ok := fake.Find("deals", "stripe_subscription_id", "sub_C")
	if !ok || deal.ID != res.Deals["sub_C"].CRMID {
		t.Fatalf("deal %+v, result %+v", deal, res)
	}
	if deal.Properties["dealstage"] != "closedwon" || deal.Properties["amount"] != "19.99" || deal.Properties["pipeline"] != "default" {
		t.Fatalf("deal properties %v", deal.Properties)
	}
	if got := fake.Associated(deal.ID); len(got) != 1 || got[0] != res.ContactCRMID {
		t.Fatalf("associations %v, contact %s", got, res.ContactCRMID)
	}
	var paths []string
	for _, r := range fake.Requests() {
		paths = append(paths, r.Method+" "+r.Path)
	}
	want := "POST /crm/v4/associations/deals/contacts/batch/associate/default"
	if len(paths) != 3 || paths[2] != want {
		t.Fatalf("calls %v; want contact upsert, deal upsert, %s", paths, want)
	}
	// Known ids and nothing changed but the deal: one call.
	ch2 := &crm.Change{EventID: "evt_2", ContactCRMID: res.ContactCRMID, Contact: ch.Contact,
		Deals: []crm.DealChange{{Changed: true, CRMID: deal.ID, AssociatedTo: res.ContactCRMID, Deal: crm.Deal{SubscriptionID: "sub_C", CustomerID: "cus_C", Status: "canceled"}}}}
	if _, err := sync1(hs, ctx, ch2); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Requests()); n != 4 {
		t.Fatalf("%d calls after a deal-only change; want 4", n)
	}
	deal, _ = fake.Find("deals", "stripe_subscription_id", "sub_C")
	if deal.Properties["dealstage"] != "closedlost" {
		t.Fatalf("canceled deal stage %q", deal.Properties["dealstage"])
	}
}

func TestHubSpotMultiStatusErrorIsPermanent(t *testing.T) {
	hs, fake := newHubSpot(t)
	fake.Inject(hubspotfake.Fault{Status: 207, Body: `{"status":"COMPLETE","results":[],"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid"}],"numErrors":1}`})
	_, err := sync1(hs, context.Background(), &crm.Change{EventID: "evt_1", Contact: crm.Contact{CustomerID: "cus_D", Status: "none"}, ContactChanged: true})
	if !bus.IsPermanent(err) || !strings.Contains(err.Error(), "VALIDATION_ERROR") {
		t.Fatalf("err %v; want a permanent validation error", err)
	}
}

func TestDeferredWhenPauseIsLongerThanMaxWait(t *testing.T) {
	tok := token(t)
	fake := hubspotfake.Start(tok)
	defer fake.Close()
	c := crm.NewClient(crm.ClientConfig{Vendor: "hubspot", MaxWait: 50 * time.Millisecond})
	hs := crm.NewHubSpot(c, crm.HubSpotConfig{BaseURL: fake.URL(), Token: tok})
	fake.Inject(hubspotfake.Fault{Status: 429, RetryAfter: "30"})
	ch := &crm.Change{EventID: "evt_1", Contact: crm.Contact{CustomerID: "cus_E", Status: "none"}, ContactChanged: true}
	if _, err := sync1(hs, context.Background(), ch); err == nil || bus.IsPermanent(err) {
		t.Fatalf("429: %v", err)
	}
	// Every worker now sits the pause out without calling HubSpot.
	res, err := sync1(hs, context.Background(), ch)
	if !errors.Is(err, vendorhttp.ErrDeferred) {
		t.Fatalf("during the pause: %v", err)
	}
	if len(fake.Requests()) != 1 || res.Calls[0].Outcome != vendorhttp.OutcomeDeferred {
		t.Fatalf("%d requests, calls %+v; want no call during the pause", len(fake.Requests()), res.Calls)
	}
}
