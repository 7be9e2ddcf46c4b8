package config_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
)

// The fixture mirrors how a service composes component configs.

type kafkaConfig struct {
	Brokers  []string           `yaml:"brokers"`
	Topics   config.StringSlice `yaml:"topics"`
	Timeout  time.Duration      `yaml:"timeout"`
	Password config.Secret      `yaml:"password"`
}

func (c *kafkaConfig) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	config.StringSliceVar(fs, &c.Brokers, prefix+"brokers", []string{"localhost:9092"}, "Kafka brokers.")
	config.StringSliceVar(fs, (*[]string)(&c.Topics), prefix+"topics", []string{"agent_audit_events"}, "Topics.")
	fs.DurationVar(&c.Timeout, prefix+"timeout", 10*time.Second, "Request timeout.")
	config.SecretVar(fs, &c.Password, prefix+"password", "SASL password.")
}

func (c *kafkaConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, config.Field("brokers", config.ErrRequired))
	}
	if c.Timeout <= 0 {
		errs = append(errs, config.Field("timeout", config.ErrInvalid))
	}
	return errors.Join(errs...)
}

type ingestConfig struct {
	Kafka     kafkaConfig `yaml:"kafka"`
	BatchSize int         `yaml:"batch_size"`
}

func (c *ingestConfig) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	c.Kafka.RegisterFlagsWithPrefix(prefix+"kafka.", fs)
	fs.IntVar(&c.BatchSize, prefix+"batch-size", 1000, "Rows per insert.")
}

type testConfig struct {
	LogLevel string       `yaml:"log_level"`
	Ingest   ingestConfig `yaml:"ingest"`
}

func (c *testConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.LogLevel, "log.level", "info", "Log level.")
	c.Ingest.RegisterFlagsWithPrefix("ingest.", fs)
}

const prefix = "AA"

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPrecedenceDefaultsYAMLEnvFlags(t *testing.T) {
	yamlFile := writeFile(t, "c.yaml", `
log_level: warn
ingest:
  batch_size: 200
  kafka:
    brokers: [yaml-1:9092, yaml-2:9092]
    timeout: 5s
`)
	for _, tc := range []struct {
		name      string
		args      []string
		env       map[string]string
		wantBatch int
		wantLevel string
		wantBrk   []string
	}{
		{name: "defaults only", wantBatch: 1000, wantLevel: "info", wantBrk: []string{"localhost:9092"}},
		{name: "yaml over defaults", args: []string{"-config.file", yamlFile},
			wantBatch: 200, wantLevel: "warn", wantBrk: []string{"yaml-1:9092", "yaml-2:9092"}},
		{name: "env over yaml", args: []string{"-config.file=" + yamlFile},
			env:       map[string]string{"AA_INGEST_BATCH_SIZE": "300", "AA_INGEST_KAFKA_BROKERS": "env:9092"},
			wantBatch: 300, wantLevel: "warn", wantBrk: []string{"env:9092"}},
		{name: "flag over env over yaml", args: []string{"-config.file=" + yamlFile, "-ingest.batch-size=400", "-ingest.kafka.brokers=f1:1,f2:2"},
			env:       map[string]string{"AA_INGEST_BATCH_SIZE": "300", "AA_INGEST_KAFKA_BROKERS": "env:9092", "AA_LOG_LEVEL": "debug"},
			wantBatch: 400, wantLevel: "debug", wantBrk: []string{"f1:1", "f2:2"}},
		{name: "flag over env without yaml", args: []string{"-ingest.batch-size=400"},
			env:       map[string]string{"AA_INGEST_BATCH_SIZE": "300"},
			wantBatch: 400, wantLevel: "info", wantBrk: []string{"localhost:9092"}},
		{name: "config file from env", env: map[string]string{"AA_CONFIG_FILE": yamlFile},
			wantBatch: 200, wantLevel: "warn", wantBrk: []string{"yaml-1:9092", "yaml-2:9092"}},
		{name: "empty env var counts as unset", args: []string{"-config.file=" + yamlFile},
			env:       map[string]string{"AA_INGEST_BATCH_SIZE": ""},
			wantBatch: 200, wantLevel: "warn", wantBrk: []string{"yaml-1:9092", "yaml-2:9092"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg testConfig
			if _, err := config.Load(&cfg, tc.args, env(tc.env), prefix); err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.Ingest.BatchSize != tc.wantBatch {
				t.Errorf("batch size = %d, want %d", cfg.Ingest.BatchSize, tc.wantBatch)
			}
			if cfg.LogLevel != tc.wantLevel {
				t.Errorf("log level = %q, want %q", cfg.LogLevel, tc.wantLevel)
			}
			if !reflect.DeepEqual(cfg.Ingest.Kafka.Brokers, tc.wantBrk) {
				t.Errorf("brokers = %q, want %q", cfg.Ingest.Kafka.Brokers, tc.wantBrk)
			}
		})
	}
}

