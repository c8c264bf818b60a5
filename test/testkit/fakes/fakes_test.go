package fakes_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/fakes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func post(t *testing.T, client *http.Client, url, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func newSlack(t *testing.T) (*fakes.Slack, *http.Client) {
	s := fakes.NewSlack("/services/T0/B0/secret")
	t.Cleanup(s.Close)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	return s, client
}

func TestSlackPlannedFailuresComeBeforeTheVendorAnswers(t *testing.T) {
	s, client := newSlack(t)
	s.FailNext(http.StatusInternalServerError)
	s.RateLimitNext(1, "7")
	msg := `{"text":"payment failed for evt_1"}`
	if resp, err := post(t, client, s.URL(), msg); err != nil || resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("first call: %v %v, want the planned 500", resp, err)
	}
	resp, err := post(t, client, s.URL(), msg)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("second call: %v %v, want 429 with Retry-After 7", resp, err)
	}
	if resp, err := post(t, client, s.URL(), msg); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("third call: %v %v, want the vendor's 200", resp, err)
	}
	if got := s.ByEvent()["evt_1"]; len(got) != 1 {
		t.Fatalf("accepted %d messages for evt_1, want 1 (failed calls are not accepted)", len(got))
	}
	if n := s.CallCount(); n != 3 {
		t.Fatalf("CallCount = %d, want 3", n)
	}
	if resp, err := post(t, client, s.URL()+"x", msg); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("wrong path: %v %v, want 404", resp, err)
	}
}

func TestSlackRulesFailMatchingCallsUntilRemoved(t *testing.T) {
	s, client := newSlack(t)
	rule := &fakes.Rule{Status: http.StatusServiceUnavailable, RetryAfter: "1",
		Match: func(_, _ string, body []byte) bool { return strings.Contains(string(body), "evt_bad") }}
	remove := s.AddRule(rule)
	if resp, _ := post(t, client, s.URL(), `{"text":"evt_bad"}`); resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("matching call: %v, want 503", resp)
	}
	if resp, _ := post(t, client, s.URL(), `{"text":"evt_good"}`); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("other call: %v, want 200", resp)
	}
	remove()
	if resp, _ := post(t, client, s.URL(), `{"text":"evt_bad"}`); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after removal: %v, want 200", resp)
	}
	if rule.Hits() != 1 || s.CallsMentioning("evt_bad") != 2 {
		t.Fatalf("rule hits %d, calls mentioning evt_bad %d; want 1 and 2", rule.Hits(), s.CallsMentioning("evt_bad"))
	}
}

func TestSlackLostAnswerStillDelivers(t *testing.T) {
	s, client := newSlack(t)
	s.LoseNextAnswers(1)
	client.Timeout = 300 * time.Millisecond
	if _, err := post(t, client, s.URL(), `{"text":"evt_lost"}`); err == nil {
		t.Fatal("a lost answer reached the client")
	}
	if got := s.ByEvent()["evt_lost"]; len(got) != 1 {
		t.Fatalf("vendor kept %d messages, want 1: it acted before the answer was lost", len(got))
	}
}

func TestSlackHangEndsWhenStopped(t *testing.T) {
	s, client := newSlack(t)
	s.Hang(time.Minute)
	errs := make(chan error, 1)
	go func() {
		_, err := post(t, client, s.URL(), `{"text":"evt_hung"}`)
		errs <- err
	}()
	testkit.Eventually(t, 5*time.Second, "the call to arrive", func() bool { return s.MaxConcurrent() == 1 })
	s.StopHanging()
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("a cut-off call was answered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("StopHanging did not end the hanging call")
	}
	if len(s.Messages()) != 0 {
		t.Fatal("a call cut off while hanging was delivered")
	}
}

func TestSlackWaitForWakesOnAMessage(t *testing.T) {
	s, client := newSlack(t)
	go func() { _, _ = post(t, client, s.URL(), `{"text":"evt_wait"}`) }()
	got := s.WaitFor(t, 5*time.Second, "one message", func(ms []fakes.SlackMessage) bool { return len(ms) == 1 })
	if got[0].EventID != "evt_wait" {
		t.Fatalf("message names %q, want evt_wait", got[0].EventID)
	}
}

func TestZendeskAndHubSpotServeBehindTheFaults(t *testing.T) {
	z := fakes.NewZendesk("ops@example.com", "zd-token")
	t.Cleanup(z.Close)
	h := fakes.NewHubSpot("hs-token")
	t.Cleanup(h.Close)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	z.FailNext(http.StatusBadGateway)
	if resp, _ := post(t, client, z.URL()+"/api/v2/tickets.json", `{}`); resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("zendesk: %v, want the planned 502", resp)
	}
	if resp, _ := post(t, client, z.URL()+"/api/v2/tickets.json", `{}`); resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("zendesk without credentials: %v, want the desk's 401", resp)
	}
	if resp, _ := post(t, client, h.URL()+"/crm/v3/objects/contacts", `{}`); resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("hubspot without a token: %v, want 401", resp)
	}
	if z.CallCount() != 2 || h.CallCount() != 1 {
		t.Fatalf("calls logged: zendesk %d, hubspot %d; want 2 and 1", z.CallCount(), h.CallCount())
	}
}
