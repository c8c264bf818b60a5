package stripeevent

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// ErrMalformed is returned, wrapped with the reason, for a body that is not a
// Stripe event: invalid JSON, no id, no type, no data.object, or an envelope
// field of the wrong JSON type.
var ErrMalformed = errors.New("malformed stripe event")

// Normalize turns a verified Stripe event body into a BillingEvent.
//
// raw_json holds a copy of raw, byte for byte; received_at is left for the
// caller, which knows when the request arrived. Inside data.object a field of
// an unexpected JSON kind reads as absent instead of failing the event: object
// shapes differ across API versions and object types, the body is verified as
// Stripe's, and raw_json keeps the original. The envelope is held to its
// documented kinds.
func Normalize(raw []byte) (*billingv1.BillingEvent, error) {
	env, err := decodeEvent(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case env.ID == "":
		return nil, fmt.Errorf("%w: no id", ErrMalformed)
	case env.Type == "":
		return nil, fmt.Errorf("%w: event %s has no type", ErrMalformed, env.ID)
	case !env.HasObject:
		return nil, fmt.Errorf("%w: event %s has no data.object", ErrMalformed, env.ID)
	}

	obj := &env.Object
	keys := env.PreviousAttributes.Keys
	slices.Sort(keys)
	ev := &billingv1.BillingEvent{
		EventId:               env.ID,
		Type:                  env.Type,
		Created:               timestamp(env.Created),
		Livemode:              env.Livemode,
		ApiVersion:            env.APIVersion,
		Account:               env.Account,
		ObjectType:            obj.Object,
		ObjectId:              obj.ID,
		RequestId:             env.Request.ID,
		IdempotencyKey:        env.Request.IdempotencyKey,
		PreviousStatus:        env.PreviousAttributes.Status,
		PreviousAttributeKeys: slices.Compact(keys),
		RawJson:               slices.Clone(raw),
		SmokeRun:              SmokeRun(raw),
	}

	switch obj.Object {
	case "customer":
		fillCustomer(ev, obj)
	case "subscription":
		fillSubscription(ev, obj)
	case "invoice":
		fillInvoice(ev, obj)
	case "invoice_payment":
		fillInvoicePayment(ev, obj)
	case "checkout.session":
		fillCheckoutSession(ev, obj)
	case "payment_intent":
		fillPaymentIntent(ev, obj)
	case "charge":
		fillCharge(ev, obj)
	case "dispute":
		fillDispute(ev, obj)
	case "refund":
		fillRefund(ev, obj)
	default:
		// Unknown objects: only what every consumer can rely on. A status or
		// amount of an object type nobody maps would invite misreading.
		ev.CustomerId = obj.Customer.ID
		// Nobody applies these objects, so an id that is not Stripe's shape
		// (an account-chosen plan or coupon id, a redacted capture) is left
		// out rather than failing the event; raw_json keeps it. The ids of
		// mapped objects are held to CheckPlausible instead.
		if !IsStripeID(ev.ObjectId) {
			ev.ObjectId = ""
		}
		if !IsStripeID(ev.CustomerId) {
			ev.CustomerId = ""
		}
	}
	return ev, nil
}

func fillCustomer(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.CustomerId = o.ID
	ev.Email = o.Email
	ev.CustomerName = o.Name
	ev.UserId = o.Metadata.UserID
	ev.Currency = o.Currency
}

