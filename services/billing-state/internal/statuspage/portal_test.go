package statuspage_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
)

// opener records the portal sessions the page opens.
type opener struct {
	mu    sync.Mutex
	calls []string // customer " " return URL
	err   error
}

func (o *opener) CreatePortalSession(_ context.Context, customer, returnURL string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, customer+" "+returnURL)
	if o.err != nil {
		return "", o.err
	}
	return "https://billing.stripe.test/p/session_" + customer, nil
}

func (o *opener) made() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.calls...)
}

const pageURL = "https://status.launchready.test/billing"

func withPortal(t *testing.T, o *opener, allow string) func(*statuspage.Options) {
	urls, err := portal.ParseReturnURLs(allow)
	if err != nil {
		t.Fatal(err)
	}
	return func(opts *statuspage.Options) {
		opts.Portal, opts.ReturnURLs, opts.PageURL = o, urls, pageURL
	}
}

// noRedirect is a client that shows a redirect instead of following it.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// The action button of update_payment_method and manage_plan opens a
// portal session for the link's customer that leads back to the page.
func TestActionButtonOpensThePortal(t *testing.T) {
	o := &opener{}
	p := setup(t, withPortal(t, o, pageURL+"/s/"))
	p.set(&billingv1.CustomerStatus{CustomerId: "cus_due", Status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE, Entitled: true})
	fine := active("cus_fine")
	fine.SubscriptionId = "sub_fine"
	p.set(fine)
	for id, action := range map[string]string{"cus_due": "update_payment_method", "cus_fine": "manage_plan"} {
		token, _ := p.signer.Sign(id, 0)
		res, body := get(t, p.srv.URL+"/s/"+token, "")
		want := `href="/s/` + token + `/portal" data-action="` + action + `"`
		if res.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("%s: the page lacks %s:\n%s", id, want, body)
		}
		res, err := noRedirect.Get(p.srv.URL + "/s/" + token + "/portal")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		checkHeaders(t, res)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "https://billing.stripe.test/p/session_"+id {
			t.Fatalf("%s: %d to %q", id, res.StatusCode, res.Header.Get("Location"))
		}
		calls := o.made()
		if got, want := calls[len(calls)-1], id+" "+pageURL+"/s/"+token; got != want {
			t.Fatalf("portal opened as %q, want %q", got, want)
		}
	}
	// A bad link opens nothing.
	token, _ := p.signer.Sign("cus_due", 0)
	before := len(o.made())
	if res, _ := get(t, p.srv.URL+"/s/"+token[:len(token)-2]+"/portal", ""); res.StatusCode != http.StatusForbidden {
		t.Errorf("a truncated link's portal: %d", res.StatusCode)
	}
	if len(o.made()) != before {
		t.Errorf("a bad link opened a portal session")
	}
	// Stripe failing: the unreachable words, 503, and nothing of Stripe's.
	o.mu.Lock()
	o.err = errors.New("stripe: card_declined sk_test_secret")
	o.mu.Unlock()
	res, body := get(t, p.srv.URL+"/s/"+token+"/portal", "")
	if res.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "sk_test") || !strings.Contains(body, "reach the server") {
		t.Errorf("portal failing: %d\n%s", res.StatusCode, body)
	}
}

// Without a portal, or with PORTAL_RETURN_URLS not allowing the page, no
// button is shown and the portal path is not found. Actions the portal
// does not serve never get a button.
func TestNoButtonWithoutThePortal(t *testing.T) {
	for name, mod := range map[string]func(*statuspage.Options){
		"no portal":              func(*statuspage.Options) {},
		"page not a return URL":  withPortal(t, &opener{}, "https://app.launchready.test/billing"),
		"portal and return URLs": withPortal(t, &opener{}, pageURL+"/s/"),
	} {
		p := setup(t, mod)
		p.set(&billingv1.CustomerStatus{CustomerId: "cus_due", Status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE, Entitled: true})
		p.set(&billingv1.CustomerStatus{CustomerId: "cus_gone", Status: billingv1.BillingStatus_BILLING_STATUS_CANCELED})
		for _, id := range []string{"cus_due", "cus_gone"} {
			token, _ := p.signer.Sign(id, 0)
			_, body := get(t, p.srv.URL+"/s/"+token, "")
			shown := strings.Contains(body, `id="action"`)
			if want := name == "portal and return URLs" && id == "cus_due"; shown != want {
				t.Errorf("%s, %s: button shown %v, want %v", name, id, shown, want)
			}
			res, err := noRedirect.Get(p.srv.URL + "/s/" + token + "/portal")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if name != "portal and return URLs" && res.StatusCode != http.StatusNotFound {
				t.Errorf("%s: the portal path answers %d", name, res.StatusCode)
			}
		}
	}
}
