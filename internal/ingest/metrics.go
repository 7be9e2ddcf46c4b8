package ingest

import "github.com/prometheus/client_golang/prometheus"

// metrics of the ingest service. Label values are bounded: topic, table,
// outcome, reason codes, partition numbers — never tenant, agent or ids.
type metrics struct {
	messages     *prometheus.CounterVec   // topic, outcome
	bytes        *prometheus.CounterVec   // topic
	rows         *prometheus.CounterVec   // table
	batchRows    *prometheus.HistogramVec // table
	flushSeconds *prometheus.HistogramVec // table
	retries      *prometheus.CounterVec   // table, stage
	deadLetters  *prometheus.CounterVec   // topic, reason
	lag          *prometheus.GaugeVec     // topic, partition
	commits      *prometheus.CounterVec   // topic, outcome
	skipped      *prometheus.CounterVec   // table
	unknown      prometheus.Counter
	generations  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_ingest_messages_total", Help: "Kafka messages handled, by topic and outcome (stored, dead_lettered).",
		}, []string{"topic", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_ingest_message_bytes_total", Help: "Bytes of Kafka message values handled.",
		}, []string{"topic"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_ingest_rows_written_total", Help: "Rows acknowledged by ClickHouse.",
		}, []string{"table"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentaudit_ingest_batch_rows", Help: "Rows per insert.",
			Buckets: prometheus.ExponentialBuckets(10, 4, 8),
		}, []string{"table"}),
		flushSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "agentaudit_ingest_flush_duration_seconds", Help: "Time to flush a batch (dead letters, insert, sealing into the integrity log when on, commit), retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"table"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_ingest_retries_total", Help: "Retried operations by table and stage (insert, dead_letter, recover).",
		}, []string{"table", "stage"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_ingest_dead_letters_total", Help: "Messages sent to the dead-letter topic, by reason.",
		}, []string{"topic", "reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "agentaudit_ingest_consumer_lag_messages", Help: "Messages between the partition's high watermark and the group's committed offset, measured every lag interval by each instance for every partition (aggregate with max by (topic, partition)); it grows while a partition is stalled.",
		}, []string{"topic", "partition"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_ingest_commits_total", Help: "Offset commits by outcome (ok, failed).",
		}, []string{"topic", "outcome"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_ingest_redelivered_rows_skipped_total", Help: "Redelivered rows not written again because ClickHouse already had them.",
		}, []string{"table"}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_ingest_unknown_tenant_spans_total", Help: "Spans stored under the unknown tenant because they named none.",
		}),
		generations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_ingest_group_generations_total", Help: "Consumer group generations joined (rebalances + 1).",
		}),
	}
	reg.MustRegister(m.messages, m.bytes, m.rows, m.batchRows, m.flushSeconds, m.retries, m.deadLetters, m.lag, m.commits, m.skipped, m.unknown, m.generations)
	return m
}