func fillSubscription(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.SubscriptionId = o.ID
	ev.Status = o.Status
	ev.Currency = o.Currency
	ev.InvoiceId = o.LatestInvoice.ID
	ev.CancelAtPeriodEnd = o.CancelAtPeriodEnd
	ev.TrialEnd = timestamp(o.TrialEnd)
	ev.CanceledAt = timestamp(o.CanceledAt)
	ev.CancellationReason = o.CancellationReason
	setCustomerRef(ev, o)
	ev.UserId = first(o.Metadata.UserID, o.Customer.UserID)

	// Before basil the period is the subscription's; from 2025-03-31.basil
	// each item has its own and the subscription has none. With several
	// items the latest end is when the customer's paid access runs out.
	periodEnd := o.CurrentPeriodEnd
	if periodEnd == 0 {
		for _, it := range o.Items {
			periodEnd = max(periodEnd, it.CurrentPeriodEnd)
		}
	}
	ev.CurrentPeriodEnd = timestamp(periodEnd)

	// items.data[].price exists since prices did (2020); older versions name
	// a plan on the item or, before multi-item subscriptions, on the
	// subscription itself.
	var p *priceish
	ev.Quantity = o.Quantity
	if len(o.Items) > 0 {
		it := o.Items[0]
		p = cmp.Or(it.Price, it.Plan)
		if ev.Quantity == 0 {
			ev.Quantity = it.Quantity
		}
	}
	setPrice(ev, cmp.Or(p, o.Plan))
}

func fillInvoice(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.InvoiceId = o.ID
	ev.Status = o.Status
	ev.Amount = o.Total
	ev.AmountPaid = o.AmountPaid
	ev.AmountDue = o.AmountDue
	ev.Currency = o.Currency
	ev.BillingReason = o.BillingReason
	ev.AttemptCount = o.AttemptCount
	ev.NextPaymentAttempt = timestamp(o.NextPaymentAttempt)
	ev.FailureCode = first(o.LastFinalizationError.Code, o.LastFinalizationError.DeclineCode)
	ev.FailureMessage = o.LastFinalizationError.Message
	setCustomerRef(ev, o)
	ev.Email = first(ev.Email, o.CustomerEmail)
	ev.CustomerName = first(o.CustomerName, ev.CustomerName)

	// The subscription: top-level before basil, under parent in basil, and
	// on the subscription lines as a last resort (drafts and old versions
	// where only the lines name it).
	ev.SubscriptionId = first(o.Subscription.ID, o.ParentSubscription.ID)
	for _, l := range o.Lines {
		if ev.SubscriptionId != "" {
			break
		}
		ev.SubscriptionId = first(l.Subscription.ID, l.ParentSubscription.ID)
	}
	ev.UserId = first(o.Metadata.UserID, o.ParentSubscriptionMetadata.UserID,
		o.SubscriptionDetailsMetadata.UserID, o.Customer.UserID)

	// Before basil the invoice names its payment intent and charge; basil
	// moved them to invoice payments, which webhooks carry only when
	// expanded. The paid payment wins over earlier attempts.
	ev.PaymentIntentId = o.PaymentIntent.ID
	ev.ChargeId = o.Charge.ID
	if ev.PaymentIntentId == "" && ev.ChargeId == "" && len(o.Payments) > 0 {
		pay := o.Payments[0]
		for _, p := range o.Payments {
			if p.Status == "paid" {
				pay = p
				break
			}
		}
		ev.PaymentIntentId = pay.Payment.PaymentIntent.ID
		ev.ChargeId = pay.Payment.Charge.ID
	}

	if len(o.Lines) > 0 {
		l := o.Lines[0]
		ev.Quantity = l.Quantity
		if p := cmp.Or(l.Price, l.Plan); p != nil {
			setPrice(ev, p)
		} else {
			ev.PriceId = l.PricingPrice.ID
			ev.ProductId = l.PricingProduct.ID
		}
	}
}

func fillInvoicePayment(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.Status = o.Status
	ev.InvoiceId = o.Invoice.ID
	ev.AmountPaid = o.AmountPaid
	ev.Currency = o.Currency
	ev.PaymentIntentId = o.Payment.PaymentIntent.ID
	ev.ChargeId = o.Payment.Charge.ID
	ev.CustomerId = o.Invoice.Customer
}

