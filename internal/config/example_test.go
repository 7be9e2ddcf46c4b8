package config_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
)

// ClickHouseConfig is a component config: yaml tags, flags with defaults,
// Validate for its own fields.
type ClickHouseConfig struct {
	Addr     []string      `yaml:"addr"`
	Database string        `yaml:"database"`
	Password config.Secret `yaml:"password"`
	Timeout  time.Duration `yaml:"timeout"`
}

func (c *ClickHouseConfig) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	config.StringSliceVar(fs, &c.Addr, prefix+"addr", []string{"localhost:9000"}, "ClickHouse native addresses.")
	fs.StringVar(&c.Database, prefix+"database", "agentaudit", "Database.")
	config.SecretVar(fs, &c.Password, prefix+"password", "ClickHouse password.")
	fs.DurationVar(&c.Timeout, prefix+"timeout", 5*time.Second, "Query timeout.")
}

func (c *ClickHouseConfig) Validate() error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, config.Field("addr", config.ErrRequired))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Field("timeout", fmt.Errorf("%w: %v, want > 0", config.ErrInvalid, c.Timeout)))
	}
	return errors.Join(errs...)
}

// ServiceConfig is what a cmd/ main loads: it composes component configs.
type ServiceConfig struct {
	ClickHouse ClickHouseConfig `yaml:"clickhouse"`
}

func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
}

func Example() {
	env := map[string]string{"AGENTAUDIT_CLICKHOUSE_PASSWORD": "s3cret"}
	args := []string{"-clickhouse.timeout=0s", "-config.check"}

	var cfg ServiceConfig
	loaded, err := config.Load(&cfg, args, func(k string) string { return env[k] }, "AGENTAUDIT")
	if errors.Is(err, flag.ErrHelp) {
		config.PrintUsage(os.Stderr, &cfg, "AGENTAUDIT")
		return
	}
	if err == nil {
		err = config.Validate(&cfg)
	}
	fmt.Println(err)
	fmt.Println(errors.Is(err, config.ErrInvalid))

	if loaded.Check {
		out, _ := config.Dump(&cfg)
		fmt.Print(string(out))
	}
	// Output:
	// clickhouse.timeout: invalid value: 0s, want > 0
	// true
	// clickhouse:
	//   addr:
	//     - localhost:9000
	//   database: agentaudit
	//   password: '[REDACTED]'
	//   timeout: 0s
}
