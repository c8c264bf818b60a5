package stripeevent

// The structs below hold only the fields Normalize reads; decode.go fills
// them in one pass over the body. Fields whose place changed across API
// versions are listed under every name they have had.

type eventEnvelope struct {
	ID         string
	Type       string
	Created    int64
	Livemode   bool
	APIVersion string
	Account    string
	Request    requestInfo

	HasObject          bool
	Object             stripeObject
	PreviousAttributes previousAttributes
}

// requestInfo is the event's request: a bare "req_..." string before
// 2017-05-25, {id, idempotency_key} since, null for automatic events.
type requestInfo struct {
	ID             string
	IdempotencyKey string
}

// previousAttributes keeps the keys of data.previous_attributes and the
// status it names, not the values.
type previousAttributes struct {
	Keys   []string
	Status string
}

// stripeObject is the union of the fields Normalize reads from data.object,
// whatever its type.
type stripeObject struct {
	ID     string
	Object string
	Status string

	// References that are an id, or an object when expanded.
	Customer      ref
	Subscription  ref
	Invoice       ref
	Charge        ref
	PaymentIntent ref
	LatestInvoice ref
	LatestCharge  ref

	// Money.
	Amount         int64
	AmountPaid     int64
	AmountDue      int64
	AmountRefunded int64
	AmountReceived int64 // payment intents
	AmountTotal    int64 // checkout sessions
	Total          int64 // invoices
	Currency       string

	// Charges, refunds, disputes.
	Refunded       bool
	Reason         string
	FailureCode    string
	FailureMessage string
	FailureReason  string // refunds
	FirstRefundID  string // charge.refunds.data[0], newest first

	// Payment intents. charges was embedded until 2022-11-15, when
	// latest_charge replaced it.
	LastPaymentError stripeError
	FirstChargeID    string

	// Invoices.
	BillingReason         string
	AttemptCount          int64
	NextPaymentAttempt    int64
	LastFinalizationError stripeError
	CustomerEmail         string
	CustomerName          string
	// subscription_details.metadata, before basil.
	SubscriptionDetailsMetadata metadata
	// parent.subscription_details, basil and later.
	ParentSubscription         ref
	ParentSubscriptionMetadata metadata
	Lines                      []invoiceLine
	// payments: invoice_payment objects, basil and later, when expanded.
	Payments []invoicePayment
	// payment: on invoice_payment objects themselves.
	Payment paymentRef

	// Subscriptions.
	CurrentPeriodEnd   int64
	CancelAtPeriodEnd  bool
	TrialEnd           int64
	CanceledAt         int64
	CancellationReason string
	Quantity           int64
	Plan               *priceish
	Items              []subscriptionItem

	// Checkout sessions.
	Mode                 string
	PaymentStatus        string
	ClientReferenceID    string
	CustomerDetailsEmail string
	CustomerDetailsName  string

	// People.
	Email               string
	Name                string
	ReceiptEmail        string
	BillingDetailsEmail string
	Metadata            metadata
}

// stripeError is last_payment_error / last_finalization_error. Only code and
// message are read: the rest can name the payment method and its card.
type stripeError struct {
	Code        string
	DeclineCode string
	Message     string
}

// metadata holds the one key Launch Ready defines.
type metadata struct {
	UserID string
}

// priceish is a price or a legacy plan: both name a product and an amount,
// under different keys.
type priceish struct {
	ID            string
	Product       ref
	UnitAmount    int64  // price.unit_amount, plan.amount
	Interval      string // price.recurring.interval, plan.interval
	IntervalCount int64  // price.recurring.interval_count, plan.interval_count
}

type subscriptionItem struct {
	Price            *priceish
	Plan             *priceish
	Quantity         int64
	CurrentPeriodEnd int64 // basil and later
}

type invoiceLine struct {
	Subscription       ref       // before basil
	Price              *priceish // before basil
	Plan               *priceish // before basil
	Quantity           int64
	ParentSubscription ref // parent.subscription_item_details.subscription, basil
	PricingPrice       ref // pricing.price_details.price, basil
	PricingProduct     ref // pricing.price_details.product, basil
}

type invoicePayment struct {
	Status  string
	Payment paymentRef
}

type paymentRef struct {
	PaymentIntent ref
	Charge        ref
}

// ref is an expandable Stripe field: an id string, or the object when the
// request expanded it. From an expanded object it keeps what Normalize can
// use about the customer behind it.
type ref struct {
	ID       string
	Customer string
	Email    string
	Name     string
	UserID   string
}
