// Package chstore connects to ClickHouse (any server: the embedded engine,
// docker-compose, a cluster) through clickhouse-go and owns the schema
// migrations step every service runs at start.
package chstore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/schema"
)

// Config is how a service reaches ClickHouse.
type Config struct {
	Addr          config.StringSlice `yaml:"addr"`
	Database      string             `yaml:"database"`
	Username      string             `yaml:"username"`
	Password      config.Secret      `yaml:"password"`
	Cluster       string             `yaml:"cluster"`
	StoragePolicy string             `yaml:"storage_policy"`
	DialTimeout   time.Duration      `yaml:"dial_timeout"`
	ReadTimeout   time.Duration      `yaml:"read_timeout"`
	MaxOpenConns  int                `yaml:"max_open_conns"`
	Migrate       bool               `yaml:"migrate"`
	// Compression of the data blocks sent and received: "lz4", "zstd",
	// "none", or "auto" (none to a loopback address, where compressing
	// only costs both ends CPU, lz4 otherwise).
	Compression string `yaml:"compression"`
}

// RegisterFlagsWithPrefix binds the fields to flags (prefix e.g. "clickhouse.").
func (c *Config) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	config.StringSliceVar(fs, (*[]string)(&c.Addr), prefix+"addr", []string{"127.0.0.1:9000"}, "ClickHouse native-protocol addresses (host:port, comma-separated)")
	fs.StringVar(&c.Database, prefix+"database", "agentaudit", "database holding agentaudit's tables")
	fs.StringVar(&c.Username, prefix+"username", "default", "ClickHouse user")
	config.SecretVar(fs, &c.Password, prefix+"password", "ClickHouse password")
	fs.StringVar(&c.Cluster, prefix+"cluster", "", "cluster name for ON CLUSTER migrations and Replicated tables (empty: single server)")
	fs.StringVar(&c.StoragePolicy, prefix+"storage-policy", "tiered", "storage policy with hot and cold volumes for data tables (empty: server default)")
	fs.DurationVar(&c.DialTimeout, prefix+"dial-timeout", 5*time.Second, "connect timeout")
	fs.DurationVar(&c.ReadTimeout, prefix+"read-timeout", 60*time.Second, "per-query read timeout")
	fs.IntVar(&c.MaxOpenConns, prefix+"max-open-conns", 16, "connection pool size (ingest holds one per partition with an open batch)")
	fs.BoolVar(&c.Migrate, prefix+"migrate", true, "apply schema migrations at start")
	fs.StringVar(&c.Compression, prefix+"compression", "auto", "block compression on the wire: lz4, zstd, none, or auto (none to a loopback address, lz4 otherwise)")
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, config.Field("addr", config.ErrRequired))
	}
	if c.Database == "" {
		errs = append(errs, config.Field("database", config.ErrRequired))
	} else if err := migrate.CheckIdentifier("database name", c.Database); err != nil {
		errs = append(errs, config.Field("database", fmt.Errorf("%w: %w", config.ErrInvalid, err)))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, config.Field("dial_timeout", fmt.Errorf("%w: must be > 0", config.ErrInvalid)))
	}
	if c.MaxOpenConns <= 0 {
		errs = append(errs, config.Field("max_open_conns", fmt.Errorf("%w: must be > 0", config.ErrInvalid)))
	}
	switch c.Compression {
	case "", "auto", "lz4", "zstd", "none":
	default:
		errs = append(errs, config.Field("compression", fmt.Errorf("%w: %q, want lz4, zstd, none or auto", config.ErrInvalid, c.Compression)))
	}
	return errors.Join(errs...)
}

// wireCompression resolves Compression for a connection to addr: "lz4",
// "zstd" or "none".
func (c *Config) wireCompression(addr string) string {
	switch c.Compression {
	case "lz4", "zstd", "none":
		return c.Compression
	}
	if isLoopback(addr) {
		return "none"
	}
	return "lz4"
}

// isLoopback reports whether addr (host:port) names this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MigrateOptions returns the migration options for this config.
func (c *Config) MigrateOptions(log *slog.Logger) migrate.Options {
	return migrate.Options{Database: c.Database, Cluster: c.Cluster, StoragePolicy: c.StoragePolicy, Logger: log}
}

// Open connects and pings. The connection's default database is Database,
// which may not exist yet (migrations create it), so the ping uses none.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	var comp *clickhouse.Compression
	// One setting for the pool: compress unless every address is local.
	method := "none"
	for _, a := range c.Addr {
		if m := c.wireCompression(a); m != "none" {
			method = m
		}
	}
	switch method {
	case "lz4":
		comp = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	case "zstd":
		comp = &clickhouse.Compression{Method: clickhouse.CompressionZSTD}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:            c.Addr,
		Auth:            clickhouse.Auth{Database: c.Database, Username: c.Username, Password: c.Password.Reveal()},
		DialTimeout:     c.DialTimeout,
		ReadTimeout:     c.ReadTimeout,
		MaxOpenConns:    c.MaxOpenConns,
		MaxIdleConns:    c.MaxOpenConns,
		ConnMaxLifetime: time.Hour,
		Compression:     comp,
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %v: %w", c.Addr, err)
	}
	return conn, nil
}

// Migrate applies the shipped migrations. It connects without a default
// database because the migrations create it.
func Migrate(ctx context.Context, c Config, log *slog.Logger) ([]migrate.Migration, error) {
	boot := c
	boot.Database = "default"
	conn, err := Open(ctx, boot)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		return nil, err
	}
	ran, err := migrate.Apply(ctx, conn, ms, c.MigrateOptions(log))
	if err != nil {
		return ran, fmt.Errorf("migrate %s: %w", c.Database, err)
	}
	return ran, nil
}

// ServerVersion asks the server for its version.
func ServerVersion(ctx context.Context, conn driver.Conn) (string, error) {
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return "", fmt.Errorf("clickhouse version: %w", err)
	}
	return v, nil
}
