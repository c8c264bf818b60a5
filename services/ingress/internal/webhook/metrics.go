package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// outcome is what became of one webhook request; its name is the value of
// the outcome label.
type outcome uint8

const (
	outcomeAccepted outcome = iota
	outcomeDuplicate
	outcomeBadSignature
	outcomeStale
	outcomeMalformed
	outcomeTooLarge
	outcomeMethod
	outcomeWrongMode
	outcomeUnavailable
	outcomeUnstorable
	outcomeContentType
	outcomeBusy
	outcomeTimeout
	outcomeImplausible
	outcomeIgnored
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	outcomeAccepted:     "accepted",
	outcomeDuplicate:    "duplicate",
	outcomeBadSignature: "bad_signature",
	outcomeStale:        "stale",
	outcomeMalformed:    "malformed",
	outcomeTooLarge:     "too_large",
	outcomeMethod:       "method",
	outcomeWrongMode:    "wrong_mode",
	outcomeUnavailable:  "unavailable",
	outcomeUnstorable:   "unstorable",
	outcomeContentType:  "content_type",
	outcomeBusy:         "busy",
	outcomeTimeout:      "timeout",
	outcomeImplausible:  "implausible",
	outcomeIgnored:      "ignored",
}

func (o outcome) String() string { return outcomeNames[o] }

// sigReason is why a signature check failed; its name is the value of the
// reason label.
type sigReason uint8

const (
	sigMissing sigReason = iota
	sigMalformed
	sigMismatch
	sigStale
	sigFuture
	numSigReasons
)

var sigReasonNames = [numSigReasons]string{
	sigMissing:   "missing",
	sigMalformed: "malformed",
	sigMismatch:  "mismatch",
	sigStale:     "stale",
	sigFuture:    "future",
}

// Metrics are the webhook endpoint's Prometheus series. Publish latency is
// the bus publisher's lr_publish_seconds. Every labelled child
// is resolved once here so the request path never hashes label values.
type Metrics struct {
	requests    [numOutcomes]prometheus.Counter
	sigFailures [numSigReasons]prometheus.Counter
	duplicates  prometheus.Counter
	duration    prometheus.Observer
	inFlight    prometheus.Gauge
	// lastReceived is when a verified event last arrived (accepted, a
	// duplicate or ignored): the webhook-silence alert compares it with
	// SilenceAlert.
	lastReceived prometheus.Gauge
	// SilenceAlert is WEBHOOK_SILENCE_ALERT in seconds, exported so that
	// the alert rule reads the deployment's own setting.
	SilenceAlert prometheus.Gauge
}

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lr_webhook_requests_total",
		Help: "Stripe webhook requests by outcome.",
	}, []string{"outcome"})
	sig := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lr_webhook_signature_failures_total",
		Help: "Webhook requests refused by the signature check, by reason.",
	}, []string{"reason"})
	dups := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lr_webhook_duplicates_total",
		Help: "Events JetStream already held (same event id inside the duplicate window).",
	})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lr_webhook_request_seconds",
		Help:    "Time from request start to response, refusals included.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lr_webhook_in_flight",
		Help: "Webhook requests holding a WEBHOOK_MAX_INFLIGHT slot: reading their body, verifying or publishing.",
	})
	last := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lr_webhook_last_received_timestamp_seconds",
		Help: "Unix time a verified Stripe event last arrived (accepted, duplicate or ignored); the process's start until the first.",
	})
	silence := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lr_webhook_silence_alert_seconds",
		Help: "WEBHOOK_SILENCE_ALERT: how long without a webhook before LaunchReadyWebhookSilence fires.",
	})
	last.SetToCurrentTime()
	for _, c := range []prometheus.Collector{requests, sig, dups, duration, inFlight, last, silence} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &Metrics{duplicates: dups, duration: duration, inFlight: inFlight, lastReceived: last, SilenceAlert: silence}
	// Creating every child up front also exports each series at zero, so a
	// rate() over a refusal that has not happened yet reads 0, not absent.
	for o := range numOutcomes {
		m.requests[o] = requests.WithLabelValues(o.String())
	}
	for r := range numSigReasons {
		m.sigFailures[r] = sig.WithLabelValues(sigReasonNames[r])
	}
	return m, nil
}
