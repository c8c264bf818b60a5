package stripeevent

import "fmt"

// envelopeTypeError is an envelope field of the wrong JSON kind. The envelope
// is Stripe's own and has kept its shape across API versions, so unlike
// object fields these are refused.
type envelopeTypeError struct {
	path, want string
}

func (e *envelopeTypeError) Error() string {
	return fmt.Sprintf("%s is not %s", e.path, e.want)
}

// Envelope readers: a kind mismatch is an error.

func (s *scanner) wantStr(dst *string, path string) error {
	ok, err := s.str(dst)
	return strict(ok, err, path, "a string")
}

func (s *scanner) wantInt(dst *int64, path string) error {
	ok, err := s.int(dst)
	return strict(ok, err, path, "an integer")
}

func (s *scanner) wantBool(dst *bool, path string) error {
	ok, err := s.bool(dst)
	return strict(ok, err, path, "a boolean")
}

func strict(ok bool, err error, path, want string) error {
	if err != nil {
		return err
	}
	if !ok {
		return &envelopeTypeError{path: path, want: want}
	}
	return nil
}

// Object readers: a kind mismatch inside data.object reads as absent. Object
// shapes vary by API version and type, the body is verified as Stripe's, and
// raw_json keeps the original, so a surprising field must not lose the event.

func (s *scanner) optStr(dst *string) error {
	_, err := s.str(dst)
	return err
}

func (s *scanner) optInt(dst *int64) error {
	_, err := s.int(dst)
	return err
}

func (s *scanner) optBool(dst *bool) error {
	_, err := s.bool(dst)
	return err
}

// decodeEvent reads the envelope and data.object in one pass.
func decodeEvent(raw []byte) (*eventEnvelope, error) {
	s := &scanner{data: raw}
	env := &eventEnvelope{}
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "id":
			return s.wantStr(&env.ID, "id")
		case "type":
			return s.wantStr(&env.Type, "type")
		case "created":
			return s.wantInt(&env.Created, "created")
		case "livemode":
			return s.wantBool(&env.Livemode, "livemode")
		case "api_version":
			return s.wantStr(&env.APIVersion, "api_version")
		case "account":
			return s.wantStr(&env.Account, "account")
		case "request":
			return s.request(&env.Request)
		case "data":
			return s.eventData(env)
		default:
			return s.skip()
		}
	})
	if err != nil {
		return nil, err
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	return env, nil
}

func (s *scanner) request(r *requestInfo) error {
	switch s.peek() {
	case '"':
		return s.wantStr(&r.ID, "request")
	case 'n':
		return s.literal("null")
	case '{':
		return s.object(func(key []byte) error {
			switch string(key) {
			case "id":
				return s.wantStr(&r.ID, "request.id")
			case "idempotency_key":
				return s.wantStr(&r.IdempotencyKey, "request.idempotency_key")
			default:
				return s.skip()
			}
		})
	default:
		if err := s.skip(); err != nil {
			return err
		}
		return &envelopeTypeError{path: "request", want: "a string, an object or null"}
	}
}

func (s *scanner) eventData(env *eventEnvelope) error {
	if s.null() {
		return nil
	}
	if s.peek() != '{' {
		if err := s.skip(); err != nil {
			return err
		}
		return &envelopeTypeError{path: "data", want: "an object"}
	}
	return s.object(func(key []byte) error {
		switch string(key) {
		case "object":
			if s.null() {
				env.HasObject = false
				return nil
			}
			if s.peek() != '{' {
				if err := s.skip(); err != nil {
					return err
				}
				return &envelopeTypeError{path: "data.object", want: "an object"}
			}
			env.HasObject = true
			env.Object = stripeObject{}
			return s.stripeObject(&env.Object)
		case "previous_attributes":
			return s.previousAttributes(&env.PreviousAttributes)
		default:
			return s.skip()
		}
	})
}

