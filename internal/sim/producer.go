package sim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

// ProducerConfig configures a Producer. Zero fields take the defaults noted.
type ProducerConfig struct {
	// Brokers are bootstrap addresses (host:port).
	Brokers []string `yaml:"brokers"`
	// Compression: "none" (default), "gzip", "snappy", "lz4" or "zstd".
	Compression string `yaml:"compression"`
	// BatchSize (default 1000 messages) and BatchBytes (default 1 MiB)
	// bound one produce request per partition; BatchTimeout (default 5 ms)
	// is how long a partial batch waits for more messages.
	BatchSize    int           `yaml:"batch_size"`
	BatchBytes   int64         `yaml:"batch_bytes"`
	BatchTimeout time.Duration `yaml:"batch_timeout"`
	// Rate limits messages per second; 0 means unlimited (preload).
	Rate float64 `yaml:"rate"`
	// MaxAttempts per batch before Produce fails (default 10).
	MaxAttempts int `yaml:"max_attempts"`
	// UseMessageTime sets each record's Kafka timestamp to the message's
	// simulated time; by default the producer's clock is used (a simulated
	// time far in the past could make a real broker's time-based retention
	// delete the data at once).
	UseMessageTime bool `yaml:"use_message_time"`
}

// TopicCounts are what a Producer wrote to one topic, acknowledged by all
// in-sync replicas, and what failed.
type TopicCounts struct {
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"` // key + value
	Spans    int64 `json:"spans"`
	Failed   int64 `json:"failed"`
}

// Producer writes Messages to Kafka, each to its Topic, partitioned by a
// hash of its key (kafka.Hash: the FNV-1a partitioner of Sarama, which the
// Collector's kafkaexporter uses for partition_traces_by_id), so messages
// with the same key land on the same partition. It is safe for concurrent
// use.
type Producer struct {
	w     *kafka.Writer
	tr    *kafka.Transport
	pace  *pacer
	useTS bool

	mu     sync.Mutex
	counts map[string]TopicCounts
}

// NewProducer validates cfg and creates a producer. It does not connect
// until the first Produce.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: producer: brokers must be set", ErrInvalidConfig)
	}
	codec, err := compressionCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("%w: producer: rate must not be negative, got %v", ErrInvalidConfig, cfg.Rate)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = 1 << 20
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 5 * time.Millisecond
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	// An own transport: kafka-go's default one is shared by the whole
	// process and keeps idle connections (and goroutines) after Close.
	tr := &kafka.Transport{}
	p := &Producer{
		w: &kafka.Writer{
			Addr:         kafka.TCP(cfg.Brokers...),
			Balancer:     &kafka.Hash{},
			BatchSize:    cfg.BatchSize,
			BatchBytes:   cfg.BatchBytes,
			BatchTimeout: cfg.BatchTimeout,
			MaxAttempts:  cfg.MaxAttempts,
			RequiredAcks: kafka.RequireAll,
			Compression:  kafka.Compression(codec),
			Transport:    tr,
		},
		tr:     tr,
		useTS:  cfg.UseMessageTime,
		counts: map[string]TopicCounts{},
	}
	if cfg.Rate > 0 {
		p.pace = &pacer{rate: cfg.Rate}
	}
	return p, nil
}

func compressionCodec(name string) (compress.Compression, error) {
	switch name {
	case "", "none":
		return 0, nil
	case "gzip":
		return compress.Gzip, nil
	case "snappy":
		return compress.Snappy, nil
	case "lz4":
		return compress.Lz4, nil
	case "zstd":
		return compress.Zstd, nil
	}
	return 0, fmt.Errorf("%w: producer: unknown compression %q (want none, gzip, snappy, lz4 or zstd)", ErrInvalidConfig, name)
}

