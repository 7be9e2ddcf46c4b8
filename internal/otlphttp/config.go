package otlphttp

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/event"
)

// DefaultListenAddress is the OTLP/HTTP default port (4318) on loopback: an
// unauthenticated receiver is not exposed unless asked for.
const DefaultListenAddress = "127.0.0.1:4318"

// Config of the OTLP/HTTP receiver.
type Config struct {
	// ListenAddress is host:port to serve POST /v1/traces on; port 0 picks
	// a free port; empty disables the receiver (Run returns at once).
	ListenAddress string `yaml:"listen_address"`
	// Topic is the Kafka topic the traces are published to.
	Topic string `yaml:"topic"`
	// Encoding of the published messages, otlp_proto or otlp_json, as the
	// Collector's kafkaexporter names them. It must be the encoding ingest
	// reads the topic with (ingest's spans_encoding).
	Encoding string `yaml:"encoding"`
	// MaxRequestBytes bounds a request body, both as received and after
	// decompression (a gzip bomb is cut off at this size).
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// MaxConcurrentRequests bounds the requests handled at once; more are
	// answered 503 with Retry-After. Each can hold several times
	// MaxRequestBytes of memory while it is decoded and split.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// PublishTimeout bounds the Kafka write of one request; when it expires
	// the client gets 503 and retries.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// ShutdownTimeout bounds the graceful shutdown of Run: requests in
	// flight may finish their publish within it.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// RegisterFlagsWithPrefix binds the config to flags (prefix e.g. "otlphttp.")
// and sets the defaults.
func (c *Config) RegisterFlagsWithPrefix(p string, fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddress, p+"listen-address", DefaultListenAddress, "OTLP/HTTP receiver address (host:port) serving POST /v1/traces; empty disables the receiver")
	fs.StringVar(&c.Topic, p+"kafka.topic", "otlp_spans", "Kafka topic the received traces are published to, one message per trace keyed by the hex trace id")
	fs.StringVar(&c.Encoding, p+"kafka.encoding", string(event.EncodingProto), "encoding of the published messages: otlp_proto or otlp_json (must match what ingest reads)")
	fs.IntVar(&c.MaxRequestBytes, p+"max-request-bytes", 16<<20, "largest accepted request body in bytes, also after decompression")
	fs.IntVar(&c.MaxConcurrentRequests, p+"max-concurrent-requests", 16, "requests handled at once; more are answered 503 with Retry-After")
	fs.DurationVar(&c.PublishTimeout, p+"publish-timeout", 10*time.Second, "time allowed to publish one request to Kafka before answering 503")
	fs.DurationVar(&c.ShutdownTimeout, p+"shutdown-timeout", 15*time.Second, "time allowed for requests in flight to finish on shutdown")
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
	if c.ListenAddress != "" {
		if _, port, err := net.SplitHostPort(c.ListenAddress); err != nil {
			add("listen_address", fmt.Errorf("%w: %w", config.ErrInvalid, err))
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			add("listen_address", fmt.Errorf("%w: port %q of %q, want 0-65535", config.ErrInvalid, port, c.ListenAddress))
		}
	}
	if c.Topic == "" {
		add("topic", config.ErrRequired)
	}
	if err := event.Encoding(c.Encoding).Validate(); err != nil {
		add("encoding", fmt.Errorf("%w: %q, want otlp_proto or otlp_json", config.ErrInvalid, c.Encoding))
	}
	positive("max_request_bytes", int64(c.MaxRequestBytes))
	positive("max_concurrent_requests", int64(c.MaxConcurrentRequests))
	positive("publish_timeout", int64(c.PublishTimeout))
	positive("shutdown_timeout", int64(c.ShutdownTimeout))
	return errors.Join(errs...)
}
