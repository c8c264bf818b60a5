package stripeevent_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

// objectTypesWithStatus are the object types whose raw status Normalize
// reports; for the others the status column of INDEX.tsv is not ours to copy.
var objectTypesWithStatus = map[string]bool{
	"subscription": true, "invoice": true, "invoice_payment": true, "checkout.session": true,
	"payment_intent": true, "charge": true, "dispute": true, "refund": true,
}

// TestFixtureEnvelopesNormalize normalises every envelope in the shared
// fixtures and checks the envelope against INDEX.tsv, which was produced from
// the files independently of this package. Files that are not envelopes
// (bare objects, data-only payloads) must be refused.
func TestFixtureEnvelopesNormalize(t *testing.T) {
	dir := testkit.FixturesDir(t)
	entries := readIndex(t, dir)
	envelopes := 0
	for _, e := range entries {
		t.Run(e.File, func(t *testing.T) {
			raw := readFixture(t, dir, e.File)
			ev, err := stripeevent.Normalize(raw)
			if e.Kind != "envelope" {
				if !errors.Is(err, stripeevent.ErrMalformed) {
					t.Fatalf("%s file: Normalize err = %v, want ErrMalformed", e.Kind, err)
				}
				return
			}
			envelopes++
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			checks := []struct{ field, got, want string }{
				{"event_id", ev.GetEventId(), e.EventID},
				{"type", ev.GetType(), e.EventType},
				{"api_version", ev.GetApiVersion(), e.APIVersion},
				{"livemode", pythonBool(ev.GetLivemode()), e.Livemode},
				{"account", ev.GetAccount(), e.Account},
				{"object_type", ev.GetObjectType(), e.ObjectType},
				{"previous_attribute_keys", strings.Join(ev.GetPreviousAttributeKeys(), ","), e.PreviousKeys},
			}
			if objectTypesWithStatus[e.ObjectType] {
				checks = append(checks, struct{ field, got, want string }{"status", ev.GetStatus(), e.ObjectStatus})
			}
			if e.ObjectCustomer != "" {
				want := e.ObjectCustomer
				// A few captures were redacted ("cus_Mt3..."); on objects
				// Normalize does not map, such an id is left out.
				if !objectTypesWithStatus[e.ObjectType] && e.ObjectType != "customer" && !stripeevent.IsStripeID(want) {
					want = ""
				}
				checks = append(checks, struct{ field, got, want string }{"customer_id", ev.GetCustomerId(), want})
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q (INDEX.tsv)", c.field, c.got, c.want)
				}
			}
			if !bytes.Equal(ev.GetRawJson(), raw) {
				t.Error("raw_json differs from the input bytes")
			}
			if _, err := proto.Marshal(ev); err != nil {
				t.Errorf("proto.Marshal: %v", err)
			}
		})
	}
	// The index lists 160 envelopes; a much smaller count means the fixtures
	// were not the ones this test was written against.
	if envelopes < 150 {
		t.Fatalf("normalised %d envelopes, want at least 150", envelopes)
	}
}

// pythonBool spells a boolean the way INDEX.tsv does.
func pythonBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func ts(sec int64) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: sec} }

