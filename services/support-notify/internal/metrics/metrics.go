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
	// AlertsSent counts alerts (events) each alert channel (slack, email,
	// email_customer, sms) accepted, alone or in a digest.
	AlertsSent *prometheus.CounterVec
	// AlertsLate counts accepted alerts whose latency exceeded the SLO, by
	// channel.
	AlertsLate *prometheus.CounterVec
	// AlertMessages counts messages each alert channel accepted, by kind:
	// "alone" (one alert) or "digest" (a burst folded into one message).
	AlertMessages *prometheus.CounterVec
	// AlertLatency is the time from the Stripe event's created time to the
	// moment the channel accepted the alert, by channel.
	AlertLatency *prometheus.HistogramVec
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
		AlertsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_alerts_sent_total",
			Help: "Alerts accepted by each alert channel.",
		}, []string{"channel"}),
		AlertsLate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_alerts_late_total",
			Help: "Alerts accepted after ALERT_SLO had passed since the Stripe event, by channel.",
		}, []string{"channel"}),
		AlertMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_alert_messages_total",
			Help: "Messages each alert channel accepted, by kind: alone (one alert) or digest (several alerts folded into one).",
		}, []string{"channel", "kind"}),
		AlertLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lr_alert_latency_seconds",
			Help:    "Seconds from the Stripe event's created time to the alert channel accepting the alert, by channel.",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1800, 3600},
		}, []string{"channel"}),
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