func (s *scanner) previousAttributes(p *previousAttributes) error {
	if s.null() {
		return nil
	}
	if s.peek() != '{' {
		if err := s.skip(); err != nil {
			return err
		}
		return &envelopeTypeError{path: "data.previous_attributes", want: "an object"}
	}
	*p = previousAttributes{}
	return s.object(func(key []byte) error {
		p.Keys = append(p.Keys, string(key))
		if string(key) == "status" {
			return s.optStr(&p.Status)
		}
		return s.skip()
	})
}

func (s *scanner) stripeObject(o *stripeObject) error {
	return s.object(func(key []byte) error {
		switch string(key) {
		case "id":
			return s.optStr(&o.ID)
		case "object":
			return s.optStr(&o.Object)
		case "status":
			return s.optStr(&o.Status)

		case "customer":
			return s.ref(&o.Customer, true)
		case "subscription":
			return s.ref(&o.Subscription, true)
		case "invoice":
			return s.ref(&o.Invoice, true)
		case "charge":
			return s.ref(&o.Charge, true)
		case "payment_intent":
			return s.ref(&o.PaymentIntent, true)
		case "latest_invoice":
			return s.ref(&o.LatestInvoice, true)
		case "latest_charge":
			return s.ref(&o.LatestCharge, true)

		case "amount":
			return s.optInt(&o.Amount)
		case "amount_paid":
			return s.optInt(&o.AmountPaid)
		case "amount_due":
			return s.optInt(&o.AmountDue)
		case "amount_refunded":
			return s.optInt(&o.AmountRefunded)
		case "amount_received":
			return s.optInt(&o.AmountReceived)
		case "amount_total":
			return s.optInt(&o.AmountTotal)
		case "total":
			return s.optInt(&o.Total)
		case "currency":
			return s.optStr(&o.Currency)

		case "refunded":
			return s.optBool(&o.Refunded)
		case "reason":
			return s.optStr(&o.Reason)
		case "failure_code":
			return s.optStr(&o.FailureCode)
		case "failure_message":
			return s.optStr(&o.FailureMessage)
		case "failure_reason":
			return s.optStr(&o.FailureReason)
		case "refunds":
			return s.firstListID(&o.FirstRefundID)

		case "last_payment_error":
			return s.stripeError(&o.LastPaymentError)
		case "charges":
			return s.firstListID(&o.FirstChargeID)

		case "billing_reason":
			return s.optStr(&o.BillingReason)
		case "attempt_count":
			return s.optInt(&o.AttemptCount)
		case "next_payment_attempt":
			return s.optInt(&o.NextPaymentAttempt)
		case "last_finalization_error":
			return s.stripeError(&o.LastFinalizationError)
		case "customer_email":
			return s.optStr(&o.CustomerEmail)
		case "customer_name":
			return s.optStr(&o.CustomerName)
		case "subscription_details":
			return s.objectOrSkip(func(key []byte) error {
				if string(key) == "metadata" {
					return s.metadata(&o.SubscriptionDetailsMetadata)
				}
				return s.skip()
			})
		case "parent":
			return s.invoiceParent(o)
		case "lines":
			return s.listData(func(int) error {
				o.Lines = append(o.Lines, invoiceLine{})
				return s.invoiceLine(&o.Lines[len(o.Lines)-1])
			})
		case "payments":
			return s.listData(func(int) error {
				o.Payments = append(o.Payments, invoicePayment{})
				return s.invoicePayment(&o.Payments[len(o.Payments)-1])
			})
		case "payment":
			return s.paymentRef(&o.Payment)

		case "current_period_end":
			return s.optInt(&o.CurrentPeriodEnd)
		case "cancel_at_period_end":
			return s.optBool(&o.CancelAtPeriodEnd)
		case "trial_end":
			return s.optInt(&o.TrialEnd)
		case "canceled_at":
			return s.optInt(&o.CanceledAt)
		case "cancellation_details":
			return s.objectOrSkip(func(key []byte) error {
				if string(key) == "reason" {
					return s.optStr(&o.CancellationReason)
				}
				return s.skip()
			})
		case "quantity":
			return s.optInt(&o.Quantity)
		case "plan":
			return s.priceish(&o.Plan)
		case "items":
			return s.listData(func(int) error {
				o.Items = append(o.Items, subscriptionItem{})
				return s.subscriptionItem(&o.Items[len(o.Items)-1])
			})

		case "mode":
			return s.optStr(&o.Mode)
		case "payment_status":
			return s.optStr(&o.PaymentStatus)
		case "client_reference_id":
			return s.optStr(&o.ClientReferenceID)
		case "customer_details":
			return s.objectOrSkip(func(key []byte) error {
				switch string(key) {
				case "email":
					return s.optStr(&o.CustomerDetailsEmail)
				case "name":
					return s.optStr(&o.CustomerDetailsName)
				default:
					return s.skip()
				}
			})

		case "email":
			return s.optStr(&o.Email)
		case "name":
			return s.optStr(&o.Name)
		case "receipt_email":
			return s.optStr(&o.ReceiptEmail)
		case "billing_details":
			return s.objectOrSkip(func(key []byte) error {
				if string(key) == "email" {
					return s.optStr(&o.BillingDetailsEmail)
				}
				return s.skip()
			})
		case "metadata":
			return s.metadata(&o.Metadata)
		default:
			return s.skip()
		}
	})
}

