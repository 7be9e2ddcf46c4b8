package otlphttp

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlagsWithPrefix("otlphttp.", fs)
	want := Config{
		ListenAddress:         "127.0.0.1:4318",
		Topic:                 "otlp_spans",
		Encoding:              "otlp_proto",
		MaxRequestBytes:       16 << 20,
		MaxConcurrentRequests: 16,
		PublishTimeout:        10 * time.Second,
		ShutdownTimeout:       15 * time.Second,
	}
	if c != want {
		t.Errorf("defaults %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if err := fs.Parse([]string{"-otlphttp.listen-address=", "-otlphttp.kafka.encoding=otlp_json", "-otlphttp.kafka.topic=spans"}); err != nil {
		t.Fatal(err)
	}
	if c.ListenAddress != "" || c.Encoding != "otlp_json" || c.Topic != "spans" {
		t.Errorf("after flags: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("disabled receiver does not validate: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		field  string
		want   error
	}{
		{"bad address", func(c *Config) { c.ListenAddress = "localhost" }, "listen_address", config.ErrInvalid},
		{"bad port", func(c *Config) { c.ListenAddress = "127.0.0.1:99999" }, "listen_address", config.ErrInvalid},
		{"no topic", func(c *Config) { c.Topic = "" }, "topic", config.ErrRequired},
		{"bad encoding", func(c *Config) { c.Encoding = "otlp_avro" }, "encoding", config.ErrInvalid},
		{"zero body limit", func(c *Config) { c.MaxRequestBytes = 0 }, "max_request_bytes", config.ErrInvalid},
		{"zero concurrency", func(c *Config) { c.MaxConcurrentRequests = 0 }, "max_concurrent_requests", config.ErrInvalid},
		{"zero publish timeout", func(c *Config) { c.PublishTimeout = 0 }, "publish_timeout", config.ErrInvalid},
		{"negative shutdown timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }, "shutdown_timeout", config.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("t")
			tc.mutate(&c)
			err := config.Validate(&c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate: %v, want %v", err, tc.want)
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Path != tc.field {
				t.Errorf("Validate: %v, want an error for field %s", err, tc.field)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("Validate: %v, want one error", err)
			}
		})
	}
}
