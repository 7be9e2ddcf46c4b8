package query

import (
	"context"
	"flag"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

// ServiceConfig is the whole configuration of cmd/query.
type ServiceConfig struct {
	Query      Config           `yaml:"query"`
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
}

// RegisterFlags binds every field to a flag with its default.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Query.RegisterFlagsWithPrefix("query.", fs)
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:9467", fs)
}

// Common returns the parts every service has.
func (c *ServiceConfig) Common() (*chstore.Config, *telemetry.Config) {
	return &c.ClickHouse, &c.Telemetry
}

// RunService runs the query API until ctx is cancelled, then drains it and
// flushes the query audit trail.
func RunService(ctx context.Context, cfg *ServiceConfig, conn driver.Conn, db string, log *slog.Logger, reg prometheus.Registerer) error {
	s, err := New(ctx, cfg.Query, conn, db, log, reg)
	if err != nil {
		return err
	}
	if err := s.Listen(); err != nil {
		return err
	}
	log.Info("query API listening", "addr", s.Addr())
	return s.Run(ctx)
}