// TestFixtureValues pins every normalised field of representative fixtures
// across API versions 2017-08-15 to 2023-10-16 and unversioned sample
// events. The expected values were read from the files themselves.
// Basil-shaped payloads are covered in basil_test.go, as no public fixture
// of that version exists.
func TestFixtureValues(t *testing.T) {
	dir := testkit.FixturesDir(t)
	tests := []struct {
		file string
		want *billingv1.BillingEvent
		// personal is for fixtures whose contact details look like a real
		// person's: they are compared with the file, not written here.
		personal bool
	}{
		{
			file: "stripe-java/customer_created.json", // 2017-08-15, request: null
			want: &billingv1.BillingEvent{
				EventId: "evt_00000000000000", Type: "customer.created", Created: ts(1326853478), ApiVersion: "2017-08-15",
				ObjectType: "customer", ObjectId: "cus_00000000000000", CustomerId: "cus_00000000000000",
				CustomerName: "Test Platform",
			},
		},
		{
			file: "stripe-ruby-mock/charge.dispute.funds_withdrawn.json", // 2017-12-14
			want: &billingv1.BillingEvent{
				EventId: "evt_00000000000000", Type: "charge.dispute.funds_withdrawn", Created: ts(1326853478), ApiVersion: "2017-12-14",
				ObjectType: "dispute", ObjectId: "dp_00000000000000", DisputeId: "dp_00000000000000", ChargeId: "ch_00000000000000",
				Amount: 25000, Currency: "usd", Status: "needs_response", DisputeReason: "fraudulent",
			},
		},
		{
			file: "stripe-ruby-mock/payment_intent.processing.json", // 2018-02-28: charges list, no latest_charge
			want: &billingv1.BillingEvent{
				EventId: "evt_00000000000000", Type: "payment_intent.processing", Created: ts(1578499109), ApiVersion: "2018-02-28",
				ObjectType: "payment_intent", ObjectId: "pi_00000000000000", PaymentIntentId: "pi_00000000000000",
				CustomerId: "cus_00000000000000", ChargeId: "ch_00000000000000", Amount: 900, Currency: "eur",
				Status: "processing", RequestId: "req_00000000000000",
			},
		},
		{
			file: "mozilla-fxa/subscription_updated.json", // 2019-03-14: top-level plan and period
			want: &billingv1.BillingEvent{
				EventId: "evt_1GAkaaJNcmPzuWtROjnqHuK4", Type: "customer.subscription.updated", Created: ts(1581373128), ApiVersion: "2019-03-14",
				ObjectType: "subscription", ObjectId: "sub_GXgckhuJP2pO91", SubscriptionId: "sub_GXgckhuJP2pO91",
				CustomerId: "cus_GXgcekfH0gjUCx", InvoiceId: "in_1GAkaZJNcmPzuWtR22uQmK9t", Status: "active",
				PreviousAttributeKeys: []string{"current_period_end", "current_period_start", "latest_invoice"},
				CurrentPeriodEnd:      ts(1581459526), Quantity: 1,
				PriceId: "plan_GW6OpLvKbFhlwD", ProductId: "prod_G93mdk6bGPJ7wy", Interval: "day", IntervalCount: 1, UnitAmount: 399,
			},
		},
		{
			file: "mozilla-fxa/subscription_deleted.json", // 2019-12-03
			want: &billingv1.BillingEvent{
				EventId: "evt_1GB4fgKb9q6OnNsLBGVcHQST", Type: "customer.subscription.deleted", Created: ts(1581450323), ApiVersion: "2019-12-03",
				ObjectType: "subscription", ObjectId: "sub_GiX3TpyO37x5BW", SubscriptionId: "sub_GiX3TpyO37x5BW",
				CustomerId: "cus_GiX3P6izX4lG5p", InvoiceId: "in_1GB4aHKb9q6OnNsLC9pbVY5a", Status: "canceled",
				CurrentPeriodEnd: ts(1583955589), CanceledAt: ts(1581450078), Quantity: 1,
				PriceId: "plan_FiJ55YK6UYftPa", ProductId: "prod_FiJ42WCzZNRSbS", Interval: "month", IntervalCount: 1, UnitAmount: 999,
				RequestId: "req_0Hhb1j3UqSE7Pr",
			},
		},
		{
			file: "mozilla-fxa/event_invoice_payment_succeeded.json", // 2019-12-03: invoice names its charge and payment intent
			want: &billingv1.BillingEvent{
				EventId: "evt_1GQf15BVqmGyQTMamwMk1kdP", Type: "invoice.payment_succeeded", Created: ts(1585164955), ApiVersion: "2019-12-03",
				ObjectType: "invoice", ObjectId: "in_1GQL9sBVqmGyQTMaEl7Oczgm", InvoiceId: "in_1GQL9sBVqmGyQTMaEl7Oczgm",
				CustomerId: "cus_GyHjGDDQRNpjya", SubscriptionId: "sub_GyHjvuW3xOeaZS",
				ChargeId: "ch_1GQL9tBVqmGyQTMaNLu55LsR", PaymentIntentId: "pi_1GQL9sBVqmGyQTMaSnFPZJlx",
				Amount: 500, AmountPaid: 500, AmountDue: 500, Currency: "usd", Status: "paid",
				BillingReason: "subscription_create", AttemptCount: 1, Email: "test+20200324@example.com", CustomerName: "oiuyoiuyoiuy",
				Quantity: 1, PriceId: "plan_GqM9N6qyhvxaVk", ProductId: "prod_GqM9ToKK62qjkK", Interval: "month", IntervalCount: 1, UnitAmount: 500,
				RequestId: "req_k0H9kTbrxkqtfB", IdempotencyKey: "a9482497-dde5-4ac6-90c2-1d3f5cada747",
			},
		},
		{
			file: "stripe-sync-engine/subscription_created.json", // 2020-03-02: items carry price and plan
			want: &billingv1.BillingEvent{
				EventId: "evt_1J02NfJDPojXS6LNawmt1X8q", Type: "customer.subscription.created", Created: ts(1623148918), ApiVersion: "2020-03-02",
				ObjectType: "subscription", ObjectId: "sub_JdIzvfy6o5GZRd", SubscriptionId: "sub_JdIzvfy6o5GZRd",
				CustomerId: "cus_IhGfebO16cMIGN", InvoiceId: "in_1J02NeJDPojXS6LNaiyWfNwT", Status: "active",
				CurrentPeriodEnd: ts(1625740918), Quantity: 1,
				PriceId: "price_1IDQm5JDPojXS6LNM31hxKzp", ProductId: "prod_Ip4vqwv3EJ7Mi0", Interval: "month", IntervalCount: 1,
				RequestId: "req_olXoysOcbnv6ZN",
			},
		},
		{
			file: "stripe-sync-engine/invoice_paid.json", // 2020-03-02: request {id: null}
			want: &billingv1.BillingEvent{
				EventId: "evt_1KJrGtJDPojXS6LN15fcthM3", Type: "invoice.paid", Created: ts(1642649111), ApiVersion: "2020-03-02",
				ObjectType: "invoice", ObjectId: "in_1KJqKBJDPojXS6LNJbvLUgEy", InvoiceId: "in_1KJqKBJDPojXS6LNJbvLUgEy",
				CustomerId: "cus_JsuO3bmrj0QlAw", SubscriptionId: "sub_JsuPyCPhXWfZar", Currency: "usd", Status: "paid",
				BillingReason: "subscription_cycle", Quantity: 1,
				PriceId: "price_1IDQm5JDPojXS6LNM31hxKzp", ProductId: "prod_Ip4vqwv3EJ7Mi0", Interval: "month", IntervalCount: 1,
			},
		},
		{
			file: "stripe-sync-engine/checkout_session_completed.json", // 2020-03-02, livemode
			want: &billingv1.BillingEvent{
				EventId: "evt_T8nSaZqtPudigUMqnnbY4D4v", Type: "checkout.session.completed", Created: ts(1619697430), Livemode: true, ApiVersion: "2020-03-02",
				ObjectType: "checkout.session", ObjectId: "cs_live_9RBjcHiy2i5p99Tf1MYM90c3SHK1grU0E6Ae6pKWR2KPA4ZiuKiB2X1Y3X",
				CheckoutSessionId: "cs_live_9RBjcHiy2i5p99Tf1MYM90c3SHK1grU0E6Ae6pKWR2KPA4ZiuKiB2X1Y3X",
				CustomerId:        "cus_IhGfebO16cMIGN", InvoiceId: "in_1KJqKBJDPojXS6LNJbvLUgEy", PaymentIntentId: "pi_1IqxJOJDPojXS6LN9uOebAea",
				Amount: 999, Currency: "eur", Status: "complete", CheckoutMode: "payment", PaymentStatus: "paid",
			},
			personal: true,
		},
		{
			file: "stripe-sync-engine/charge_refunded.json", // 2020-03-02
			want: &billingv1.BillingEvent{
				EventId: "evt_3KtQThJDPojXS6LN0E06aNxq", Type: "charge.refunded", Created: ts(1619701111), ApiVersion: "2020-03-02",
				ObjectType: "charge", ObjectId: "ch_3Kl36gJDPojXS6LN0DCM4A8l", ChargeId: "ch_3Kl36gJDPojXS6LN0DCM4A8l",
				CustomerId: "cus_J7Mkgr8mvbl1eK", InvoiceId: "in_1KJdKkJDPojXS6LNSwSWkZSN", PaymentIntentId: "pi_3Kl36gJDPojXS6LN02fQVtKR",
				RefundId: "re_3Kl36gJDPojXS6LN0eP4yPDz", Amount: 2500, AmountRefunded: 2500, Refunded: true, Currency: "usd", Status: "succeeded",
				PreviousAttributeKeys: []string{"amount_refunded", "refunded", "refunds"}, RequestId: "req_QyDCzn33ls4m1t",
			},
			personal: true,
		},
		{
			file: "stripe-sync-engine/charge_dispute_created.json", // 2020-03-02
			want: &billingv1.BillingEvent{
				EventId: "evt_3KtQThJDPojXS6LN0E06aNxq", Type: "charge.dispute.created", Created: ts(1619701111), ApiVersion: "2020-03-02",
				ObjectType: "dispute", ObjectId: "dp_1MLuxQJDPojXS6LNrukJCBBG", DisputeId: "dp_1MLuxQJDPojXS6LNrukJCBBG",
				ChargeId: "ch_1IqtGAJDPojXS6LNstgEfUji", PaymentIntentId: "pi_1IqtG9JDPojXS6LNOGnYrIqq",
				Amount: 1000, Currency: "usd", Status: "warning_needs_response", DisputeReason: "general", RequestId: "req_QyDCzn33ls4m1t",
			},
		},
		{
			file: "stripe-sync-engine/refund_created.json", // 2020-03-02
			want: &billingv1.BillingEvent{
				EventId: "evt_1KJrGtJDPojXS6LN15fcthM3", Type: "refund.created", Created: ts(1642649111), ApiVersion: "2020-03-02",
				ObjectType: "refund", ObjectId: "re_1Nispe2eZvKYlo2Cd31jOCgZ", RefundId: "re_1Nispe2eZvKYlo2Cd31jOCgZ",
				ChargeId: "ch_1NirD82eZvKYlo2CIvbtLWuY", PaymentIntentId: "pi_1GszsK2eZvKYlo2CfhZyoZLp",
				Amount: 1000, Currency: "usd", Status: "succeeded",
			},
		},
		{
			file: "stripe-ruby-mock/charge.failed.json", // 2020-08-27
			want: &billingv1.BillingEvent{
				EventId: "evt_000000000000000000000000", Type: "charge.failed", Created: ts(1648320028), ApiVersion: "2020-08-27",
				ObjectType: "charge", ObjectId: "ch_000000000000000000000000", ChargeId: "ch_000000000000000000000000",
				PaymentIntentId: "pi_000000000000000000000000", Amount: 2000, Currency: "usd", Status: "failed",
				FailureCode: "card_declined", FailureMessage: "Your card was declined.",
				RequestId: "req_00000000000000", IdempotencyKey: "57ddc22f-1d42-446f-8f91-85cf0d32084a",
			},
		},
		{
			file: "stripe-ruby-mock/payment_intent.payment_failed.json", // 2020-08-27: last_payment_error embeds the card
			want: &billingv1.BillingEvent{
				EventId: "evt_000000000000000000000000", Type: "payment_intent.payment_failed", Created: ts(1648320029), ApiVersion: "2020-08-27",
				ObjectType: "payment_intent", ObjectId: "pi_000000000000000000000000", PaymentIntentId: "pi_000000000000000000000000",
				ChargeId: "ch_000000000000000000000000", Amount: 2000, Currency: "usd", Status: "requires_payment_method",
				FailureCode: "card_declined", FailureMessage: "Your card was declined.",
				RequestId: "req_00000000000000", IdempotencyKey: "57ddc22f-1d42-446f-8f91-85cf0d32084a",
			},
		},
		{
			file: "stripe-ruby-mock/invoice.created.json", // 2020-08-27
			want: &billingv1.BillingEvent{
				EventId: "evt_000000000000000000000000", Type: "invoice.created", Created: ts(1648320110), ApiVersion: "2020-08-27",
				ObjectType: "invoice", ObjectId: "in_000000000000000000000000", InvoiceId: "in_000000000000000000000000",
				CustomerId: "cus_00000000000000", SubscriptionId: "sub_000000000000000000000000",
				Amount: 1500, AmountDue: 1500, Currency: "usd", Status: "draft", BillingReason: "subscription_create",
				NextPaymentAttempt: ts(1648323710), Quantity: 1,
				PriceId: "price_000000000000000000000000", ProductId: "prod_00000000000000", Interval: "month", IntervalCount: 1, UnitAmount: 1500,
				RequestId: "req_00000000000000", IdempotencyKey: "af06a7d9-5408-4f65-8379-59a93874d04c",
			},
		},
		{
			file: "stripe-ruby-mock/charge.refunded.json", // 2020-08-27
			want: &billingv1.BillingEvent{
				EventId: "evt_000000000000000000000000", Type: "charge.refunded", Created: ts(1648319949), ApiVersion: "2020-08-27",
				ObjectType: "charge", ObjectId: "ch_000000000000000000000000", ChargeId: "ch_000000000000000000000000",
				RefundId: "re_000000000000000000000000", Amount: 100, AmountRefunded: 100, Refunded: true, Currency: "usd", Status: "succeeded",
				PreviousAttributeKeys: []string{"amount_refunded", "refunded", "refunds"},
				RequestId:             "req_00000000000000", IdempotencyKey: "86a8299a-3f47-4aec-8cb4-298bbc8bc050",
			},
		},
		{
			file: "stripe-ruby-mock/checkout.session.completed.json", // 2020-08-27: e-mail only in customer_details
			want: &billingv1.BillingEvent{
				EventId: "evt_000000000000000000000000", Type: "checkout.session.completed", Created: ts(1648319959), ApiVersion: "2020-08-27",
				ObjectType: "checkout.session", ObjectId: "cs_test_0000000000000000000000000000000000000000000000000000000000",
				CheckoutSessionId: "cs_test_0000000000000000000000000000000000000000000000000000000000",
				CustomerId:        "cus_00000000000000", PaymentIntentId: "pi_000000000000000000000000",
				Amount: 3000, Currency: "usd", Status: "complete", CheckoutMode: "payment", PaymentStatus: "paid",
				Email: "stripe@example.com",
			},
		},
		{
			file: "stripe-ruby-mock/customer.subscription.trial_will_end.json", // api_version absent
			want: &billingv1.BillingEvent{
				EventId: "evt_00000000000000", Type: "customer.subscription.trial_will_end", Created: ts(1326853478),
				ObjectType: "subscription", ObjectId: "su_00000000000000", SubscriptionId: "su_00000000000000",
				CustomerId: "cus_00000000000000", Status: "trialing", CurrentPeriodEnd: ts(1383759023), TrialEnd: ts(1381280730),
				Quantity: 1, PriceId: "fkx0AFo_00000000000000", ProductId: "pr_00000000000000", Interval: "month", IntervalCount: 1, UnitAmount: 100,
			},
		},
		{
			file: "stripe-sync-engine/invoice_payment_paid.json", // 2023-10-16
			want: &billingv1.BillingEvent{
				EventId: "evt_test_invoice_payment_paid", Type: "invoice_payment.paid", Created: ts(1642649111), ApiVersion: "2023-10-16",
				ObjectType: "invoice_payment", ObjectId: "inpay_1M3USa2eZvKYlo2CBjuwbq0N", InvoiceId: "in_103Q0w2eZvKYlo2C5PYwf6Wf",
				PaymentIntentId: "pi_103Q0w2eZvKYlo2C364X582Z", AmountPaid: 2000, Currency: "usd", Status: "paid",
			},
		},
		{
			file: "dj-stripe/event_account_updated_standard.json", // Connect, a type outside the billing model
			want: &billingv1.BillingEvent{
				EventId: "evt_1Itt6eB9wPxT0ovY3LLhi5bw", Type: "account.updated", Created: ts(1621683300), ApiVersion: "2020-08-27",
				Account: "acct_1Fg9jUA3kq9o1aTc", ObjectType: "account", ObjectId: "acct_1Fg9jUA3kq9o1aTc",
				PreviousAttributeKeys: []string{"metadata"}, RequestId: "req_A60l4iFvAHopqU",
			},
		},
		{
			file: "stripe-ruby-mock/subscription_schedule.canceled.json", // unknown type: envelope, customer, previous status
			want: &billingv1.BillingEvent{
				EventId: "evt_000000000000000000000000", Type: "subscription_schedule.canceled", Created: ts(1648320097), ApiVersion: "2020-08-27",
				ObjectType: "subscription_schedule", ObjectId: "sub_sched_000000000000000000000000", CustomerId: "cus_00000000000000",
				PreviousStatus: "active", PreviousAttributeKeys: []string{"canceled_at", "current_phase", "status"},
				RequestId: "req_00000000000000", IdempotencyKey: "27f56452-b979-42fb-8bc1-219db1e65979",
			},
		},
	}
	versions := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := readFixture(t, dir, tc.file)
			got, err := stripeevent.Normalize(raw)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if !bytes.Equal(got.GetRawJson(), raw) {
				t.Error("raw_json differs from the input bytes")
			}
			got = proto.CloneOf(got)
			got.RawJson = nil
			if tc.personal {
				email, name := contactFromFixture(t, raw)
				if got.GetEmail() != email || got.GetCustomerName() != name {
					t.Errorf("contact = (%q, %q), want the fixture's (%q, %q)", got.GetEmail(), got.GetCustomerName(), email, name)
				}
				got.Email, got.CustomerName = "", ""
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("Normalize mismatch\n got: %s\nwant: %s", prototext.Format(got), prototext.Format(tc.want))
			}
			versions[tc.want.GetApiVersion()] = true
		})
	}
	for _, v := range []string{"2017-08-15", "2017-12-14", "2018-02-28", "2019-03-14", "2019-12-03", "2020-03-02", "2020-08-27", "2023-10-16", ""} {
		if !versions[v] {
			t.Errorf("no pinned fixture for api_version %q", v)
		}
	}
}

// contactFromFixture reads the e-mail and name Normalize should report with
// encoding/json, for fixtures whose values are kept out of this file.
func contactFromFixture(t *testing.T, raw []byte) (email, name string) {
	t.Helper()
	var ev struct {
		Data struct {
			Object struct {
				CustomerDetails *struct {
					Email string `json:"email"`
					Name  string `json:"name"`
				} `json:"customer_details"`
				BillingDetails *struct {
					Email string `json:"email"`
				} `json:"billing_details"`
				ReceiptEmail string `json:"receipt_email"`
			} `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("decode fixture: %v", err)
	}
	o := ev.Data.Object
	if o.CustomerDetails != nil {
		return o.CustomerDetails.Email, o.CustomerDetails.Name
	}
	if o.BillingDetails != nil && o.BillingDetails.Email != "" {
		return o.BillingDetails.Email, ""
	}
	return o.ReceiptEmail, ""
}