// ref reads an expandable field. expand is false for references inside an
// expanded object, where only the id is kept.
func (s *scanner) ref(r *ref, expand bool) error {
	switch s.peek() {
	case '"':
		*r = ref{}
		return s.optStr(&r.ID)
	case '{':
		*r = ref{}
		return s.object(func(key []byte) error {
			switch string(key) {
			case "id":
				return s.optStr(&r.ID)
			case "customer":
				if !expand {
					return s.skip()
				}
				var c ref
				if err := s.ref(&c, false); err != nil {
					return err
				}
				r.Customer = c.ID
				return nil
			case "email":
				return s.optStr(&r.Email)
			case "name":
				return s.optStr(&r.Name)
			case "metadata":
				var m metadata
				if err := s.metadata(&m); err != nil {
					return err
				}
				r.UserID = m.UserID
				return nil
			default:
				return s.skip()
			}
		})
	default:
		return s.skip()
	}
}

func (s *scanner) metadata(m *metadata) error {
	return s.objectOrSkip(func(key []byte) error {
		if string(key) == "user_id" {
			return s.optStr(&m.UserID)
		}
		return s.skip()
	})
}

func (s *scanner) stripeError(e *stripeError) error {
	return s.objectOrSkip(func(key []byte) error {
		switch string(key) {
		case "code":
			return s.optStr(&e.Code)
		case "decline_code":
			return s.optStr(&e.DeclineCode)
		case "message":
			return s.optStr(&e.Message)
		default:
			return s.skip()
		}
	})
}

// listData walks the data array of a Stripe list object.
func (s *scanner) listData(elem func(i int) error) error {
	return s.objectOrSkip(func(key []byte) error {
		if string(key) == "data" {
			return s.arrayOrSkip(elem)
		}
		return s.skip()
	})
}

// firstListID keeps the id of a list's first element: Stripe lists are
// newest first.
func (s *scanner) firstListID(dst *string) error {
	return s.listData(func(i int) error {
		if i > 0 {
			return s.skip()
		}
		return s.objectOrSkip(func(key []byte) error {
			if string(key) == "id" {
				return s.optStr(dst)
			}
			return s.skip()
		})
	})
}

