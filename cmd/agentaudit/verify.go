package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
)

// verifyConfig is the configuration of `agentaudit verify`.
type verifyConfig struct {
	ClickHouse chstore.Config `yaml:"clickhouse"`
	// Keys is a file of verification keys (see integrity.ParsePublicKeys):
	// public keys shared with auditors, or the signing key file itself.
	Keys string `yaml:"keys"`
	// Key: the same content inline, from env AGENTAUDIT_KEY only.
	Key config.Secret `yaml:"key"`
	// PrintPublicKeys prints the public keys of -keys (e.g. the signing key
	// file) in the form auditors pass to -keys, and exits.
	PrintPublicKeys bool `yaml:"-"`
}

func (c *verifyConfig) RegisterFlags(fs *flag.FlagSet) {
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	fs.StringVar(&c.Keys, "keys", "", "file of checkpoint verification keys (ed25519:<base64> lines, PEM PUBLIC/PRIVATE KEY blocks or base64 seeds)")
	config.SecretVar(fs, &c.Key, "key", "verification keys inline, same formats as -keys.")
	fs.BoolVar(&c.PrintPublicKeys, "print-public-keys", false, "print the public keys of -keys/-key (e.g. the signing key file) for auditors and exit")
}

func (c *verifyConfig) Validate() error {
	if c.Keys == "" && c.Key == "" {
		return config.Field("keys", config.ErrRequired)
	}
	return nil
}

// verifyMain recomputes the integrity logs from ClickHouse and checks
// checkpoints and rows; exit 0 clean, 1 tampering found, 2 error.
func verifyMain(args []string) int {
	var cfg verifyConfig
	if _, err := config.Load(&cfg, args, os.Getenv, envPrefix); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.PrintUsage(os.Stderr, &cfg, envPrefix)
			return 0
		}
		fmt.Fprintln(os.Stderr, "config:", err)
		return 2
	}
	if err := config.Validate(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return 2
	}
	text := cfg.Key.Reveal()
	if cfg.Keys != "" {
		b, err := os.ReadFile(cfg.Keys)
		if err != nil {
			fmt.Fprintln(os.Stderr, "keys:", err)
			return 2
		}
		text = string(b)
	}
	keys, err := integrity.ParsePublicKeys(text)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keys:", err)
		return 2
	}
	if cfg.PrintPublicKeys {
		fmt.Print(integrity.MarshalPublicKeys(keys))
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conn, err := chstore.Open(ctx, cfg.ClickHouse)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		return 2
	}
	defer conn.Close()
	rep, err := integrity.Verify(ctx, conn, keys, integrity.VerifyOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		return 2
	}
	rep.WriteText(os.Stdout)
	if !rep.Clean() {
		return 1
	}
	return 0
}
