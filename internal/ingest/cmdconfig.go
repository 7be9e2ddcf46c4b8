package ingest

import (
	"flag"

	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

// ServiceConfig is the whole configuration of cmd/ingest.
type ServiceConfig struct {
	Ingest     Config           `yaml:"ingest"`
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
}

// RegisterFlags binds every field to a flag with its default.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Ingest.RegisterFlagsWithPrefix("ingest.", fs)
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:9465", fs)
}

// Common returns the parts every service has.
func (c *ServiceConfig) Common() (*chstore.Config, *telemetry.Config) {
	return &c.ClickHouse, &c.Telemetry
}
