package stripeevent_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

func TestNormalizeRefusesNonEvents(t *testing.T) {
	tests := []struct{ name, raw, reason string }{
		{"empty body", ``, "invalid JSON"},
		{"not JSON", `hello`, "invalid JSON"},
		{"truncated", `{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1"`, "invalid JSON"},
		{"trailing garbage", `{"id":"evt_1","type":"x","data":{"object":{}}} {}`, "invalid JSON"},
		{"trailing comma", `{"id":"evt_1","type":"x","data":{"object":{}},}`, "invalid JSON"},
		{"leading zero in a skipped number", `{"id":"evt_1","type":"x","pending_webhooks":01,"data":{"object":{}}}`, "invalid JSON"},
		{"bad escape in a skipped string", `{"id":"evt_1","type":"x","note":"\q","data":{"object":{}}}`, "invalid JSON"},
		{"raw control character in a string", "{\"id\":\"evt_1\",\"type\":\"x\",\"note\":\"a\tb\",\"data\":{\"object\":{}}}", "invalid JSON"},
		{"array", `[{"id":"evt_1"}]`, "want an object"},
		{"no id", `{"type":"invoice.paid","data":{"object":{"id":"in_1"}}}`, "no id"},
		{"empty id", `{"id":"","type":"invoice.paid","data":{"object":{"id":"in_1"}}}`, "no id"},
		{"no type", `{"id":"evt_1","data":{"object":{"id":"in_1"}}}`, "no type"},
		{"no data", `{"id":"evt_1","type":"invoice.paid"}`, "no data.object"},
		{"data without object", `{"id":"evt_1","type":"invoice.paid","data":{"previous_attributes":{}}}`, "no data.object"},
		{"data.object null", `{"id":"evt_1","type":"invoice.paid","data":{"object":null}}`, "no data.object"},
		{"data.object a string", `{"id":"evt_1","type":"invoice.paid","data":{"object":"in_1"}}`, "data.object is not an object"},
		{"data an array", `{"id":"evt_1","type":"invoice.paid","data":[]}`, "data is not an object"},
		{"id a number", `{"id":1,"type":"invoice.paid","data":{"object":{}}}`, "id is not a string"},
		{"created a string", `{"id":"evt_1","type":"x","created":"today","data":{"object":{}}}`, "created is not an integer"},
		{"created a fraction", `{"id":"evt_1","type":"x","created":1.5,"data":{"object":{}}}`, "created is not an integer"},
		// The envelope is checked even after a tolerated mismatch in the object.
		{"livemode a string after an odd object field", `{"id":"evt_1","type":"x","data":{"object":{"amount":"ten"}},"livemode":"true"}`, "livemode is not a boolean"},
		{"request a number", `{"id":"evt_1","type":"x","request":7,"data":{"object":{}}}`, "request is not"},
		{"request.id a number", `{"id":"evt_1","type":"x","request":{"id":7},"data":{"object":{}}}`, "request.id is not a string"},
		{"previous_attributes an array", `{"id":"evt_1","type":"x","data":{"object":{},"previous_attributes":["status"]}}`, "previous_attributes is not an object"},
		{"nested too deeply", `{"id":"evt_1","type":"x","data":{"object":{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}}}`, "nested too deeply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := stripeevent.Normalize([]byte(tc.raw))
			if !errors.Is(err, stripeevent.ErrMalformed) {
				t.Fatalf("Normalize = %v, %v; want ErrMalformed", ev, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not say %q", err, tc.reason)
			}
		})
	}
}