func TestLoadReportsConfigFileAndCheck(t *testing.T) {
	path := writeFile(t, "c.yaml", "log_level: warn\n")
	var cfg testConfig
	got, err := config.Load(&cfg, []string{"-config.file", path, "-config.check"}, nil, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if want := (config.Loaded{ConfigFile: path, Check: true}); got != want {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
}

func TestLoadFlagsWinOverConfigFileFromEnv(t *testing.T) {
	fromEnv := writeFile(t, "env.yaml", "log_level: warn\n")
	fromFlag := writeFile(t, "flag.yaml", "log_level: error\n")
	var cfg testConfig
	got, err := config.Load(&cfg, []string{"-config.file=" + fromFlag}, env(map[string]string{"AA_CONFIG_FILE": fromEnv}), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if got.ConfigFile != fromFlag || cfg.LogLevel != "error" {
		t.Errorf("config file %q, log level %q; want the flag's file %q and level error", got.ConfigFile, cfg.LogLevel, fromFlag)
	}
}

func TestLoadErrors(t *testing.T) {
	secretFile := writeFile(t, "pw", "hunter2\n")
	for _, tc := range []struct {
		name   string
		yaml   string
		args   []string
		env    map[string]string
		is     error
		substr []string
	}{
		{name: "unknown top-level yaml key", yaml: "log_levle: warn\n", substr: []string{"log_levle", "not found", "c.yaml"}},
		{name: "unknown nested yaml key", yaml: "ingest:\n  kafak:\n    brokers: [a]\n", substr: []string{"kafak", "line 2"}},
		{name: "yaml type mismatch", yaml: "ingest:\n  batch_size: many\n", substr: []string{"many"}},
		{name: "two yaml documents", yaml: "log_level: warn\n---\nlog_level: info\n", substr: []string{"one YAML document"}},
		{name: "missing config file", args: []string{"-config.file=/nonexistent/c.yaml"}, is: os.ErrNotExist},
		{name: "bad env value names the variable", env: map[string]string{"AA_INGEST_BATCH_SIZE": "lots"}, substr: []string{`AA_INGEST_BATCH_SIZE="lots"`, "-ingest.batch-size"}},
		{name: "unknown flag", args: []string{"-nope=1"}, substr: []string{"nope"}},
		{name: "positional argument", args: []string{"-log.level", "warn", "extra"}, substr: []string{`"extra"`}},
		{name: "help", args: []string{"-help"}, is: flag.ErrHelp},
		{name: "secret on the command line", args: []string{"-ingest.kafka.password=hunter2"}, is: config.ErrSecretOnCommandLine,
			substr: []string{"AA_INGEST_KAFKA_PASSWORD", "-ingest.kafka.password-file"}},
		// The flag package formats Set errors with %v, so only the text survives.
		{name: "unreadable secret file", args: []string{"-ingest.kafka.password-file=" + secretFile + ".missing"},
			substr: []string{"-ingest.kafka.password-file", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				args = append([]string{"-config.file", writeFile(t, "c.yaml", tc.yaml)}, args...)
			}
			var cfg testConfig
			_, err := config.Load(&cfg, args, env(tc.env), prefix)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			for _, s := range tc.substr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}

func TestLoadRejectsFlagsSharingAnEnvVar(t *testing.T) {
	cfg := registerFunc(func(fs *flag.FlagSet) {
		fs.String("a.b-c", "", "")
		fs.String("a-b.c", "", "")
	})
	_, err := config.Load(cfg, nil, nil, prefix)
	if err == nil || !strings.Contains(err.Error(), "AA_A_B_C") {
		t.Errorf("Load = %v, want an error naming AA_A_B_C", err)
	}
}

type registerFunc func(fs *flag.FlagSet)

func (f registerFunc) RegisterFlags(fs *flag.FlagSet) { f(fs) }

func TestLoadTwoConfigsAreIndependent(t *testing.T) {
	var a, b testConfig
	if _, err := config.Load(&a, []string{"-log.level=debug"}, nil, prefix); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(&b, nil, nil, prefix); err != nil {
		t.Fatal(err)
	}
	if a.LogLevel != "debug" || b.LogLevel != "info" {
		t.Errorf("levels %q and %q, want debug and info", a.LogLevel, b.LogLevel)
	}
	a.Ingest.Kafka.Brokers[0] = "mutated"
	if b.Ingest.Kafka.Brokers[0] != "localhost:9092" {
		t.Errorf("defaults are shared between configs: %q", b.Ingest.Kafka.Brokers)
	}
}

func TestEnvName(t *testing.T) {
	for _, tc := range []struct{ prefix, flag, want string }{
		{"AGENTAUDIT", "kafka.sasl-user", "AGENTAUDIT_KAFKA_SASL_USER"},
		{"agentaudit_", "log.level", "AGENTAUDIT_LOG_LEVEL"},
		{"", "config.file", "CONFIG_FILE"},
	} {
		if got := config.EnvName(tc.prefix, tc.flag); got != tc.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", tc.prefix, tc.flag, got, tc.want)
		}
	}
}

func TestPrintUsageListsFlagsWithEnvVars(t *testing.T) {
	var cfg testConfig
	var sb strings.Builder
	config.PrintUsage(&sb, &cfg, prefix)
	out := sb.String()
	for _, want := range []string{"-ingest.kafka.brokers", "[env AA_INGEST_KAFKA_BROKERS]", "-config.file", "-config.check", "localhost:9092", "10s"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage does not contain %q:\n%s", want, out)
		}
	}
}

func TestApplyDefaults(t *testing.T) {
	cfg := testConfig{LogLevel: "debug"}
	config.ApplyDefaults(&cfg)
	if cfg.LogLevel != "info" || cfg.Ingest.BatchSize != 1000 || cfg.Ingest.Kafka.Timeout != 10*time.Second {
		t.Errorf("ApplyDefaults = %+v", cfg)
	}
}
