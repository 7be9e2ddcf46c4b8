package query

import "github.com/prometheus/client_golang/prometheus"

// metrics of the query API (names agreed in the metrics brief). route is
// Gin's FullPath (a route template, bounded), never a raw URL.
type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	rateLimited  prometheus.Counter
	rows         *prometheus.CounterVec
	auditWritten prometheus.Counter
	auditFailed  prometheus.Counter
	auditLost    prometheus.Counter
	auditQueue   prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, queueLen func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_query_requests_total", Help: "API requests by route template and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentaudit_query_request_duration_seconds", Help: "API request duration by route template (exports: until the last row).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120},
		}, []string{"route"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_query_rate_limited_total", Help: "Requests answered 429 by the per-principal rate limit.",
		}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_query_rows_returned_total", Help: "Rows returned to clients by route template.",
		}, []string{"route"}),
		auditWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_query_audit_rows_written_total", Help: "query_audit rows ClickHouse acknowledged.",
		}),
		auditFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_query_audit_insert_errors_total", Help: "Failed query_audit inserts (retried).",
		}),
		auditLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_query_audit_rows_lost_total", Help: "query_audit rows given up at shutdown because ClickHouse kept failing.",
		}),
		auditQueue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agentaudit_query_audit_queue_length", Help: "query_audit records waiting for their insert.",
		}, queueLen),
	}
	reg.MustRegister(m.requests, m.duration, m.rateLimited, m.rows, m.auditWritten, m.auditFailed, m.auditLost, m.auditQueue)
	return m
}
