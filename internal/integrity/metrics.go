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
}

// Instrument registers the integrity metrics on reg; every Log opened with
// s afterwards records into them:
//
//   - agentaudit_integrity_leaves_appended_total
//   - agentaudit_integrity_checkpoints_signed_total
//   - agentaudit_integrity_append_duration_seconds (one Append: hashing and
//     the merkle_leaves insert)
//   - agentaudit_integrity_proof_lag_seconds: per appended batch, from the
//     end of its Append (the events are stored and sealed) to the signed
//     checkpoint that makes them provable.
func (s *Signer) Instrument(reg prometheus.Registerer) error {
	m := &metrics{
		leaves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_integrity_leaves_appended_total", Help: "Audit events sealed as Merkle leaves."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_integrity_checkpoints_signed_total", Help: "Signed checkpoints stored."}),
		appendSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentaudit_integrity_append_duration_seconds", Help: "Duration of one Append (hashing and insert).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10)}),
		proofLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "agentaudit_integrity_proof_lag_seconds", Help: "Time from sealing a batch of events to the checkpoint that makes them provable.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 5, 10, 30}}),
	}
	for _, c := range []prometheus.Collector{m.leaves, m.checkpoints, m.appendSecs, m.proofLag} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	s.metrics = m
	return nil
}