func TestNormalizeEnvelope(t *testing.T) {
	tests := []struct {
		name, raw               string
		requestID, idempotency  string
		apiVersion, account     string
		created                 int64
		livemode, wantCreatedTS bool
	}{
		{name: "request as a string (before 2017-05-25)", raw: `{"id":"evt_1","type":"x","created":1400000000,"request":"req_old","api_version":"2014-03-28","data":{"object":{}}}`,
			requestID: "req_old", apiVersion: "2014-03-28", created: 1400000000, wantCreatedTS: true},
		{name: "request as an object", raw: `{"id":"evt_1","type":"x","request":{"id":"req_new","idempotency_key":"key-1"},"data":{"object":{}}}`,
			requestID: "req_new", idempotency: "key-1"},
		{name: "request null, api_version null", raw: `{"id":"evt_1","type":"x","request":null,"api_version":null,"data":{"object":{}}}`},
		{name: "request object of nulls", raw: `{"id":"evt_1","type":"x","request":{"id":null,"idempotency_key":null},"data":{"object":{}}}`},
		{name: "connect account and livemode", raw: `{"id":"evt_1","type":"x","account":"acct_1","livemode":true,"data":{"object":{}}}`,
			account: "acct_1", livemode: true},
		{name: "created zero is no timestamp", raw: `{"id":"evt_1","type":"x","created":0,"data":{"object":{}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := stripeevent.Normalize([]byte(tc.raw))
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if ev.GetRequestId() != tc.requestID || ev.GetIdempotencyKey() != tc.idempotency ||
				ev.GetApiVersion() != tc.apiVersion || ev.GetAccount() != tc.account || ev.GetLivemode() != tc.livemode {
				t.Errorf("got request=%q idempotency=%q api_version=%q account=%q livemode=%v",
					ev.GetRequestId(), ev.GetIdempotencyKey(), ev.GetApiVersion(), ev.GetAccount(), ev.GetLivemode())
			}
			if (ev.GetCreated() != nil) != tc.wantCreatedTS || ev.GetCreated().GetSeconds() != tc.created {
				t.Errorf("created = %v, want %d", ev.GetCreated(), tc.created)
			}
			if ev.GetReceivedAt() != nil {
				t.Error("received_at is the receiver's to set")
			}
		})
	}
}

// TestNormalizeToleratesOddObjectFields: a field of an unexpected kind inside
// data.object reads as absent; the rest of the event is still normalised.
func TestNormalizeToleratesOddObjectFields(t *testing.T) {
	raw := `{"id":"evt_1","type":"customer.subscription.updated","created":1700000000,"data":{"object":{
		"id":"sub_1","object":"subscription","quantity":"two","items":[1,2],"customer":42,"plan":"gold",
		"metadata":{"user_id":7},"cancel_at_period_end":"yes","current_period_end":1.7e9,"trial_end":null,
		"status":"active"}},"livemode":true}`
	ev, err := stripeevent.Normalize([]byte(raw))
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if ev.GetSubscriptionId() != "sub_1" || ev.GetStatus() != "active" || !ev.GetLivemode() || ev.GetCreated().GetSeconds() != 1700000000 {
		t.Errorf("well-formed fields lost: %v", ev)
	}
	if ev.GetQuantity() != 0 || ev.GetCustomerId() != "" || ev.GetUserId() != "" || ev.GetCancelAtPeriodEnd() ||
		ev.GetCurrentPeriodEnd() != nil || ev.GetPriceId() != "" || ev.GetTrialEnd() != nil {
		t.Errorf("odd fields should read as absent: %v", ev)
	}
}

func TestNormalizeStrings(t *testing.T) {
	// Escapes are decoded; invalid UTF-8 is replaced as encoding/json does, so
	// the event can always be marshalled (proto3 strings must be UTF-8).
	raw := []byte("{\"id\":\"evt_\\u00e9\",\"type\":\"customer.updated\",\"data\":{\"object\":{\"id\":\"cus_1\",\"object\":\"customer\"," +
		"\"name\":\"Ren\\u00e9e \\\"R\\\" O\\/Brien\",\"email\":\"bad\xff@example.com\",\"metadata\":{\"us\\u0065r_id\":\"u\\n1\"}}}}")
	ev, err := stripeevent.Normalize(raw)
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if got, want := ev.GetEventId(), "evt_é"; got != want {
		t.Errorf("event_id = %q, want %q", got, want)
	}
	if got, want := ev.GetCustomerName(), `Renée "R" O/Brien`; got != want {
		t.Errorf("customer_name = %q, want %q", got, want)
	}
	if got, want := ev.GetEmail(), "bad\uFFFD@example.com"; got != want {
		t.Errorf("email = %q, want %q", got, want)
	}
	if got, want := ev.GetUserId(), "u\n1"; got != want {
		t.Errorf("user_id from an escaped key = %q, want %q", got, want)
	}
	if _, err := proto.Marshal(ev); err != nil {
		t.Errorf("proto.Marshal: %v", err)
	}
}

func TestNormalizeRawJSONIsACopy(t *testing.T) {
	raw := []byte(`{"id":"evt_1","type":"customer.created","data":{"object":{"id":"cus_1","object":"customer"}}}`)
	want := string(raw)
	ev, err := stripeevent.Normalize(raw)
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	raw[2] = 'X'
	if string(ev.GetRawJson()) != want {
		t.Fatal("raw_json aliases the caller's buffer")
	}
}

func TestNormalizePreviousAttributes(t *testing.T) {
	raw := `{"id":"evt_1","type":"customer.subscription.updated","data":{"object":{"id":"sub_1","object":"subscription","status":"active"},
		"previous_attributes":{"status":"trialing","trial_end":1,"items":{"data":[{"status":"x"}]},"cancel_at_period_end":true,"status":"trialing"}}}`
	ev, err := stripeevent.Normalize([]byte(raw))
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if ev.GetPreviousStatus() != "trialing" {
		t.Errorf("previous_status = %q, want trialing", ev.GetPreviousStatus())
	}
	if want := []string{"cancel_at_period_end", "items", "status", "trial_end"}; !slices.Equal(ev.GetPreviousAttributeKeys(), want) {
		t.Errorf("previous_attribute_keys = %q, want %q (sorted, once each)", ev.GetPreviousAttributeKeys(), want)
	}
}

// TestNormalizeFailureNeverCarriesCardData: last_payment_error embeds the
// payment method; only the code and message may leave Normalize.
func TestNormalizeFailureNeverCarriesCardData(t *testing.T) {
	raw := `{"id":"evt_1","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_1","object":"payment_intent",
		"amount":2000,"amount_received":0,"currency":"usd","status":"requires_payment_method","customer":"cus_1",
		"last_payment_error":{"code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds.",
		"payment_method":{"id":"pm_1","billing_details":{"email":"payer@example.com","name":"Card Holder"},
		"card":{"brand":"visa","last4":"4242","exp_month":12,"exp_year":2031,"fingerprint":"Fp4242FINGER"}}},
		"latest_charge":"ch_2","charges":{"data":[{"id":"ch_1"}]},"receipt_email":"receipt@example.com"}}}`
	ev, err := stripeevent.Normalize([]byte(raw))
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if ev.GetFailureCode() != "card_declined" || ev.GetFailureMessage() != "Your card has insufficient funds." {
		t.Errorf("failure = %q %q", ev.GetFailureCode(), ev.GetFailureMessage())
	}
	if ev.GetChargeId() != "ch_2" {
		t.Errorf("charge_id = %q, want latest_charge ch_2 over the legacy charges list", ev.GetChargeId())
	}
	if ev.GetEmail() != "receipt@example.com" || ev.GetCustomerName() != "" {
		t.Errorf("contact = %q %q, want the receipt e-mail and no cardholder name", ev.GetEmail(), ev.GetCustomerName())
	}
	ev.RawJson = nil
	text := ev.String()
	for _, secret := range []string{"4242", "2031", "Fp4242FINGER", "visa", "Card Holder", "payer@example.com"} {
		if strings.Contains(text, secret) {
			t.Errorf("normalised event carries card data %q: %s", secret, text)
		}
	}
}

func TestNormalizeExpandedReferences(t *testing.T) {
	t.Run("dispute with an expanded charge names the customer", func(t *testing.T) {
		raw := `{"id":"evt_1","type":"charge.dispute.created","data":{"object":{"id":"dp_1","object":"dispute","amount":500,
			"currency":"usd","reason":"fraudulent","status":"needs_response","payment_intent":"pi_1",
			"charge":{"id":"ch_1","object":"charge","customer":{"id":"cus_1","object":"customer","email":"x@example.com"}}}}}`
		ev, err := stripeevent.Normalize([]byte(raw))
		if err != nil {
			t.Fatalf("Normalize: %v", err)
		}
		if ev.GetChargeId() != "ch_1" || ev.GetCustomerId() != "cus_1" || ev.GetPaymentIntentId() != "pi_1" ||
			ev.GetDisputeId() != "dp_1" || ev.GetAmount() != 500 || ev.GetDisputeReason() != "fraudulent" || ev.GetStatus() != "needs_response" {
			t.Errorf("dispute normalised to %v", ev)
		}
	})
	t.Run("refund with an expanded charge", func(t *testing.T) {
		raw := `{"id":"evt_1","type":"refund.updated","data":{"object":{"id":"re_1","object":"refund","amount":300,"currency":"usd",
			"status":"failed","failure_reason":"expired_or_canceled_card","charge":{"id":"ch_1","customer":"cus_1"},"payment_intent":"pi_1"}}}`
		ev, err := stripeevent.Normalize([]byte(raw))
		if err != nil {
			t.Fatalf("Normalize: %v", err)
		}
		if ev.GetRefundId() != "re_1" || ev.GetChargeId() != "ch_1" || ev.GetCustomerId() != "cus_1" || ev.GetPaymentIntentId() != "pi_1" ||
			ev.GetAmount() != 300 || ev.GetStatus() != "failed" || ev.GetFailureCode() != "expired_or_canceled_card" {
			t.Errorf("refund normalised to %v", ev)
		}
	})
	t.Run("charge with an expanded invoice and customer", func(t *testing.T) {
		raw := `{"id":"evt_1","type":"charge.succeeded","data":{"object":{"id":"ch_1","object":"charge","amount":900,"currency":"usd",
			"status":"succeeded","invoice":{"id":"in_1","object":"invoice"},"payment_intent":{"id":"pi_1"},
			"customer":{"id":"cus_1","email":"c@example.com","name":"C","metadata":{"user_id":"u_1"}},
			"billing_details":{"email":"billing@example.com"},"metadata":{}}}}`
		ev, err := stripeevent.Normalize([]byte(raw))
		if err != nil {
			t.Fatalf("Normalize: %v", err)
		}
		if ev.GetInvoiceId() != "in_1" || ev.GetPaymentIntentId() != "pi_1" || ev.GetCustomerId() != "cus_1" ||
			ev.GetEmail() != "c@example.com" || ev.GetCustomerName() != "C" || ev.GetUserId() != "u_1" {
			t.Errorf("charge normalised to %v", ev)
		}
	})
	t.Run("checkout session: metadata.user_id wins over client_reference_id", func(t *testing.T) {
		raw := `{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","object":"checkout.session",
			"client_reference_id":"ref_1","metadata":{"user_id":"u_1"},"customer_email":"buyer@example.com","mode":"payment",
			"payment_status":"unpaid","status":"complete","amount_total":100}}}`
		ev, err := stripeevent.Normalize([]byte(raw))
		if err != nil {
			t.Fatalf("Normalize: %v", err)
		}
		if ev.GetUserId() != "u_1" || ev.GetEmail() != "buyer@example.com" || ev.GetPaymentStatus() != "unpaid" || ev.GetAmount() != 100 {
			t.Errorf("checkout session normalised to %v", ev)
		}
	})
	t.Run("invoice names its subscription only on a line", func(t *testing.T) {
		raw := `{"id":"evt_1","type":"invoice.upcoming","data":{"object":{"object":"invoice","customer":"cus_1",
			"subscription":null,"lines":{"data":[{"type":"invoiceitem","subscription":null},{"subscription":"sub_9"}]},
			"last_finalization_error":{"code":"customer_tax_location_invalid","message":"Tax location invalid."},
			"subscription_details":{"metadata":{"user_id":"u_9"}}}}}`
		ev, err := stripeevent.Normalize([]byte(raw))
		if err != nil {
			t.Fatalf("Normalize: %v", err)
		}
		if ev.GetSubscriptionId() != "sub_9" || ev.GetUserId() != "u_9" || ev.GetObjectId() != "" ||
			ev.GetFailureCode() != "customer_tax_location_invalid" || ev.GetFailureMessage() != "Tax location invalid." {
			t.Errorf("invoice normalised to %v", ev)
		}
	})
}

// TestNormalizeUnknownType: types outside the billing model keep their
// envelope, object type and id, and customer; nothing type-specific.
func TestNormalizeUnknownType(t *testing.T) {
	raw := `{"id":"evt_1","type":"payment_method.attached","created":1700000000,"data":{"object":{"id":"pm_1","object":"payment_method",
		"customer":"cus_1","type":"card","status":"ignored","amount":5,"metadata":{"user_id":"u_1"}}}}`
	ev, err := stripeevent.Normalize([]byte(raw))
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	ev.RawJson = nil
	want := &billingv1.BillingEvent{
		EventId: "evt_1", Type: "payment_method.attached", Created: ts(1700000000),
		ObjectType: "payment_method", ObjectId: "pm_1", CustomerId: "cus_1",
	}
	if !proto.Equal(ev, want) {
		t.Errorf("unknown type normalised to\n%v\nwant\n%v", ev, want)
	}
}