func (s *scanner) priceish(dst **priceish) error {
	if s.peek() != '{' {
		return s.skip()
	}
	p := &priceish{}
	*dst = p
	// A price says unit_amount and recurring.{interval,interval_count}; a
	// plan says amount, interval and interval_count. Read both, prefer the
	// price's.
	var planAmount, planCount int64
	var planInterval string
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "id":
			return s.optStr(&p.ID)
		case "product":
			return s.ref(&p.Product, false)
		case "unit_amount": // price
			return s.optInt(&p.UnitAmount)
		case "amount": // plan
			return s.optInt(&planAmount)
		case "recurring": // price
			return s.objectOrSkip(func(key []byte) error {
				switch string(key) {
				case "interval":
					return s.optStr(&p.Interval)
				case "interval_count":
					return s.optInt(&p.IntervalCount)
				default:
					return s.skip()
				}
			})
		case "interval": // plan
			return s.optStr(&planInterval)
		case "interval_count": // plan
			return s.optInt(&planCount)
		default:
			return s.skip()
		}
	})
	if p.UnitAmount == 0 {
		p.UnitAmount = planAmount
	}
	if p.Interval == "" {
		p.Interval = planInterval
	}
	if p.IntervalCount == 0 {
		p.IntervalCount = planCount
	}
	return err
}

func (s *scanner) subscriptionItem(it *subscriptionItem) error {
	return s.objectOrSkip(func(key []byte) error {
		switch string(key) {
		case "price":
			return s.priceish(&it.Price)
		case "plan":
			return s.priceish(&it.Plan)
		case "quantity":
			return s.optInt(&it.Quantity)
		case "current_period_end":
			return s.optInt(&it.CurrentPeriodEnd)
		default:
			return s.skip()
		}
	})
}

// invoiceParent reads the basil invoice parent:
// {type, subscription_details: {subscription, metadata}, quote_details}.
func (s *scanner) invoiceParent(o *stripeObject) error {
	return s.objectOrSkip(func(key []byte) error {
		if string(key) != "subscription_details" {
			return s.skip()
		}
		return s.objectOrSkip(func(key []byte) error {
			switch string(key) {
			case "subscription":
				return s.ref(&o.ParentSubscription, true)
			case "metadata":
				return s.metadata(&o.ParentSubscriptionMetadata)
			default:
				return s.skip()
			}
		})
	})
}

func (s *scanner) invoiceLine(l *invoiceLine) error {
	return s.objectOrSkip(func(key []byte) error {
		switch string(key) {
		case "subscription":
			return s.ref(&l.Subscription, false)
		case "price":
			return s.priceish(&l.Price)
		case "plan":
			return s.priceish(&l.Plan)
		case "quantity":
			return s.optInt(&l.Quantity)
		case "parent": // basil: {type, subscription_item_details: {subscription}, invoice_item_details}
			return s.objectOrSkip(func(key []byte) error {
				if string(key) != "subscription_item_details" {
					return s.skip()
				}
				return s.objectOrSkip(func(key []byte) error {
					if string(key) == "subscription" {
						return s.ref(&l.ParentSubscription, false)
					}
					return s.skip()
				})
			})
		case "pricing": // basil: {type, price_details: {price, product}, unit_amount_decimal}
			return s.objectOrSkip(func(key []byte) error {
				if string(key) != "price_details" {
					return s.skip()
				}
				return s.objectOrSkip(func(key []byte) error {
					switch string(key) {
					case "price":
						return s.ref(&l.PricingPrice, false)
					case "product":
						return s.ref(&l.PricingProduct, false)
					default:
						return s.skip()
					}
				})
			})
		default:
			return s.skip()
		}
	})
}

func (s *scanner) invoicePayment(p *invoicePayment) error {
	return s.objectOrSkip(func(key []byte) error {
		switch string(key) {
		case "status":
			return s.optStr(&p.Status)
		case "payment":
			return s.paymentRef(&p.Payment)
		default:
			return s.skip()
		}
	})
}

func (s *scanner) paymentRef(p *paymentRef) error {
	return s.objectOrSkip(func(key []byte) error {
		switch string(key) {
		case "payment_intent":
			return s.ref(&p.PaymentIntent, true)
		case "charge":
			return s.ref(&p.Charge, true)
		default:
			return s.skip()
		}
	})
}
