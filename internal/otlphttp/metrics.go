package otlphttp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/event"
)

// metrics of the receiver. Label values are bounded: HTTP status codes the
// receiver writes, two outcomes, the event.Reason codes.
type metrics struct {
	requests      *prometheus.CounterVec // code
	spans         *prometheus.CounterVec // outcome: accepted, rejected
	rejected      *prometheus.CounterVec // reason
	published     prometheus.Counter
	publishErrors prometheus.Counter
	duration      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_otlphttp_requests_total", Help: "OTLP/HTTP requests answered, by HTTP status code.",
		}, []string{"code"}),
		spans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_otlphttp_spans_total", Help: "Spans of answered export requests: accepted (published to Kafka) or rejected (reported in partial_success). Spans of requests answered 4xx/5xx are in neither.",
		}, []string{"outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_otlphttp_rejected_traces_total", Help: "Traces rejected in partial_success, by reason.",
		}, []string{"reason"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_otlphttp_messages_published_total", Help: "Kafka messages (one per trace) acknowledged by the broker.",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_otlphttp_publish_errors_total", Help: "Kafka publishes that failed with a retryable error (answered 503).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentaudit_otlphttp_request_duration_seconds", Help: "Time to answer an OTLP/HTTP request, Kafka publish included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
	}
	for _, o := range []string{outcomeAccepted, outcomeRejected} {
		m.spans.WithLabelValues(o)
	}
	for _, r := range rejectReasons() {
		m.rejected.WithLabelValues(string(r))
	}
	reg.MustRegister(m.requests, m.spans, m.rejected, m.published, m.publishErrors, m.duration)
	return m
}

const (
	outcomeAccepted = "accepted"
	outcomeRejected = "rejected"
)

// rejectReasons are the reasons a trace can be rejected for: those of
// event.DecodeSpans (event.Reasons minus the audit-event ones).
func rejectReasons() []event.Reason {
	var out []event.Reason
	for _, r := range event.Reasons() {
		if r != event.ReasonSchemaViolation && r != event.ReasonInvalidJSON {
			out = append(out, r)
		}
	}
	return out
}
