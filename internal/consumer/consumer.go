// Package consumer holds the Kafka consumer settings that ingest and the
// detector share: the same flags (under their own prefixes), the same
// checks and the same consumer-group setup.
package consumer

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/config"
)

// Config is how a service consumes the spans and audit events topics. It is
// embedded inline in each service's config, so its YAML keys and flags sit
// beside the service's own.
type Config struct {
	Brokers           config.StringSlice `yaml:"brokers"`
	GroupID           string             `yaml:"group_id"`
	SpansTopic        string             `yaml:"spans_topic"`
	SpansEncoding     string             `yaml:"spans_encoding"`
	EventsTopic       string             `yaml:"events_topic"`
	FetchMaxBytes     int                `yaml:"fetch_max_bytes"`
	SessionTimeout    time.Duration      `yaml:"session_timeout"`
	HeartbeatInterval time.Duration      `yaml:"heartbeat_interval"`
}

// Usage is what differs between the services' flags: the group's default
// and the help of the group and topic flags.
type Usage struct {
	GroupDefault, Group, SpansTopic, EventsTopic string
}

// RegisterFlagsWithPrefix binds the settings to flags p+"kafka.…".
func (c *Config) RegisterFlagsWithPrefix(p string, fs *flag.FlagSet, u Usage) {
	config.StringSliceVar(fs, (*[]string)(&c.Brokers), p+"kafka.brokers", []string{"127.0.0.1:9092"}, "Kafka bootstrap brokers")
	fs.StringVar(&c.GroupID, p+"kafka.group-id", u.GroupDefault, u.Group)
	fs.StringVar(&c.SpansTopic, p+"kafka.spans-topic", "otlp_spans", u.SpansTopic)
	fs.StringVar(&c.SpansEncoding, p+"kafka.spans-encoding", "otlp_proto", "encoding of the spans topic: otlp_proto or otlp_json")
	fs.StringVar(&c.EventsTopic, p+"kafka.events-topic", "agent_audit_events", u.EventsTopic)
	fs.IntVar(&c.FetchMaxBytes, p+"kafka.fetch-max-bytes", 4<<20, "max bytes per fetch request per partition")
	fs.DurationVar(&c.SessionTimeout, p+"kafka.session-timeout", 20*time.Second, "consumer group session timeout")
	fs.DurationVar(&c.HeartbeatInterval, p+"kafka.heartbeat-interval", 2*time.Second, "consumer group heartbeat interval")
}

// Check reports the settings' errors with their field paths. (Not named
// Validate: the embedding config's own Validate calls it.)
func (c *Config) Check() error {
	var errs []error
	add := func(field string, err error) { errs = append(errs, config.Field(field, err)) }
	if len(c.Brokers) == 0 {
		add("brokers", config.ErrRequired)
	}
	if c.GroupID == "" {
		add("group_id", config.ErrRequired)
	}
	if c.SpansEncoding != "otlp_proto" && c.SpansEncoding != "otlp_json" {
		add("spans_encoding", fmt.Errorf("%w: %q, want otlp_proto or otlp_json", config.ErrInvalid, c.SpansEncoding))
	}
	if c.FetchMaxBytes <= 0 {
		add("fetch_max_bytes", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	return errors.Join(errs...)
}

// NewGroup joins the consumer group on topics, from the first offset when
// the group has none committed; kafka-go's own errors go to log.
func (c *Config) NewGroup(topics []string, log *slog.Logger) (*kafka.ConsumerGroup, error) {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.GroupID,
		Brokers:           c.Brokers,
		Topics:            topics,
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    c.SessionTimeout,
		RebalanceTimeout:  c.SessionTimeout,
		HeartbeatInterval: c.HeartbeatInterval,
		JoinGroupBackoff:  time.Second,
		ErrorLogger:       kafka.LoggerFunc(func(msg string, args ...any) { log.Warn("kafka consumer group", "detail", fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer group: %w", err)
	}
	return group, nil
}
