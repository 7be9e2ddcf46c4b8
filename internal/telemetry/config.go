package telemetry

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"

	"github.com/agentaudit/agentaudit/internal/config"
)

// DefaultListenAddress is the admin listen address of RegisterFlags. Each
// service picks its own default through RegisterFlagsWithPrefix so that all of
// them can run on one host.
const DefaultListenAddress = ":9464"

// Config configures logging and the admin server of a service.
type Config struct {
	// ListenAddress is host:port of the admin server (/metrics, /healthz,
	// /readyz); port 0 picks a free port.
	ListenAddress string `yaml:"listen_address"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is json or text.
	LogFormat string `yaml:"log_format"`
}

// RegisterFlags registers -telemetry.* flags with DefaultListenAddress.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.RegisterFlagsWithPrefix("telemetry.", DefaultListenAddress, fs)
}

// RegisterFlagsWithPrefix registers the flags under prefix (e.g.
// "telemetry.") with defaultListenAddress as the listen address default.
func (c *Config) RegisterFlagsWithPrefix(prefix, defaultListenAddress string, fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddress, prefix+"listen-address", defaultListenAddress, "Admin HTTP address (host:port) serving /metrics, /healthz and /readyz.")
	fs.StringVar(&c.LogLevel, prefix+"log-level", "info", "Log level: debug, info, warn or error.")
	fs.StringVar(&c.LogFormat, prefix+"log-format", "json", "Log format: json or text.")
}

// Validate checks the listen address, log level and log format.
func (c *Config) Validate() error {
	var errs []error
	if err := validateListenAddress(c.ListenAddress); err != nil {
		errs = append(errs, config.Field("listen_address", err))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, config.Field("log_level", fmt.Errorf("%w: %q, want debug, info, warn or error", config.ErrInvalid, c.LogLevel)))
	}
	if _, ok := normalizeFormat(c.LogFormat); !ok {
		errs = append(errs, config.Field("log_format", fmt.Errorf("%w: %q, want json or text", config.ErrInvalid, c.LogFormat)))
	}
	return errors.Join(errs...)
}

// NewLogger returns the logger this config describes, writing to w.
func (c *Config) NewLogger(w io.Writer) (*slog.Logger, error) {
	return NewLogger(w, c.LogLevel, c.LogFormat)
}

func validateListenAddress(addr string) error {
	if addr == "" {
		return config.ErrRequired
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%w: port %q of %q, want 0-65535", config.ErrInvalid, port, addr)
	}
	return nil
}