func fillCheckoutSession(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.CheckoutSessionId = o.ID
	ev.Status = o.Status
	ev.CheckoutMode = o.Mode
	ev.PaymentStatus = o.PaymentStatus
	ev.Amount = o.AmountTotal
	ev.Currency = o.Currency
	ev.SubscriptionId = o.Subscription.ID
	ev.PaymentIntentId = o.PaymentIntent.ID
	ev.InvoiceId = o.Invoice.ID
	setCustomerRef(ev, o)
	ev.Email = first(ev.Email, o.CustomerEmail, o.CustomerDetailsEmail)
	ev.CustomerName = first(ev.CustomerName, o.CustomerDetailsName)
	// client_reference_id is the field Checkout offers for exactly this:
	// the app passes its own user id when it creates the session. metadata
	// wins because it is what every other object uses.
	ev.UserId = first(o.Metadata.UserID, o.ClientReferenceID, o.Customer.UserID)
}

func fillPaymentIntent(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.PaymentIntentId = o.ID
	ev.Status = o.Status
	ev.Amount = o.Amount
	ev.AmountPaid = o.AmountReceived
	ev.Currency = o.Currency
	ev.InvoiceId = o.Invoice.ID // removed in basil
	ev.CanceledAt = timestamp(o.CanceledAt)
	ev.ChargeId = first(o.LatestCharge.ID, o.FirstChargeID)
	ev.FailureCode = first(o.LastPaymentError.Code, o.LastPaymentError.DeclineCode)
	ev.FailureMessage = o.LastPaymentError.Message
	setCustomerRef(ev, o)
	ev.Email = first(ev.Email, o.ReceiptEmail)
	ev.UserId = first(o.Metadata.UserID, o.Customer.UserID)
}

func fillCharge(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.ChargeId = o.ID
	ev.Status = o.Status
	ev.Amount = o.Amount
	ev.AmountRefunded = o.AmountRefunded
	ev.Currency = o.Currency
	ev.Refunded = o.Refunded
	ev.FailureCode = o.FailureCode
	ev.FailureMessage = o.FailureMessage
	ev.InvoiceId = o.Invoice.ID // removed in basil
	ev.PaymentIntentId = o.PaymentIntent.ID
	ev.RefundId = o.FirstRefundID
	setCustomerRef(ev, o)
	ev.Email = first(ev.Email, o.BillingDetailsEmail, o.ReceiptEmail)
	ev.UserId = first(o.Metadata.UserID, o.Customer.UserID)
}

// Disputes and refunds name a charge, not a customer; the customer is known
// here only when the charge was expanded.
func fillDispute(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.DisputeId = o.ID
	ev.Status = o.Status
	ev.DisputeReason = o.Reason
	ev.Amount = o.Amount
	ev.Currency = o.Currency
	ev.ChargeId = o.Charge.ID
	ev.PaymentIntentId = o.PaymentIntent.ID
	ev.CustomerId = o.Charge.Customer
	ev.UserId = o.Metadata.UserID
}

func fillRefund(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.RefundId = o.ID
	ev.Status = o.Status
	ev.Amount = o.Amount
	ev.Currency = o.Currency
	ev.ChargeId = o.Charge.ID
	ev.PaymentIntentId = o.PaymentIntent.ID
	ev.FailureCode = o.FailureReason
	ev.CustomerId = first(o.Charge.Customer, o.PaymentIntent.Customer)
	ev.UserId = o.Metadata.UserID
}

// setCustomerRef copies the customer reference and, when it was expanded,
// the contact details it carries.
func setCustomerRef(ev *billingv1.BillingEvent, o *stripeObject) {
	ev.CustomerId = o.Customer.ID
	ev.Email = o.Customer.Email
	ev.CustomerName = o.Customer.Name
}

func setPrice(ev *billingv1.BillingEvent, p *priceish) {
	if p == nil {
		return
	}
	ev.PriceId = p.ID
	ev.ProductId = p.Product.ID
	ev.Interval = p.Interval
	ev.IntervalCount = p.IntervalCount
	ev.UnitAmount = p.UnitAmount
}

func timestamp(unix int64) *timestamppb.Timestamp {
	if unix == 0 {
		return nil
	}
	return &timestamppb.Timestamp{Seconds: unix}
}

// first returns the first non-empty value: the fields Normalize fills from
// several places list them most specific first.
func first(values ...string) string {
	return cmp.Or(values...)
}
