package ingest

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/consumer"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/retry"
)

// Config of the ingest service.
type Config struct {
	consumer.Config  `yaml:",inline"`
	DeadLetterSuffix string             `yaml:"dead_letter_suffix"`
	Spans            event.SpanOptions  `yaml:"spans"`
	Events           event.EventOptions `yaml:"events"`
	Batch            BatchConfig        `yaml:"batch"`
	Retry            RetryConfig        `yaml:"retry"`
	ShutdownTimeout  time.Duration      `yaml:"shutdown_timeout"`
	LagInterval      time.Duration      `yaml:"lag_interval"`
}

// BatchConfig: a partition's batch is flushed when any limit is reached.
type BatchConfig struct {
	MaxRows  int           `yaml:"max_rows"`
	MaxBytes int           `yaml:"max_bytes"`
	MaxAge   time.Duration `yaml:"max_age"`
	// EventsMaxAge replaces MaxAge for the audit events topic: audit events
	// are the evidence, and their age bounds how soon they are queryable.
	// Under load batches fill by rows or bytes long before. With sealing
	// on, a batch ends by the integrity checkpoint clock instead (in time
	// for the next checkpoint), see worker.sealDeadline.
	EventsMaxAge time.Duration `yaml:"events_max_age"`
}

// RetryConfig: exponential backoff with full jitter for ClickHouse and
// dead-letter writes. They are retried until they succeed or the partition
// is given up (rebalance, shutdown); offsets never move past unwritten rows.
type RetryConfig = retry.Config

// RegisterFlagsWithPrefix binds the config to flags (prefix e.g. "ingest.").
func (c *Config) RegisterFlagsWithPrefix(p string, fs *flag.FlagSet) {
	c.Config.RegisterFlagsWithPrefix(p, fs, consumer.Usage{
		GroupDefault: "agentaudit-ingest",
		Group:        "consumer group",
		SpansTopic:   "topic of OTLP ExportTraceServiceRequest messages (as the Collector's kafkaexporter writes them); empty disables",
		EventsTopic:  "topic of JSON audit events; empty disables",
	})
	fs.StringVar(&c.DeadLetterSuffix, p+"kafka.dead-letter-suffix", "_dlq", "dead-letter topic = source topic + this suffix")
	c.Spans.RegisterFlagsWithPrefix(p+"spans.", fs)
	c.Events.RegisterFlagsWithPrefix(p+"events.", fs)
	fs.IntVar(&c.Batch.MaxRows, p+"batch.max-rows", 100_000, "end a partition's batch (one INSERT, one part per table partition) at this many rows")
	fs.IntVar(&c.Batch.MaxBytes, p+"batch.max-bytes", 16<<20, "end a partition's batch at this many message bytes (ingest streams a batch in blocks of 1 MiB, so this bounds the part size and ClickHouse's squashing memory per insert, not ingest's memory)")
	fs.DurationVar(&c.Batch.MaxAge, p+"batch.max-age", time.Second, "flush a partition's batch this long after its first message")
	fs.DurationVar(&c.Batch.EventsMaxAge, p+"batch.events-max-age", 250*time.Millisecond, "batch.max-age for the audit events topic (how soon an event is queryable at low traffic; with -integrity.enabled batches end in time for the next checkpoint instead)")
	fs.DurationVar(&c.Retry.MinBackoff, p+"retry.min-backoff", 100*time.Millisecond, "first retry backoff")
	fs.DurationVar(&c.Retry.MaxBackoff, p+"retry.max-backoff", 10*time.Second, "largest retry backoff")
	fs.DurationVar(&c.ShutdownTimeout, p+"shutdown-timeout", 15*time.Second, "time allowed to flush and commit on shutdown or rebalance")
	fs.DurationVar(&c.LagInterval, p+"kafka.lag-interval", 15*time.Second, "how often to measure the group's lag (high watermark - committed offset) per partition")
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	add := func(field string, err error) { errs = append(errs, config.Field(field, err)) }
	positive := func(field string, v int64) {
		if v <= 0 {
			add(field, fmt.Errorf("%w: must be > 0", config.ErrInvalid))
		}
	}
	if err := c.Config.Check(); err != nil {
		errs = append(errs, err)
	}
	if c.SpansTopic == "" && c.EventsTopic == "" {
		add("spans_topic", fmt.Errorf("%w: at least one of spans_topic and events_topic", config.ErrRequired))
	}
	if c.DeadLetterSuffix == "" {
		add("dead_letter_suffix", config.ErrRequired)
	}
	positive("batch.max_rows", int64(c.Batch.MaxRows))
	positive("batch.max_bytes", int64(c.Batch.MaxBytes))
	positive("batch.max_age", int64(c.Batch.MaxAge))
	positive("batch.events_max_age", int64(c.Batch.EventsMaxAge))
	positive("retry.min_backoff", int64(c.Retry.MinBackoff))
	if c.Retry.MaxBackoff < c.Retry.MinBackoff {
		add("retry.max_backoff", fmt.Errorf("%w: must be >= min_backoff", config.ErrInvalid))
	}
	positive("shutdown_timeout", int64(c.ShutdownTimeout))
	positive("kafka.lag_interval", int64(c.LagInterval))
	return errors.Join(errs...)
}
