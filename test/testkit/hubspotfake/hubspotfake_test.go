package hubspotfake_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/test/testkit/hubspotfake"
)

func do(t *testing.T, method, url, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestFakeEnforcesAuthUniquenessAndRollingLimit(t *testing.T) {
	f := hubspotfake.Start("tok")
	defer f.Close()
	if r := do(t, "POST", f.URL()+"/crm/v3/objects/contacts", "wrong", `{"properties":{"email":"a@x.io"}}`); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", r.StatusCode)
	}
	if r := do(t, "POST", f.URL()+"/crm/v3/objects/contacts", "tok", `{"properties":{"email":"a@x.io","stripe_customer_id":"cus_1"}}`); r.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", r.StatusCode)
	}
	if r := do(t, "POST", f.URL()+"/crm/v3/objects/contacts", "tok", `{"properties":{"email":"A@X.IO"}}`); r.StatusCode != http.StatusConflict {
		t.Fatalf("duplicate email: %d", r.StatusCode)
	}
	if r := do(t, "POST", f.URL()+"/crm/v3/objects/contacts/batch/upsert", "tok",
		`{"inputs":[{"idProperty":"email","id":"b@x.io","properties":{"stripe_customer_id":"cus_1"}}]}`); r.StatusCode != http.StatusConflict {
		t.Fatalf("upsert taking another contact's unique id: %d", r.StatusCode)
	}
	if r := do(t, "POST", f.URL()+"/crm/v3/objects/deals/batch/upsert", "tok",
		`{"inputs":[{"idProperty":"dealname","id":"x","properties":{}}]}`); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("upsert by a non-unique property: %d", r.StatusCode)
	}
	if n := len(f.Contacts()); n != 1 {
		t.Fatalf("%d contacts after refused writes", n)
	}
	f.SetRateLimit(2, time.Minute)
	codes := []int{}
	for i := 0; i < 2; i++ {
		codes = append(codes, do(t, "GET", f.URL()+"/crm/v3/objects/contacts/1001", "tok", "").StatusCode)
	}
	r := do(t, "GET", f.URL()+"/crm/v3/objects/contacts/1001", "tok", "")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("over the rolling limit: %d %q (before: %v)", r.StatusCode, r.Header.Get("Retry-After"), codes)
	}
}
