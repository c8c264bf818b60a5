package canonical

// MRR is the subscription's monthly recurring revenue in the smallest
// currency unit: unit amount × quantity, normalised to one month. Only
// subscriptions that bill now count: active and past_due (still owed and
// being retried). Trials, ended, unpaid, paused and incomplete subscriptions
// are 0, as are prices without a recurring interval.
func MRR(s Subscription) int64 {
	if s.Deleted {
		return 0
	}
	switch s.Status {
	case StripeActive, StripePastDue:
	default:
		return 0
	}
	return MonthlyAmount(s.UnitAmount, s.Quantity, s.Interval, s.IntervalCount)
}

// MonthlyAmount normalises a recurring amount to one month, rounding half
// away from zero: a year is 12 months, a week 52/12 of a month, a day 365/12.
// quantity 0 counts as 1 and intervalCount 0 as 1, Stripe's defaults.
func MonthlyAmount(unitAmount, quantity int64, interval string, intervalCount int64) int64 {
	if quantity <= 0 {
		quantity = 1
	}
	if intervalCount <= 0 {
		intervalCount = 1
	}
	total := unitAmount * quantity
	var num, den int64
	switch interval {
	case "month":
		num, den = 1, intervalCount
	case "year":
		num, den = 1, 12*intervalCount
	case "week":
		num, den = 52, 12*intervalCount
	case "day":
		num, den = 365, 12*intervalCount
	default:
		return 0
	}
	return divRound(total*num, den)
}

func divRound(n, d int64) int64 {
	if n >= 0 {
		return (n + d/2) / d
	}
	return -((-n + d/2) / d)
}
