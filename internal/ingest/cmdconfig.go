package ingest

import (
	"context"
	"flag"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/otlphttp"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

// ServiceConfig is the whole configuration of cmd/ingest.
type ServiceConfig struct {
	Ingest     Config           `yaml:"ingest"`
	OTLPHTTP   otlphttp.Config  `yaml:"otlp_http"`
	Integrity  integrity.Config `yaml:"integrity"`
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
}

// RegisterFlags binds every field to a flag with its default.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	c.Ingest.RegisterFlagsWithPrefix("ingest.", fs)
	c.OTLPHTTP.RegisterFlagsWithPrefix("otlp-http.", fs)
	c.Integrity.RegisterFlagsWithPrefix("integrity.", fs)
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:9465", fs)
}

// Common returns the parts every service has.
func (c *ServiceConfig) Common() (*chstore.Config, *telemetry.Config) {
	return &c.ClickHouse, &c.Telemetry
}

// RunService runs the Kafka consumer and, when configured, the OTLP/HTTP
// receiver that publishes to the spans topic, until ctx is cancelled. With
// admin set, its /readyz also waits for the consumer group (check
// "kafka_consumer").
func RunService(ctx context.Context, cfg *ServiceConfig, conn driver.Conn, db string, log *slog.Logger, reg prometheus.Registerer, admin *telemetry.Server) error {
	var signer *integrity.Signer
	if cfg.Integrity.Enabled {
		var err error
		if signer, err = integrity.NewSigner(cfg.Integrity); err != nil {
			return err
		}
		if err := signer.Instrument(reg); err != nil {
			return err
		}
	}
	return RunServiceWith(ctx, cfg, conn, db, signer, log, reg, admin)
}

// RunServiceWith is RunService with the integrity signer given (nil: audit
// events are not sealed) instead of built from cfg.Integrity.
func RunServiceWith(ctx context.Context, cfg *ServiceConfig, conn driver.Conn, db string, signer *integrity.Signer, log *slog.Logger, reg prometheus.Registerer, admin *telemetry.Server) error {
	target := cfg.ClickHouse
	target.Database = db
	svc, err := New(cfg.Ingest, conn, target, log, reg)
	if err != nil {
		return err
	}
	if admin != nil {
		admin.AddReadinessCheck("kafka_consumer", svc.Joined)
	}
	if signer != nil {
		svc.SealWith(signer)
		log.Info("sealing audit events into signed Merkle logs", "key_id", signer.KeyID())
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return svc.Run(gctx) })
	if cfg.OTLPHTTP.ListenAddress != "" {
		w := otlphttp.NewKafkaWriter(cfg.Ingest.Brokers)
		defer w.Close()
		rcv, err := otlphttp.New(cfg.OTLPHTTP, w, cfg.Ingest.Spans, log, reg)
		if err != nil {
			return err
		}
		if err := rcv.Listen(); err != nil {
			return err
		}
		log.Info("OTLP/HTTP receiver listening", "addr", rcv.Addr(), "path", otlphttp.TracesPath)
		g.Go(func() error { return rcv.Run(gctx) })
	}
	return g.Wait()
}
