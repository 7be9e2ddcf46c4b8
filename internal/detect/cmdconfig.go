package detect

import (
	"context"
	"flag"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

// ServiceConfig is the whole configuration of cmd/detector.
type ServiceConfig struct {
	Detect     Config           `yaml:"detect"`
	Notify     notify.Config    `yaml:"notify"`
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
}

// RegisterFlags binds every field to a flag with its default.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Detect.RegisterFlagsWithPrefix("detect.", fs)
	c.Notify.RegisterFlagsWithPrefix("notify.", fs)
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:9466", fs)
}

// Common returns the parts every service has.
func (c *ServiceConfig) Common() (*chstore.Config, *telemetry.Config) {
	return &c.ClickHouse, &c.Telemetry
}

// RunService runs the detector and its webhook sender (the action sink)
// until ctx is cancelled.
func RunService(ctx context.Context, cfg *ServiceConfig, conn driver.Conn, db string, log *slog.Logger, reg prometheus.Registerer) error {
	snd, err := notify.New(cfg.Notify, conn, db, log, reg)
	if err != nil {
		return err
	}
	svc, err := New(cfg.Detect, conn, snd, log, reg)
	if err != nil {
		return err
	}
	// The sender outlives the detector: the detector's last detections,
	// stored while it drains, are still handed to a running sender (Act
	// writes the outbox; what is not sent now is sent after a restart).
	sndCtx, stopSnd := context.WithCancel(context.WithoutCancel(ctx))
	sndDone := make(chan error, 1)
	go func() { sndDone <- snd.Run(sndCtx) }()
	err = svc.Run(ctx)
	stopSnd()
	if serr := <-sndDone; err == nil {
		err = serr
	}
	return err
}
