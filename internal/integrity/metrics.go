package integrity

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the logs sharing one Signer (all partitions of an ingest
// instance). Label values are bounded: no log, tenant or event ids.
type metrics struct {
	leaves      prometheus.Counter
	checkpoints prometheus.Counter
	appendSecs  prometheus.Histogram
	proofLag    prometheus.Histogram
	// tickFailures counts Checkpointer ticks whose leaves or checkpoints
	// were not stored (retried on the next tick).
	tickFailures prometheus.Counter
}

// Instrument registers the integrity metrics on reg; every Log opened with
// s afterwards records into them:
//
//   - agentaudit_integrity_leaves_appended_total
//   - agentaudit_integrity_checkpoints_signed_total
//   - agentaudit_integrity_append_duration_seconds: one merkle_leaves
//     insert (observed once per log it extends)
//   - agentaudit_integrity_proof_lag_seconds: per sealed event, from the
//     time it was written to Kafka (Sealed.Written; the end of its Append
//     when unknown) to the stored signed checkpoint that makes it provable.
//   - agentaudit_integrity_tick_failures_total: Checkpointer ticks that did
//     not store their leaves or checkpoints (the next tick retries).
func (s *Signer) Instrument(reg prometheus.Registerer) error {
	m := &metrics{
		leaves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_integrity_leaves_appended_total", Help: "Audit events sealed as Merkle leaves."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_integrity_checkpoints_signed_total", Help: "Signed checkpoints stored."}),
		appendSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentaudit_integrity_append_duration_seconds", Help: "Duration of one merkle_leaves insert, observed once per log it extends.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10)}),
		proofLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentaudit_integrity_proof_lag_seconds", Help: "Per audit event, time from its write to Kafka to the stored signed checkpoint that makes it provable.",
			Buckets: []float64{0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 2, 3, 5, 10, 30}}),
		tickFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_integrity_tick_failures_total", Help: "Checkpointer ticks that failed to store leaves or checkpoints (retried on the next tick)."}),
	}
	for _, c := range []prometheus.Collector{m.leaves, m.checkpoints, m.appendSecs, m.proofLag, m.tickFailures} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	s.metrics = m
	return nil
}
