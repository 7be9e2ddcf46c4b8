package detect

import (
	"context"
	"flag"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

// ServiceConfig is the whole configuration of cmd/detector.
type ServiceConfig struct {
	Detect     Config           `yaml:"detect"`
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
}

// RegisterFlags binds every field to a flag with its default.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Detect.RegisterFlagsWithPrefix("detect.", fs)
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:9466", fs)
}

// Common returns the parts every service has.
func (c *ServiceConfig) Common() (*chstore.Config, *telemetry.Config) {
	return &c.ClickHouse, &c.Telemetry
}

// RunService runs the detector until ctx is cancelled. Detections that call
// for an action are logged (LogActions) until the webhook notifier is wired
// in.
func RunService(ctx context.Context, cfg *ServiceConfig, conn driver.Conn, db string, log *slog.Logger, reg prometheus.Registerer) error {
	svc, err := New(cfg.Detect, conn, LogActions{Log: log}, log, reg)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
