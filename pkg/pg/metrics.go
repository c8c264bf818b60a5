package pg

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// poolCollector reports a pool's connection use at each scrape: whether
// work waits for a connection is invisible from Postgres, which only sees
// the sessions it has.
type poolCollector struct {
	pool                                      *pgxpool.Pool
	acquires, waited, waitSeconds, conns, max *prometheus.Desc
}

// RegisterPoolMetrics exports pool's statistics on reg:
// lr_db_pool_acquires_total, lr_db_pool_acquires_waited_total (acquires
// that found no idle connection), lr_db_pool_acquire_seconds_total (time
// spent acquiring, waits included), lr_db_pool_connections{state} and
// lr_db_pool_max_connections, each labelled pool=name (services that share a
// registry in one process keep their own).
func RegisterPoolMetrics(reg prometheus.Registerer, pool *pgxpool.Pool, name string) error {
	l := prometheus.Labels{"pool": name}
	return reg.Register(&poolCollector{
		pool:        pool,
		acquires:    prometheus.NewDesc("lr_db_pool_acquires_total", "Connections taken from the pool.", nil, l),
		waited:      prometheus.NewDesc("lr_db_pool_acquires_waited_total", "Acquires that found no idle connection and waited for one to be released or opened.", nil, l),
		waitSeconds: prometheus.NewDesc("lr_db_pool_acquire_seconds_total", "Time spent acquiring connections, waits included.", nil, l),
		conns:       prometheus.NewDesc("lr_db_pool_connections", "Pool connections by state: idle, in_use, opening.", []string{"state"}, l),
		max:         prometheus.NewDesc("lr_db_pool_max_connections", "The pool's size limit.", nil, l),
	})
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquires, c.waited, c.waitSeconds, c.conns, c.max} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.acquires, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.waited, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.waitSeconds, prometheus.CounterValue, s.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.AcquiredConns()), "in_use")
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(s.ConstructingConns()), "opening")
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(s.MaxConns()))
}
