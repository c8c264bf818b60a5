// Package metrics holds support-notify's Prometheus instruments, registered
// on the service's own registry so that services sharing a process keep
// their series apart.
package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the service's instruments.
type Metrics struct {
	// Calls counts vendor HTTP calls by vendor (zendesk, slack) and outcome
	// (ok, rate_limited, retryable, rejected, error).
	Calls *prometheus.CounterVec
	// Tickets counts ticket writes by action (created, commented, resolved).
	Tickets *prometheus.CounterVec
	// AlertsSent counts alerts (events) the alert channel accepted, alone or in a digest.
	AlertsSent prometheus.Counter
	// AlertsLate counts accepted alerts whose latency exceeded the SLO.
	AlertsLate prometheus.Counter
	// AlertMessages counts messages the alert channel accepted, by kind:
	// "alone" (one alert) or "digest" (a burst folded into one message).
	AlertMessages *prometheus.CounterVec
	// AlertLatency is the time from the Stripe event's created time to the
	// moment the alert channel accepted the alert.
	AlertLatency prometheus.Histogram
}

// New registers the instruments on reg; nil reg leaves them unregistered.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_support_calls_total",
			Help: "Outbound support and alert vendor calls, by vendor and outcome.",
		}, []string{"vendor", "outcome"}),
		Tickets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_support_tickets_total",
			Help: "Support tickets created, commented on and resolved.",
		}, []string{"action"}),
		AlertsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lr_alerts_sent_total",
			Help: "Ops alerts accepted by the alert channel.",
		}),
		AlertsLate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lr_alerts_late_total",
			Help: "Ops alerts accepted after ALERT_SLO had passed since the Stripe event.",
		}),
		AlertMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_alert_messages_total",
			Help: "Messages the alert channel accepted, by kind: alone (one alert) or digest (several alerts folded into one).",
		}, []string{"kind"}),
		AlertLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lr_alert_latency_seconds",
			Help:    "Seconds from the Stripe event's created time to the alert channel accepting the alert.",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1800, 3600},
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.Calls, m.Tickets, m.AlertsSent, m.AlertsLate, m.AlertMessages, m.AlertLatency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
