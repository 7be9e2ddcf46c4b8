package detect

import (
	"errors"
	"flag"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/consumer"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/retry"
)

// Config of the detector service.
type Config struct {
	consumer.Config `yaml:",inline"`
	Spans           event.SpanOptions  `yaml:"spans"`
	Events          event.EventOptions `yaml:"events"`
	RulesFile       string             `yaml:"rules_file"`
	State           StateCaps          `yaml:"state"`
	WarmLookback    time.Duration      `yaml:"warm_lookback"`
	InsertMaxRows   int                `yaml:"insert_max_rows"`
	InsertNice      int                `yaml:"insert_nice"`
	CommitInterval  time.Duration      `yaml:"commit_interval"`
	Retry           RetryConfig        `yaml:"retry"`
	FetchMaxWait    time.Duration      `yaml:"fetch_max_wait"`
	FetchMinBytes   int                `yaml:"fetch_min_bytes"`
	// The spans topic is fetched less eagerly: spans only feed the
	// minute-window token-rate rule (joined to the events of their trace),
	// while every audit event may be an attack. Waiting longer for larger
	// fetches costs the detector and the broker less per message and leaves
	// the CPU to the events' partitions in a burst.
	SpansFetchMaxWait  time.Duration `yaml:"spans_fetch_max_wait"`
	SpansFetchMinBytes int           `yaml:"spans_fetch_min_bytes"`
	GC                 GCConfig      `yaml:"gc"`
	ShutdownTimeout    time.Duration `yaml:"shutdown_timeout"`
}

// RetryConfig: exponential backoff with full jitter for ClickHouse inserts
// and the action sink; both are retried until they succeed or the detector
// stops, and offsets never move past an unstored or unacted detection.
type RetryConfig = retry.Config

// GCConfig tunes the Go garbage collector of cmd/detector's process (the
// all-in-one, which runs every service in one process, keeps Go's
// defaults). The
// detector keeps a large, long-lived state (actors, traces, open
// detections) and allocates per message: with Go's default (GOGC=100) the
// collector marks that whole state again every time the heap grows by its
// size, which costs a large share of the CPU per message. A higher
// percentage collects less often; the soft memory limit keeps the heap
// bounded all the same.
type GCConfig struct {
	Percent     int   `yaml:"percent"`
	MemoryLimit int64 `yaml:"memory_limit"`
}

// Apply sets the process's GC percentage and soft memory limit, except
// where the environment (GOGC, GOMEMLIMIT) sets them: the operator's
// explicit choice wins. It returns a function that restores the previous
// settings.
func (g GCConfig) Apply(getenv func(string) string) (restore func()) {
	oldPercent, oldLimit := -2, int64(-1)
	if getenv("GOGC") == "" && g.Percent > 0 {
		oldPercent = debug.SetGCPercent(g.Percent)
	}
	if getenv("GOMEMLIMIT") == "" && g.MemoryLimit > 0 {
		oldLimit = debug.SetMemoryLimit(g.MemoryLimit)
	}
	return func() {
		if oldPercent != -2 {
			debug.SetGCPercent(oldPercent)
		}
		if oldLimit >= 0 {
			debug.SetMemoryLimit(oldLimit)
		}
	}
}

