package journey

import (
	"encoding/json"
	"testing"
	"time"
)

func TestRewriteSetsEnvelopeObjectAndPreviousAttributes(t *testing.T) {
	body := []byte(`{"id":"evt_old","type":"old","created":1,"livemode":true,"api_version":"2020-03-02",
		"data":{"object":{"id":"in_old","gone":1,"items":{"data":[{"amount":1}]}},"previous_attributes":{"status":"draft"}}}`)
	out, err := Rewrite(body, Envelope{ID: "evt_new", Type: "invoice.paid", Created: 1700000000},
		map[string]any{"id": "in_new", "gone": Delete, "items.data.0.amount": 1500, "customer": nil}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Created  int64 `json:"created"`
		Livemode bool  `json:"livemode"`
		Data     struct {
			Object map[string]any `json:"object"`
			Prev   map[string]any `json:"previous_attributes"`
		} `json:"data"`
	}
	var env map[string]any
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if env["id"] != "evt_new" || env["type"] != "invoice.paid" || env["api_version"] != "2020-03-02" || got.Created != 1700000000 || got.Livemode {
		t.Fatalf("envelope: %s", out)
	}
	o := got.Data.Object
	if _, ok := o["gone"]; ok || o["id"] != "in_new" || o["customer"] != nil {
		t.Fatalf("object: %v", o)
	}
	if _, ok := o["customer"]; !ok {
		t.Fatalf("customer should be JSON null, is missing: %v", o)
	}
	if a := o["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["amount"]; a != float64(1500) {
		t.Fatalf("items.data.0.amount = %v", a)
	}
	if got.Data.Prev != nil {
		t.Fatalf("previous_attributes kept: %v", got.Data.Prev)
	}

	out, err = Rewrite(body, Envelope{ID: "evt_2", Type: "invoice.updated", APIVersion: "2025-03-31.basil"}, nil, map[string]any{"status": "open"})
	if err != nil {
		t.Fatal(err)
	}
	env = nil
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatal(err)
	}
	prev := env["data"].(map[string]any)["previous_attributes"].(map[string]any)
	if env["api_version"] != "2025-03-31.basil" || prev["status"] != "open" {
		t.Fatalf("api version and previous attributes: %s", out)
	}

	if _, err := Rewrite([]byte(`{"data":{}}`), Envelope{ID: "evt_3"}, nil, nil); err == nil {
		t.Fatal("a body without data.object was rewritten")
	}
}

// The stories end as their comments say, by the fold every consumer's
// oracle starts from.
func TestFoldOfStories(t *testing.T) {
	stories, err := Stories("fold", time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Facts{}
	for _, s := range stories {
		if len(s.Events) == 0 {
			t.Fatalf("%s: no events", s.Name)
		}
		for _, ev := range s.Events {
			if ev.GetCustomerId() != s.CustomerID && ev.GetChargeId() == "" {
				t.Fatalf("%s: %s is about %q", s.Name, ev.GetType(), ev.GetCustomerId())
			}
		}
		byName[s.Name] = Fold(s.Events)
	}
	life := byName["lifecycle"]
	if len(life.Subscriptions) != 1 || !life.Subscriptions[0].Deleted || life.Subscriptions[0].Status != "canceled" || life.LastFailed.IsZero() {
		t.Errorf("lifecycle: %+v", life)
	}
	if trial := byName["trial"]; trial.Email != "trial-fold@example.com" || trial.Name != "Grace Hopper" || trial.Subscriptions[0].Status != "active" {
		t.Errorf("trial: %+v", trial)
	}
	if refund := byName["refund"]; len(refund.Purchases) != 1 || !refund.Purchases[0].Paid || !refund.Purchases[0].Refunded {
		t.Errorf("refund: %+v", refund)
	}
	if dispute := byName["dispute"]; dispute.DisputeOpen {
		t.Errorf("dispute: the won dispute is still open")
	}
	if two := byName["two-subscriptions"]; len(two.Subscriptions) != 2 || two.Subscriptions[0].Quantity != 1 || two.Subscriptions[1].Quantity != 3 {
		t.Errorf("two subscriptions: %+v", two.Subscriptions)
	}
}
