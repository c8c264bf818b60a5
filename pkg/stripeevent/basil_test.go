package stripeevent_test

import (
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// No public fixture of API version 2025-03-31.basil or later exists, so the
// payloads in this file are constructed to match Stripe's documented basil
// changes (changelog 2025-03-31.basil):
//   - a subscription has no current_period_start/end; each item in
//     items.data carries its own;
//   - an invoice has no subscription, subscription_details, payment_intent,
//     charge or paid; its subscription is parent.subscription_details
//     .subscription, its line items name theirs under
//     parent.subscription_item_details and their price under
//     pricing.price_details, and payments is an includable list of
//     invoice_payment objects;
//   - charges and payment intents no longer name an invoice.
// 2025-09-30.clover keeps these shapes.

func basilSubscriptionUpdated() []byte {
	return []byte(`{
  "id": "evt_1RBasilEvt0001",
  "object": "event",
  "api_version": "2025-03-31.basil",
  "created": 1745000000,
  "data": {
    "object": {
      "id": "sub_1RBasilSub0001",
      "object": "subscription",
      "application": null,
      "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
      "billing_cycle_anchor": 1742400000,
      "billing_cycle_anchor_config": null,
      "cancel_at": null,
      "cancel_at_period_end": false,
      "canceled_at": null,
      "cancellation_details": {"comment": null, "feedback": null, "reason": null},
      "collection_method": "charge_automatically",
      "created": 1742400000,
      "currency": "usd",
      "customer": "cus_SBasilCust01",
      "default_payment_method": "pm_1RBasilPm0001",
      "discounts": [],
      "ended_at": null,
      "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
      "items": {
        "object": "list",
        "data": [
          {
            "id": "si_SBasilItem01",
            "object": "subscription_item",
            "created": 1742400000,
            "current_period_end": 1747000000,
            "current_period_start": 1744400000,
            "discounts": [],
            "metadata": {},
            "price": {
              "id": "price_1RBasilMonthly",
              "object": "price",
              "active": true,
              "billing_scheme": "per_unit",
              "currency": "usd",
              "product": "prod_SBasilSeats",
              "recurring": {"interval": "month", "interval_count": 1, "meter": null, "usage_type": "licensed"},
              "type": "recurring",
              "unit_amount": 1500,
              "unit_amount_decimal": "1500"
            },
            "quantity": 2,
            "subscription": "sub_1RBasilSub0001",
            "tax_rates": []
          },
          {
            "id": "si_SBasilItem02",
            "object": "subscription_item",
            "created": 1742400000,
            "current_period_end": 1748000000,
            "current_period_start": 1716464000,
            "discounts": [],
            "metadata": {},
            "price": {
              "id": "price_1RBasilAddonYearly",
              "object": "price",
              "product": "prod_SBasilAddon",
              "recurring": {"interval": "year", "interval_count": 1, "meter": null, "usage_type": "licensed"},
              "type": "recurring",
              "unit_amount": 9900
            },
            "quantity": 1,
            "subscription": "sub_1RBasilSub0001",
            "tax_rates": []
          }
        ],
        "has_more": false,
        "total_count": 2,
        "url": "/v1/subscription_items?subscription=sub_1RBasilSub0001"
      },
      "latest_invoice": "in_1RBasilInv0002",
      "livemode": false,
      "metadata": {"user_id": "user_42"},
      "pending_update": null,
      "schedule": null,
      "start_date": 1742400000,
      "status": "past_due",
      "trial_end": null,
      "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
      "trial_start": null
    },
    "previous_attributes": {
      "latest_invoice": "in_1RBasilInv0001",
      "status": "active"
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {"id": null, "idempotency_key": null},
  "type": "customer.subscription.updated"
}`)
}

func basilInvoicePaymentFailed() []byte {
	return []byte(`{
  "id": "evt_1RBasilEvt0002",
  "object": "event",
  "api_version": "2025-03-31.basil",
  "created": 1745000100,
  "data": {
    "object": {
      "id": "in_1RBasilInv0002",
      "object": "invoice",
      "account_country": "US",
      "amount_due": 3000,
      "amount_overpaid": 0,
      "amount_paid": 0,
      "amount_remaining": 3000,
      "attempt_count": 2,
      "attempted": true,
      "auto_advance": true,
      "billing_reason": "subscription_cycle",
      "collection_method": "charge_automatically",
      "confirmation_secret": null,
      "created": 1744400000,
      "currency": "usd",
      "customer": "cus_SBasilCust01",
      "customer_email": "basil.customer@example.com",
      "customer_name": "Basil Customer",
      "last_finalization_error": null,
      "lines": {
        "object": "list",
        "data": [
          {
            "id": "il_1RBasilLine0001",
            "object": "line_item",
            "amount": 3000,
            "currency": "usd",
            "description": "2 × Seats (at $15.00 / month)",
            "invoice": "in_1RBasilInv0002",
            "metadata": {},
            "parent": {
              "invoice_item_details": null,
              "subscription_item_details": {
                "invoice_item": null,
                "proration": false,
                "proration_details": {"credited_items": null},
                "subscription": "sub_1RBasilSub0001",
                "subscription_item": "si_SBasilItem01"
              },
              "type": "subscription_item_details"
            },
            "period": {"end": 1747000000, "start": 1744400000},
            "pricing": {
              "price_details": {"price": "price_1RBasilMonthly", "product": "prod_SBasilSeats"},
              "type": "price_details",
              "unit_amount_decimal": "1500"
            },
            "quantity": 2,
            "taxes": []
          }
        ],
        "has_more": false,
        "total_count": 1,
        "url": "/v1/invoices/in_1RBasilInv0002/lines"
      },
      "livemode": false,
      "metadata": {},
      "next_payment_attempt": 1745172900,
      "parent": {
        "quote_details": null,
        "subscription_details": {
          "metadata": {"user_id": "user_42"},
          "subscription": "sub_1RBasilSub0001"
        },
        "type": "subscription_details"
      },
      "period_end": 1744400000,
      "period_start": 1741800000,
      "status": "open",
      "total": 3000,
      "total_discount_amounts": [],
      "total_taxes": []
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {"id": null, "idempotency_key": null},
  "type": "invoice.payment_failed"
}`)
}

// basilInvoicePaidWithPayments has payments expanded, with a failed attempt
// listed before the one that paid.
func basilInvoicePaidWithPayments() []byte {
	return []byte(`{
  "id": "evt_1RBasilEvt0003",
  "object": "event",
  "api_version": "2025-03-31.basil",
  "created": 1745000200,
  "data": {
    "object": {
      "id": "in_1RBasilInv0002",
      "object": "invoice",
      "amount_due": 3000,
      "amount_paid": 3000,
      "amount_remaining": 0,
      "attempt_count": 3,
      "billing_reason": "subscription_cycle",
      "currency": "usd",
      "customer": "cus_SBasilCust01",
      "customer_email": "basil.customer@example.com",
      "lines": {"object": "list", "data": [], "has_more": false, "total_count": 1, "url": "/v1/invoices/in_1RBasilInv0002/lines"},
      "next_payment_attempt": null,
      "parent": {
        "quote_details": null,
        "subscription_details": {"metadata": {}, "subscription": "sub_1RBasilSub0001"},
        "type": "subscription_details"
      },
      "payments": {
        "object": "list",
        "data": [
          {
            "id": "inpay_1RBasilPay0001",
            "object": "invoice_payment",
            "amount_paid": null,
            "amount_requested": 3000,
            "currency": "usd",
            "invoice": "in_1RBasilInv0002",
            "is_default": false,
            "payment": {"payment_intent": "pi_1RBasilFailed01", "type": "payment_intent"},
            "status": "canceled"
          },
          {
            "id": "inpay_1RBasilPay0002",
            "object": "invoice_payment",
            "amount_paid": 3000,
            "amount_requested": 3000,
            "currency": "usd",
            "invoice": "in_1RBasilInv0002",
            "is_default": true,
            "payment": {"payment_intent": "pi_1RBasilPaid0001", "type": "payment_intent"},
            "status": "paid"
          }
        ],
        "has_more": false,
        "url": "/v1/invoice_payments"
      },
      "status": "paid",
      "total": 3000
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {"id": null, "idempotency_key": null},
  "type": "invoice.paid"
}`)
}

func basilCheckoutSessionCompleted() []byte {
	return []byte(`{
  "id": "evt_1RBasilEvt0004",
  "object": "event",
  "api_version": "2025-03-31.basil",
  "created": 1742400000,
  "data": {
    "object": {
      "id": "cs_test_b1RBasilSession0001",
      "object": "checkout.session",
      "amount_subtotal": 3000,
      "amount_total": 3000,
      "client_reference_id": "user_77",
      "collected_information": {"shipping_details": null},
      "currency": "usd",
      "customer": "cus_SBasilCust02",
      "customer_creation": "always",
      "customer_details": {
        "address": {"city": null, "country": "US", "line1": null, "line2": null, "postal_code": "94107", "state": null},
        "email": "checkout.buyer@example.com",
        "name": "Checkout Buyer",
        "phone": null,
        "tax_exempt": "none",
        "tax_ids": []
      },
      "customer_email": null,
      "invoice": "in_1RBasilInv0100",
      "livemode": false,
      "metadata": {},
      "mode": "subscription",
      "payment_intent": null,
      "payment_status": "paid",
      "status": "complete",
      "subscription": "sub_1RBasilSub0002",
      "ui_mode": "hosted"
    }
  },
  "livemode": false,
  "pending_webhooks": 2,
  "request": {"id": null, "idempotency_key": null},
  "type": "checkout.session.completed"
}`)
}

func cloverSubscriptionDeleted() []byte {
	return []byte(`{
  "id": "evt_1SCloverEvt001",
  "object": "event",
  "api_version": "2025-09-30.clover",
  "created": 1760000000,
  "data": {
    "object": {
      "id": "sub_1SCloverSub001",
      "object": "subscription",
      "billing_mode": {"type": "flexible", "flexible": {"proration_discounts": "included"}, "updated_at": 1758000000},
      "cancel_at": null,
      "cancel_at_period_end": false,
      "canceled_at": 1760000000,
      "cancellation_details": {"comment": null, "feedback": null, "reason": "payment_failed"},
      "currency": "eur",
      "customer": {
        "id": "cus_SCloverCust1",
        "object": "customer",
        "email": "clover.customer@example.com",
        "metadata": {"user_id": "user_99"},
        "name": "Clover Customer"
      },
      "ended_at": 1760000000,
      "items": {
        "object": "list",
        "data": [
          {
            "id": "si_SCloverItem1",
            "object": "subscription_item",
            "current_period_end": 1761000000,
            "current_period_start": 1758400000,
            "price": {
              "id": "price_1SCloverPro",
              "object": "price",
              "product": {"id": "prod_SCloverPro", "object": "product", "name": "Pro"},
              "recurring": {"interval": "month", "interval_count": 3, "usage_type": "licensed"},
              "unit_amount": 4500
            },
            "quantity": 1
          }
        ],
        "has_more": false,
        "total_count": 1,
        "url": "/v1/subscription_items?subscription=sub_1SCloverSub001"
      },
      "latest_invoice": {"id": "in_1SCloverInv001", "object": "invoice", "status": "uncollectible"},
      "livemode": true,
      "metadata": {},
      "status": "canceled",
      "trial_end": 1758400000
    }
  },
  "livemode": true,
  "pending_webhooks": 1,
  "request": {"id": null, "idempotency_key": "stripe-node-retry-0b1c"},
  "type": "customer.subscription.deleted"
}`)
}

func TestNormalizeBasilAndCloverShapes(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		want *billingv1.BillingEvent
	}{
		{
			// Period end is the latest item's: the add-on renews after the seats.
			name: "basil subscription: period on items",
			raw:  basilSubscriptionUpdated(),
			want: &billingv1.BillingEvent{
				EventId: "evt_1RBasilEvt0001", Type: "customer.subscription.updated", Created: ts(1745000000), ApiVersion: "2025-03-31.basil",
				ObjectType: "subscription", ObjectId: "sub_1RBasilSub0001", SubscriptionId: "sub_1RBasilSub0001",
				CustomerId: "cus_SBasilCust01", InvoiceId: "in_1RBasilInv0002", Currency: "usd",
				Status: "past_due", PreviousStatus: "active", PreviousAttributeKeys: []string{"latest_invoice", "status"},
				CurrentPeriodEnd: ts(1748000000), Quantity: 2,
				PriceId: "price_1RBasilMonthly", ProductId: "prod_SBasilSeats", Interval: "month", IntervalCount: 1, UnitAmount: 1500,
				UserId: "user_42",
			},
		},
		{
			name: "basil invoice: subscription under parent, price under pricing",
			raw:  basilInvoicePaymentFailed(),
			want: &billingv1.BillingEvent{
				EventId: "evt_1RBasilEvt0002", Type: "invoice.payment_failed", Created: ts(1745000100), ApiVersion: "2025-03-31.basil",
				ObjectType: "invoice", ObjectId: "in_1RBasilInv0002", InvoiceId: "in_1RBasilInv0002",
				CustomerId: "cus_SBasilCust01", SubscriptionId: "sub_1RBasilSub0001",
				Amount: 3000, AmountDue: 3000, Currency: "usd", Status: "open", BillingReason: "subscription_cycle",
				AttemptCount: 2, NextPaymentAttempt: ts(1745172900), Quantity: 2,
				PriceId: "price_1RBasilMonthly", ProductId: "prod_SBasilSeats",
				Email: "basil.customer@example.com", CustomerName: "Basil Customer", UserId: "user_42",
			},
		},
		{
			name: "basil invoice: expanded payments, the paid one wins",
			raw:  basilInvoicePaidWithPayments(),
			want: &billingv1.BillingEvent{
				EventId: "evt_1RBasilEvt0003", Type: "invoice.paid", Created: ts(1745000200), ApiVersion: "2025-03-31.basil",
				ObjectType: "invoice", ObjectId: "in_1RBasilInv0002", InvoiceId: "in_1RBasilInv0002",
				CustomerId: "cus_SBasilCust01", SubscriptionId: "sub_1RBasilSub0001", PaymentIntentId: "pi_1RBasilPaid0001",
				Amount: 3000, AmountPaid: 3000, AmountDue: 3000, Currency: "usd", Status: "paid", BillingReason: "subscription_cycle",
				AttemptCount: 3, Email: "basil.customer@example.com",
			},
		},
		{
			// client_reference_id stands in for metadata.user_id on sessions.
			name: "basil checkout session in subscription mode",
			raw:  basilCheckoutSessionCompleted(),
			want: &billingv1.BillingEvent{
				EventId: "evt_1RBasilEvt0004", Type: "checkout.session.completed", Created: ts(1742400000), ApiVersion: "2025-03-31.basil",
				ObjectType: "checkout.session", ObjectId: "cs_test_b1RBasilSession0001", CheckoutSessionId: "cs_test_b1RBasilSession0001",
				CustomerId: "cus_SBasilCust02", SubscriptionId: "sub_1RBasilSub0002", InvoiceId: "in_1RBasilInv0100",
				Amount: 3000, Currency: "usd", Status: "complete", CheckoutMode: "subscription", PaymentStatus: "paid",
				Email: "checkout.buyer@example.com", CustomerName: "Checkout Buyer", UserId: "user_77",
			},
		},
		{
			name: "clover subscription deleted, customer and product expanded",
			raw:  cloverSubscriptionDeleted(),
			want: &billingv1.BillingEvent{
				EventId: "evt_1SCloverEvt001", Type: "customer.subscription.deleted", Created: ts(1760000000), Livemode: true,
				ApiVersion: "2025-09-30.clover", ObjectType: "subscription", ObjectId: "sub_1SCloverSub001",
				SubscriptionId: "sub_1SCloverSub001", CustomerId: "cus_SCloverCust1", InvoiceId: "in_1SCloverInv001",
				Currency: "eur", Status: "canceled", CurrentPeriodEnd: ts(1761000000), TrialEnd: ts(1758400000),
				CanceledAt: ts(1760000000), CancellationReason: "payment_failed", Quantity: 1,
				PriceId: "price_1SCloverPro", ProductId: "prod_SCloverPro", Interval: "month", IntervalCount: 3, UnitAmount: 4500,
				Email: "clover.customer@example.com", CustomerName: "Clover Customer", UserId: "user_99",
				IdempotencyKey: "stripe-node-retry-0b1c",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := stripeevent.Normalize(tc.raw)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if string(got.GetRawJson()) != string(tc.raw) {
				t.Error("raw_json differs from the input bytes")
			}
			got.RawJson = nil
			if !proto.Equal(got, tc.want) {
				t.Errorf("Normalize mismatch\n got: %s\nwant: %s", prototext.Format(got), prototext.Format(tc.want))
			}
		})
	}
}
