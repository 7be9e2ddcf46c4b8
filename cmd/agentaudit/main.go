// Command agentaudit is the all-in-one: it runs the whole system on one
// machine with embedded Kafka and ClickHouse (`agentaudit run`, the default),
// serves an embedded ClickHouse alone (`agentaudit clickhouse`), applies
// schema migrations to a ClickHouse (`agentaudit migrate`), manages retention
// policies and legal holds (`agentaudit retention`), or verifies the
// tamper-evident audit log (`agentaudit verify`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentaudit/agentaudit/internal/allinone"
	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

const envPrefix = "AGENTAUDIT"

func main() {
	args := os.Args[1:]
	sub := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "clickhouse":
		os.Exit(chdb.ServeMain(args, os.Stderr))
	case "migrate":
		os.Exit(migrateMain(args))
	case "run":
		os.Exit(runMain(args))
	case "retention":
		os.Exit(retentionMain(args))
	case "verify":
		os.Exit(verifyMain(args))
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q; want run, clickhouse, migrate, retention or verify\n", sub)
		os.Exit(2)
	}
}

func runMain(args []string) int {
	var cfg allinone.Config
	log, ok := load(&cfg, args, &cfg.Telemetry)
	if !ok {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := allinone.Run(ctx, cfg, log, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("agentaudit stopped", "err", err)
		return 1
	}
	return 0
}

type migrateConfig struct {
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
}

func (c *migrateConfig) RegisterFlags(fs *flag.FlagSet) {
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:0", fs)
}

func migrateMain(args []string) int {
	var cfg migrateConfig
	log, ok := load(&cfg, args, &cfg.Telemetry)
	if !ok {
		return 2
	}
	ran, err := chstore.Migrate(context.Background(), cfg.ClickHouse, log)
	if err != nil {
		log.Error("migrate", "err", err)
		return 1
	}
	fmt.Printf("applied %d migrations to %s\n", len(ran), cfg.ClickHouse.Database)
	return 0
}

// load reads config (defaults < YAML < env < flags), validates it and builds
// the logger. -config.check prints the effective config and exits.
func load(cfg config.FlagRegisterer, args []string, tel *telemetry.Config) (*slog.Logger, bool) {
	ld, err := config.Load(cfg, args, os.Getenv, envPrefix)
	if errors.Is(err, flag.ErrHelp) {
		config.PrintUsage(os.Stderr, cfg, envPrefix)
		os.Exit(0)
	}
	if err == nil {
		err = config.Validate(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return nil, false
	}
	if ld.Check {
		out, _ := config.Dump(cfg)
		os.Stdout.Write(out)
		os.Exit(0)
	}
	log, err := tel.NewLogger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return nil, false
	}
	return log, true
}
