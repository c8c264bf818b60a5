package stripeevent

import (
	"bytes"
	"encoding/json"
)

// SmokeMetadataKey marks a Stripe object as part of a smoke test
// (`launchready smoke`): metadata with this key, set to the run's id, on
// the customer, subscription, invoice or payment. Everything that counts,
// reports or compares customers leaves such objects out, and every message
// about them says it is a test.
const SmokeMetadataKey = "launchready_smoke"

var smokeKey = []byte(`"` + SmokeMetadataKey + `"`)

// SmokeRun returns the smoke run id an event's object carries under
// SmokeMetadataKey, or "" when the event is not part of a smoke test. It
// looks at the object's own metadata, the subscription metadata Stripe
// copies onto an invoice (before and after API version 2025-03-31.basil),
// and an expanded customer's metadata.
func SmokeRun(raw []byte) string {
	type meta map[string]any
	var env struct {
		Data struct {
			Object struct {
				Metadata            meta            `json:"metadata"`
				Customer            json.RawMessage `json:"customer"`
				SubscriptionDetails struct {
					Metadata meta `json:"metadata"`
				} `json:"subscription_details"`
				Parent struct {
					SubscriptionDetails struct {
						Metadata meta `json:"metadata"`
					} `json:"subscription_details"`
				} `json:"parent"`
			} `json:"object"`
		} `json:"data"`
	}
	// Normalize asks this of every event; nearly none is a smoke test, and
	// one without the key anywhere in its body cannot be one.
	if !bytes.Contains(raw, smokeKey) || json.Unmarshal(raw, &env) != nil {
		return ""
	}
	o := env.Data.Object
	var cust struct {
		Metadata meta `json:"metadata"`
	}
	if len(o.Customer) > 0 && o.Customer[0] == '{' {
		_ = json.Unmarshal(o.Customer, &cust)
	}
	for _, m := range []meta{o.Metadata, o.SubscriptionDetails.Metadata, o.Parent.SubscriptionDetails.Metadata, cust.Metadata} {
		if v, ok := m[SmokeMetadataKey]; ok {
			if s, ok := v.(string); ok && s != "" {
				return s
			}
			return "true"
		}
	}
	return ""
}
