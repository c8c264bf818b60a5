package crm

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/vendorhttp"
)

// maxBody caps what is read from a CRM's answer: enough for any id or
// error.
const maxBody = 64 << 10

// Metrics are the CRM call metrics.
type Metrics struct {
	Calls   *prometheus.CounterVec
	Seconds *prometheus.HistogramVec
}

// NewMetrics registers lr_crm_calls_total and lr_crm_call_seconds on reg,
// reusing them when a service in the same process already did.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_crm_calls_total",
			Help: "Outbound CRM calls by vendor and outcome (ok, rate_limited, server_error, rejected, timeout, error, deferred).",
		}, []string{"vendor", "outcome"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lr_crm_call_seconds",
			Help:    "Duration of outbound CRM calls that reached the network.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"vendor"}),
	}
	if reg == nil {
		return m
	}
	m.Calls = register(reg, m.Calls)
	m.Seconds = register(reg, m.Seconds)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// ClientConfig is crm-sync's use of the shared vendor client.
type ClientConfig struct {
	Vendor string
	// Timeout bounds one request (CRM_TIMEOUT).
	Timeout time.Duration
	// Limit requests per Window (CRM_RATE_LIMIT per CRM_RATE_WINDOW),
	// shared by every worker of the process.
	Limit  int
	Window time.Duration
	// MaxWait is the longest a call waits in place for the rate budget, a
	// vendor pause or a retry before the message is handed back to the bus
	// with that delay (default 20 s).
	MaxWait time.Duration
	// Transport is the base transport; nil means the client's own.
	Transport      http.RoundTripper
	TracerProvider trace.TracerProvider
	Metrics        *Metrics
	// Secrets are removed from any error text or answer kept as a reason.
	Secrets []string
	// HideURLPath keeps the URL's path out of spans: a webhook URL is
	// often itself the credential.
	HideURLPath bool
}

// Retries in place: a CRM call holds no database connection while it
// waits, so a short wait here is cheaper than a redelivery, which counts
// toward MaxDeliver.
var crmRetry = vendorhttp.Backoff{Attempts: 3, Base: 250 * time.Millisecond, Max: 5 * time.Second}

// retryAfterPolicy reads a CRM's Retry-After. Without one, the rate window
// is a safe guess: HubSpot's limits reset within it.
func retryAfterPolicy(window time.Duration) vendorhttp.RetryAfterPolicy {
	return vendorhttp.RetryAfterPolicy{Default: window, Min: 100 * time.Millisecond, Max: time.Hour}
}

// NewClient builds the client every adapter of one process shares: its
// rate budget holds for the process whatever the consumer concurrency, and
// a 429 pauses every worker for its Retry-After.
func NewClient(cfg ClientConfig) *vendorhttp.Client {
	if cfg.Limit <= 0 {
		cfg.Limit = 100
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	return vendorhttp.New(vendorhttp.Config{
		Vendor:         cfg.Vendor,
		Timeout:        cfg.Timeout,
		MaxBody:        maxBody,
		Transport:      cfg.Transport,
		TracerProvider: cfg.TracerProvider,
		HideURLPath:    cfg.HideURLPath,
		Secrets:        cfg.Secrets,
		Limiter:        vendorhttp.NewLimiter(cfg.Limit, cfg.Window),
		MaxWait:        cfg.MaxWait,
		Retry:          crmRetry,
		RetryAfter:     retryAfterPolicy(cfg.Window),
		OnCall: func(c vendorhttp.Call) {
			m.Calls.WithLabelValues(cfg.Vendor, c.Outcome).Inc()
			if c.Sent {
				m.Seconds.WithLabelValues(cfg.Vendor).Observe(c.Duration.Seconds())
			}
		},
	})
}

// logCalls turns the client's attempts into sync-log records about object.
func logCalls(calls []vendorhttp.Call, object string) []Call {
	out := make([]Call, len(calls))
	for i, c := range calls {
		out[i] = Call{Op: c.Op, Object: object, Status: c.Status, Outcome: c.Outcome, Duration: c.Duration, Detail: c.Detail}
	}
	return out
}
