package metrics

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// SmokeCollector exports lr_smoke_last_success_timestamp_seconds{channel}
// from readiness.smoke_results, which `launchready smoke` writes: a
// one-off command cannot be scraped, so the long-running service that owns
// the alert channels reads the results at each scrape. Before the first
// smoke run the table does not exist and the metric has no series (the
// LaunchReadySmokeStale rule treats that as never passed).
type SmokeCollector struct {
	Pool *pgxpool.Pool
	desc *prometheus.Desc
}

// NewSmokeCollector reads pool.
func NewSmokeCollector(pool *pgxpool.Pool) *SmokeCollector {
	return &SmokeCollector{Pool: pool, desc: prometheus.NewDesc("lr_smoke_last_success_timestamp_seconds",
		"Unix time of the last launchready smoke run in which the channel confirmed delivery.", []string{"channel"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *SmokeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *SmokeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := c.Pool.Query(ctx, `SELECT channel, extract(epoch FROM max(finished_at))::float8 FROM readiness.smoke_results WHERE ok GROUP BY channel`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var channel string
		var at float64
		if rows.Scan(&channel, &at) == nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, at, channel)
		}
	}
}
