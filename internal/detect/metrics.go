package detect

import "github.com/prometheus/client_golang/prometheus"

// metrics of the detector (names agreed in the metrics brief). Label values
// are bounded: topic, outcome, rule, severity, state, partition — never
// tenant, agent, token or event ids.
type metrics struct {
	events      *prometheus.CounterVec // topic, outcome
	ruleMatches *prometheus.CounterVec // rule, severity
	detections  *prometheus.CounterVec // rule, severity
	suppressed  *prometheus.CounterVec // rule
	stateActors *prometheus.GaugeVec   // state
	evictions   *prometheus.CounterVec // state
	lag         *prometheus.GaugeVec   // topic, partition
	latency     prometheus.Histogram
	store       prometheus.Histogram
	actErrors   prometheus.Counter
	insertErrs  prometheus.Counter
	rewarms     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_detector_events_total", Help: "Kafka messages the detector handled, by topic and outcome (processed, invalid, skipped).",
		}, []string{"topic", "outcome"}),
		ruleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_detector_rule_matches_total", Help: "Rule matches, suppressed repeats included.",
		}, []string{"rule", "severity"}),
		detections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_detector_detections_total", Help: "New detections stored in ClickHouse.",
		}, []string{"rule", "severity"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_detector_suppressed_total", Help: "Matches folded into an open detection (suppressed_count).",
		}, []string{"rule"}),
		stateActors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentaudit_detector_state_actors", Help: "Entries in the detector's in-memory state, by state.",
		}, []string{"state"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_detector_state_evictions_total", Help: "State entries evicted because a cap was reached.",
		}, []string{"state"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentaudit_detector_consumer_lag_messages", Help: "Messages behind the partition's high watermark after the last fetch.",
		}, []string{"topic", "partition"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentaudit_detector_detect_latency_seconds", Help: "From the triggering message's Kafka timestamp to the detection stored in ClickHouse.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		store: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentaudit_detector_store_duration_seconds", Help: "Storing one batch of detections: the detections insert and the webhook outbox rows written beside it, until both are acknowledged (retries included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		actErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_detector_action_errors_total", Help: "Failed hand-overs to the action sink (retried).",
		}),
		insertErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_detector_insert_errors_total", Help: "Failed inserts of detections (retried).",
		}),
		rewarms: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_detector_rewarms_total", Help: "Warm-ups from ClickHouse for partitions taken over from another instance.",
		}),
	}
	reg.MustRegister(m.events, m.ruleMatches, m.detections, m.suppressed, m.stateActors, m.evictions, m.lag, m.latency, m.store, m.actErrors, m.insertErrs, m.rewarms)
	for _, s := range stateNames {
		m.evictions.WithLabelValues(s)
		m.stateActors.WithLabelValues(s)
	}
	return m
}