// Produce writes msgs and returns nil only when every one of them was
// acknowledged by all in-sync replicas. On error some messages may have
// been written: the counts say how many (nothing is dropped silently).
// With a rate limit, Produce blocks to keep to it.
func (p *Producer) Produce(ctx context.Context, msgs []Message) error {
	step := len(msgs)
	if p.pace != nil {
		// 50 ms worth of messages per write keeps the rate smooth.
		step = max(1, int(p.pace.rate/20))
	}
	for lo := 0; lo < len(msgs); lo += step {
		part := msgs[lo:min(lo+step, len(msgs))]
		if p.pace != nil {
			if err := p.pace.wait(ctx, len(part)); err != nil {
				return fmt.Errorf("produce: %w", err)
			}
		}
		if err := p.write(ctx, part); err != nil {
			return err
		}
	}
	return nil
}

func (p *Producer) write(ctx context.Context, msgs []Message) error {
	kms := make([]kafka.Message, len(msgs))
	// kafka-go sends a zero Time as timestamp 0 (1970), not as "now".
	now := time.Now()
	for i, m := range msgs {
		kms[i] = kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Time: now}
		if p.useTS {
			kms[i].Time = m.Time
		}
	}
	err := p.w.WriteMessages(ctx, kms...)
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
		p.count(msgs, nil)
		return nil
	case errors.As(err, &werrs) && len(werrs) == len(msgs):
		p.count(msgs, werrs)
		return fmt.Errorf("produce: %d of %d messages failed: %w", werrs.Count(), len(msgs), err)
	default:
		// Nothing was written (e.g. unknown topic, message too large,
		// context canceled before batching).
		p.count(msgs, allFailed(len(msgs), err))
		return fmt.Errorf("produce %d messages: %w", len(msgs), err)
	}
}

func allFailed(n int, err error) kafka.WriteErrors {
	werrs := make(kafka.WriteErrors, n)
	for i := range werrs {
		werrs[i] = err
	}
	return werrs
}

func (p *Producer) count(msgs []Message, werrs kafka.WriteErrors) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, m := range msgs {
		c := p.counts[m.Topic]
		if werrs != nil && werrs[i] != nil {
			c.Failed++
		} else {
			c.Messages++
			c.Bytes += int64(len(m.Key) + len(m.Value))
			c.Spans += int64(m.Spans)
		}
		p.counts[m.Topic] = c
	}
}

// Counts returns what was produced so far, per topic.
func (p *Producer) Counts() map[string]TopicCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

// Close flushes nothing (Produce is synchronous) and releases connections.
func (p *Producer) Close() error {
	err := p.w.Close()
	p.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close producer: %w", err)
	}
	return nil
}

// pacer spaces units at rate per second, allowing no burst beyond the
// current call. Wall-clock time is fine here: it paces delivery and never
// reaches the generated data.
type pacer struct {
	rate float64

	mu   sync.Mutex
	next time.Time
}

func (pc *pacer) wait(ctx context.Context, n int) error {
	pc.mu.Lock()
	now := time.Now()
	if pc.next.Before(now) {
		pc.next = now
	}
	due := pc.next
	pc.next = pc.next.Add(time.Duration(float64(n) / pc.rate * float64(time.Second)))
	pc.mu.Unlock()
	return sleepUntil(ctx, due)
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// CreateTopics creates topics with the given partitions (replication
// factor 1) and waits until every partition has a leader. Topics that
// already exist are left as they are.
func CreateTopics(ctx context.Context, brokers []string, partitions int, topics ...string) error {
	if partitions < 1 {
		return fmt.Errorf("%w: create topics: partitions must be at least 1, got %d", ErrInvalidConfig, partitions)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: 1})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for t, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err == nil && allLed(md, topics) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create topics %v: wait for leaders: %w (last error: %v)", topics, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func allLed(md *kafka.MetadataResponse, topics []string) bool {
	led := map[string]bool{}
	for _, t := range md.Topics {
		ok := t.Error == nil && len(t.Partitions) > 0
		for _, p := range t.Partitions {
			ok = ok && p.Error == nil && p.Leader.Host != ""
		}
		led[t.Name] = ok
	}
	for _, t := range topics {
		if !led[t] {
			return false
		}
	}
	return true
}
