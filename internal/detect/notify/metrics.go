package notify

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics follow the agreed names (briefs/metrics.md); the endpoint label is
// the configured endpoint name, so label values are bounded by the config.
type metrics struct {
	sent     *prometheus.CounterVec   // endpoint, kind
	attempts *prometheus.CounterVec   // endpoint, kind, outcome
	errors   *prometheus.CounterVec   // endpoint, reason
	dropped  *prometheus.CounterVec   // endpoint, reason
	latency  *prometheus.HistogramVec // endpoint
	queue    *prometheus.GaugeVec     // endpoint
	disabled *prometheus.GaugeVec     // endpoint
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_webhook_sent_total", Help: "Webhook messages delivered (2xx).",
		}, []string{"endpoint", "kind"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_webhook_attempts_total", Help: "Delivery attempts by outcome: success, retry (will be retried), failed (retries exhausted), disabled (410 Gone).",
		}, []string{"endpoint", "kind", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_webhook_errors_total", Help: "Failed attempts by reason: timeout, connect, status_4xx, status_5xx, status_429, status_410, other.",
		}, []string{"endpoint", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_webhook_dropped_total", Help: "Messages given up or not queued: retries_exhausted, endpoint_disabled, queue_full (kept in the outbox, reloaded later), revocation_deduplicated.",
		}, []string{"endpoint", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentaudit_webhook_latency_seconds", Help: "Duration of one delivery attempt (request sent to response headers).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentaudit_webhook_queue_length", Help: "Pending deliveries held in memory (queued or in flight).",
		}, []string{"endpoint"}),
		disabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentaudit_webhook_endpoint_disabled", Help: "1 when the endpoint is disabled (config or 410 Gone).",
		}, []string{"endpoint"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sent, m.attempts, m.errors, m.dropped, m.latency, m.queue, m.disabled} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register webhook metrics: %w", err)
			}
		}
	}
	return m, nil
}
