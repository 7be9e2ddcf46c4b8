package telemetry_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		name, level, format string
		wantJSON            bool
		wantDebug, wantInfo bool
	}{
		{name: "defaults are info and json", wantJSON: true, wantInfo: true},
		{name: "debug json", level: "debug", format: "json", wantJSON: true, wantDebug: true, wantInfo: true},
		{name: "warn text hides info", level: "warn", format: "text"},
		{name: "case-insensitive", level: "INFO", format: "Text", wantInfo: true},
		{name: "error", level: "error", format: "json", wantJSON: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := telemetry.NewLogger(&buf, tc.level, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			logger.Debug("dbg", "topic", "t")
			logger.Info("inf", "topic", "t")
			out := buf.String()
			if got := strings.Contains(out, "dbg"); got != tc.wantDebug {
				t.Errorf("debug logged = %v, want %v: %s", got, tc.wantDebug, out)
			}
			if got := strings.Contains(out, "inf"); got != tc.wantInfo {
				t.Errorf("info logged = %v, want %v: %s", got, tc.wantInfo, out)
			}
			if tc.wantJSON && out != "" {
				for line := range strings.Lines(out) {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil || m["topic"] != "t" {
						t.Errorf("line %q is not JSON with topic=t: %v", line, err)
					}
				}
			}
		})
	}
}

func TestNewLoggerRejectsUnknownValues(t *testing.T) {
	for _, tc := range []struct{ level, format, want string }{
		{"verbose", "json", `"verbose"`},
		{"info", "xml", `"xml"`},
		{"warning", "", `"warning"`},
	} {
		if _, err := telemetry.NewLogger(&bytes.Buffer{}, tc.level, tc.format); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewLogger(%q, %q) = %v, want an error naming %s", tc.level, tc.format, err, tc.want)
		}
	}
}

func TestNewRegistryHasGoAndProcessCollectorsAndIsNotTheDefault(t *testing.T) {
	reg := telemetry.NewRegistry()
	if prometheus.Registerer(reg) == prometheus.DefaultRegisterer {
		t.Fatal("NewRegistry returned the global default registry")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !names[want] {
			t.Errorf("registry lacks %s", want)
		}
	}
	// A second registry is independent: registering the same collectors again
	// does not conflict.
	_ = telemetry.NewRegistry()
}

func TestConfigDefaultsAndFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		register func(*telemetry.Config, *flag.FlagSet)
		args     []string
		env      map[string]string
		want     telemetry.Config
	}{
		{name: "defaults", register: (*telemetry.Config).RegisterFlags,
			want: telemetry.Config{ListenAddress: telemetry.DefaultListenAddress, LogLevel: "info", LogFormat: "json"}},
		{name: "per-service default address and prefix",
			register: func(c *telemetry.Config, fs *flag.FlagSet) {
				c.RegisterFlagsWithPrefix("detector.telemetry.", ":9465", fs)
			},
			want: telemetry.Config{ListenAddress: ":9465", LogLevel: "info", LogFormat: "json"}},
		{name: "flags and env", register: (*telemetry.Config).RegisterFlags,
			args: []string{"-telemetry.log-level=debug"},
			env:  map[string]string{"AA_TELEMETRY_LOG_FORMAT": "text", "AA_TELEMETRY_LISTEN_ADDRESS": "127.0.0.1:0"},
			want: telemetry.Config{ListenAddress: "127.0.0.1:0", LogLevel: "debug", LogFormat: "text"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg telemetry.Config
			reg := registerFunc(func(fs *flag.FlagSet) { tc.register(&cfg, fs) })
			if _, err := config.Load(reg, tc.args, func(k string) string { return tc.env[k] }, "AA"); err != nil {
				t.Fatal(err)
			}
			if cfg != tc.want {
				t.Errorf("config = %+v, want %+v", cfg, tc.want)
			}
			if err := config.Validate(&cfg); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

type registerFunc func(*flag.FlagSet)

func (f registerFunc) RegisterFlags(fs *flag.FlagSet) { f(fs) }

func TestConfigValidate(t *testing.T) {
	valid := telemetry.Config{ListenAddress: ":9464", LogLevel: "info", LogFormat: "json"}
	for _, tc := range []struct {
		name   string
		modify func(*telemetry.Config)
		want   string // "" for valid
		is     error
	}{
		{name: "valid", modify: func(*telemetry.Config) {}},
		{name: "port 0", modify: func(c *telemetry.Config) { c.ListenAddress = "127.0.0.1:0" }},
		{name: "ipv6", modify: func(c *telemetry.Config) { c.ListenAddress = "[::1]:9464" }},
		{name: "empty address", modify: func(c *telemetry.Config) { c.ListenAddress = "" },
			want: "telemetry.listen_address: must not be empty", is: config.ErrRequired},
		{name: "no port", modify: func(c *telemetry.Config) { c.ListenAddress = "localhost" },
			want: "telemetry.listen_address: invalid value", is: config.ErrInvalid},
		{name: "port out of range", modify: func(c *telemetry.Config) { c.ListenAddress = ":70000" },
			want: `telemetry.listen_address: invalid value: port "70000"`, is: config.ErrInvalid},
		{name: "bad level", modify: func(c *telemetry.Config) { c.LogLevel = "loud" },
			want: `telemetry.log_level: invalid value: "loud"`, is: config.ErrInvalid},
		{name: "bad format", modify: func(c *telemetry.Config) { c.LogFormat = "xml" },
			want: `telemetry.log_format: invalid value: "xml"`, is: config.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := struct {
				Telemetry telemetry.Config `yaml:"telemetry"`
			}{valid}
			tc.modify(&cfg.Telemetry)
			err := config.Validate(&cfg)
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want prefix %q", err, tc.want)
			}
			if !errorsIs(err, tc.is) {
				t.Errorf("Validate = %v, not %v", err, tc.is)
			}
		})
	}
}

func TestConfigNewLogger(t *testing.T) {
	var buf bytes.Buffer
	cfg := telemetry.Config{LogLevel: "warn", LogFormat: "json"}
	logger, err := cfg.NewLogger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hidden")
	logger.Warn("shown")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown"`) {
		t.Errorf("output %q, want only the warning as JSON", out)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