// RegisterFlagsWithPrefix binds the config to flags (prefix e.g. "detect.").
func (c *Config) RegisterFlagsWithPrefix(p string, fs *flag.FlagSet) {
	c.Config.RegisterFlagsWithPrefix(p, fs, consumer.Usage{
		GroupDefault: "agentaudit-detector",
		Group:        "consumer group (its own: the detector reads every message ingest reads)",
		SpansTopic:   "topic of OTLP trace messages; empty disables token-rate rules",
		EventsTopic:  "topic of JSON audit events",
	})
	c.Spans.RegisterFlagsWithPrefix(p+"spans.", fs)
	c.Events.RegisterFlagsWithPrefix(p+"events.", fs)
	fs.StringVar(&c.RulesFile, p+"rules-file", "", "YAML rule file over the embedded defaults (empty: defaults; see internal/detect/rules.yaml)")
	fs.IntVar(&c.State.Agents, p+"state.max-agents", 200_000, "agents kept in memory (least recently seen evicted)")
	fs.IntVar(&c.State.Tokens, p+"state.max-tokens", 500_000, "tokens kept in memory")
	fs.IntVar(&c.State.Parents, p+"state.max-parents", 100_000, "parent identities kept in memory")
	fs.IntVar(&c.State.Traces, p+"state.max-traces", 200_000, "recent traces kept to join spans to audit events")
	fs.IntVar(&c.State.Suppressions, p+"state.max-suppressions", 100_000, "open detections kept for suppression")
	fs.IntVar(&c.State.Revoked, p+"state.max-revoked", 1_000_000, "revoked tokens kept in memory")
	fs.DurationVar(&c.WarmLookback, p+"warm-lookback", 7*24*time.Hour, "how far back (before the latest stored event) state is warmed from ClickHouse at start; 0 disables warming")
	fs.IntVar(&c.InsertMaxRows, p+"insert.max-rows", 1000, "most detection rows per insert")
	fs.IntVar(&c.InsertNice, p+"insert.nice", -10, "Linux nice value ClickHouse gives the threads of the detection and outbox inserts (its os_thread_priority setting: lower is more CPU; ClickHouse ignores it without CAP_SYS_NICE), -20..19; they are a few rows on the way to every webhook, ahead of bulk inserts and merges; 0: no change")
	fs.DurationVar(&c.CommitInterval, p+"commit-interval", time.Second, "how often consumed offsets are committed (only past stored and acted detections)")
	fs.DurationVar(&c.Retry.MinBackoff, p+"retry.min-backoff", 50*time.Millisecond, "first retry backoff")
	fs.DurationVar(&c.Retry.MaxBackoff, p+"retry.max-backoff", 5*time.Second, "largest retry backoff")
	fs.DurationVar(&c.FetchMaxWait, p+"kafka.fetch-max-wait", 5*time.Millisecond, "longest an audit-event fetch waits at the broker for new messages: bounds detection latency (in bench-detect, 5 ms rather than 10 ms matched rules ~2.5 ms sooner at the median; the p99 moved within the machine's noise) at the cost of that many idle fetches per partition")
	fs.IntVar(&c.FetchMinBytes, p+"kafka.fetch-min-bytes", 64<<10, "bytes a fetch waits for at the broker, at most fetch-max-wait: fewer, larger fetches on a busy partition (1: return as soon as anything is there)")
	fs.DurationVar(&c.SpansFetchMaxWait, p+"kafka.spans-fetch-max-wait", 100*time.Millisecond, "fetch-max-wait for the spans topic (spans only feed the token-rate rule)")
	fs.IntVar(&c.SpansFetchMinBytes, p+"kafka.spans-fetch-min-bytes", 1<<20, "fetch-min-bytes for the spans topic")
	fs.IntVar(&c.GC.Percent, p+"gc.percent", 200, "Go GC target percentage (GOGC) of the detector process (cmd/detector only); the environment's GOGC wins when set")
	fs.Int64Var(&c.GC.MemoryLimit, p+"gc.memory-limit", 1<<30, "Go soft memory limit in bytes (GOMEMLIMIT): the GC works harder as the heap nears it, which bounds the memory gc.percent lets grow; the environment's GOMEMLIMIT wins when set; 0: none")
	fs.DurationVar(&c.ShutdownTimeout, p+"shutdown-timeout", 15*time.Second, "time allowed to store, act and commit on shutdown")
}

// Validate reports configuration errors; the rule file is loaded and
// validated too.
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
	if c.EventsTopic == "" {
		add("events_topic", config.ErrRequired)
	}
	if _, err := LoadRules(c.RulesFile); err != nil {
		add("rules_file", err)
	}
	positive("state.agents", int64(c.State.Agents))
	positive("state.tokens", int64(c.State.Tokens))
	positive("state.parents", int64(c.State.Parents))
	positive("state.traces", int64(c.State.Traces))
	positive("state.suppressions", int64(c.State.Suppressions))
	positive("state.revoked", int64(c.State.Revoked))
	if c.WarmLookback < 0 {
		add("warm_lookback", fmt.Errorf("%w: must not be negative", config.ErrInvalid))
	}
	positive("insert_max_rows", int64(c.InsertMaxRows))
	if c.InsertNice < -20 || c.InsertNice > 19 {
		add("insert_nice", fmt.Errorf("%w: %d is not a nice value (-20..19)", config.ErrInvalid, c.InsertNice))
	}
	positive("commit_interval", int64(c.CommitInterval))
	positive("retry.min_backoff", int64(c.Retry.MinBackoff))
	if c.Retry.MaxBackoff < c.Retry.MinBackoff {
		add("retry.max_backoff", fmt.Errorf("%w: must be >= min_backoff", config.ErrInvalid))
	}
	positive("fetch_max_wait", int64(c.FetchMaxWait))
	positive("fetch_min_bytes", int64(c.FetchMinBytes))
	if c.FetchMinBytes > c.FetchMaxBytes {
		add("fetch_min_bytes", fmt.Errorf("%w: must be <= fetch_max_bytes", config.ErrInvalid))
	}
	positive("spans_fetch_max_wait", int64(c.SpansFetchMaxWait))
	positive("spans_fetch_min_bytes", int64(c.SpansFetchMinBytes))
	if c.SpansFetchMinBytes > c.FetchMaxBytes {
		add("spans_fetch_min_bytes", fmt.Errorf("%w: must be <= fetch_max_bytes", config.ErrInvalid))
	}
	positive("gc.percent", int64(c.GC.Percent))
	if c.GC.MemoryLimit < 0 {
		add("gc.memory_limit", fmt.Errorf("%w: must not be negative", config.ErrInvalid))
	}
	positive("shutdown_timeout", int64(c.ShutdownTimeout))
	return errors.Join(errs...)
}
