// Package app is the shared skeleton of agentaudit's service mains: config
// (defaults < YAML < env < flags), JSON logs, a Prometheus registry with
// /metrics, /healthz and /readyz, ClickHouse connection and migrations, and
// graceful shutdown on SIGINT/SIGTERM.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

// EnvPrefix prefixes every environment variable: flag a.b-c is AGENTAUDIT_A_B_C.
const EnvPrefix = "AGENTAUDIT"

// Config is what every service has.
type Config interface {
	config.FlagRegisterer
	Common() (*chstore.Config, *telemetry.Config)
}

// Deps are what Main hands to a service.
type Deps struct {
	Conn     driver.Conn // default database: the agentaudit database
	Database string
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Admin    *telemetry.Server
}

// Main loads cfg from args and the environment, sets everything up and runs
// run until a signal arrives. It returns the process exit code.
func Main(name string, cfg Config, args []string, stderr io.Writer, run func(ctx context.Context, d Deps) error) int {
	ld, err := config.Load(cfg, args, os.Getenv, EnvPrefix)
	if errors.Is(err, flag.ErrHelp) {
		config.PrintUsage(stderr, cfg, EnvPrefix)
		return 0
	}
	if err == nil {
		err = config.Validate(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: config: %v\n", name, err)
		return 2
	}
	if ld.Check {
		out, err := config.Dump(cfg)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		os.Stdout.Write(out)
		return 0
	}
	chCfg, telCfg := cfg.Common()
	log, err := telCfg.NewLogger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	log = log.With("service", name)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, name, *chCfg, *telCfg, log, run); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// Run is Main without config loading and signals: for the all-in-one and
// tests. It returns when run returns or ctx is cancelled and run has drained.
func Run(ctx context.Context, name string, chCfg chstore.Config, telCfg telemetry.Config, log *slog.Logger, run func(ctx context.Context, d Deps) error) error {
	reg := telemetry.NewRegistry()
	admin := telemetry.NewServer(telCfg.ListenAddress, reg, log)
	if err := admin.Listen(); err != nil {
		return err
	}
	admin.SetNotReady("starting")
	// The admin server outlives the service so /metrics and a 503 /readyz
	// stay visible while it drains.
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	adminDone := make(chan error, 1)
	go func() { adminDone <- admin.Run(adminCtx) }()
	defer func() {
		stopAdmin()
		<-adminDone
	}()

	if chCfg.Migrate {
		if err := retry(ctx, log, "migrate clickhouse", func() error {
			_, err := chstore.Migrate(ctx, chCfg, log)
			return err
		}); err != nil {
			return err
		}
	}
	conn, err := chstore.Open(ctx, chCfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	admin.AddReadinessCheck("clickhouse", conn.Ping)
	admin.SetReady()
	log.Info("started", "admin", admin.Addr(), "clickhouse", []string(chCfg.Addr), "database", chCfg.Database)
	err = run(ctx, Deps{Conn: conn, Database: chCfg.Database, Logger: log, Registry: reg, Admin: admin})
	admin.SetNotReady("stopping")
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// retry runs f until it succeeds or ctx ends: services start before or
// while ClickHouse comes up (docker-compose, Kubernetes).
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	wait := 200 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		log.Warn(what+" failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}
