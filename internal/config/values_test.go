package config_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentaudit/agentaudit/internal/config"
)

func TestDurationFromYAMLString(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		want    time.Duration
		wantErr bool
	}{
		{yaml: "timeout: 5s", want: 5 * time.Second},
		{yaml: "timeout: 1m30s", want: 90 * time.Second},
		{yaml: "timeout: 250ms", want: 250 * time.Millisecond},
		// A bare number is ambiguous (seconds? nanoseconds?): yaml.v3 rejects it.
		{yaml: "timeout: 5", wantErr: true},
		{yaml: "timeout: soon", wantErr: true},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			var cfg testConfig
			path := writeFile(t, "c.yaml", "ingest:\n  kafka:\n    "+tc.yaml+"\n")
			_, err := config.Load(&cfg, []string{"-config.file", path}, nil, prefix)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Load succeeded with timeout %v, want an error", cfg.Ingest.Kafka.Timeout)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Ingest.Kafka.Timeout != tc.want {
				t.Errorf("timeout = %v, want %v", cfg.Ingest.Kafka.Timeout, tc.want)
			}
		})
	}
}

func TestDurationFromEnvAndFlag(t *testing.T) {
	var cfg testConfig
	_, err := config.Load(&cfg, []string{"-ingest.kafka.timeout=2s"}, env(map[string]string{"AA_INGEST_KAFKA_TIMEOUT": "1s"}), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingest.Kafka.Timeout != 2*time.Second {
		t.Errorf("timeout = %v, want 2s", cfg.Ingest.Kafka.Timeout)
	}
}

func TestStringSliceSet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a", []string{"a"}},
		{"a,b", []string{"a", "b"}},
		{" a , b ,, c ", []string{"a", "b", "c"}},
		{"", nil},
	} {
		s := config.StringSlice{"old"}
		if err := s.Set(tc.in); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual([]string(s), tc.want) {
			t.Errorf("Set(%q) = %q, want %q (replacing the old value)", tc.in, s, tc.want)
		}
	}
}

func TestStringSliceYAML(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want []string
	}{
		{"topics: [a, b]", []string{"a", "b"}},
		{"topics:\n      - a\n      - b", []string{"a", "b"}},
		{"topics: a, b", []string{"a", "b"}},
		{"topics: []", []string{}},
		{"topics: null", nil},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			var cfg testConfig
			path := writeFile(t, "c.yaml", "ingest:\n  kafka:\n    "+tc.yaml+"\n")
			if _, err := config.Load(&cfg, []string{"-config.file", path}, nil, prefix); err != nil {
				t.Fatal(err)
			}
			if got := []string(cfg.Ingest.Kafka.Topics); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("topics = %#v, want %#v", got, tc.want)
			}
		})
	}
	var s config.StringSlice
	if err := yaml.Unmarshal([]byte("{a: 1}"), &s); err == nil {
		t.Error("a mapping decoded into a StringSlice, want an error")
	}
}

func TestStringSliceFlagReplacesEnvAndYAML(t *testing.T) {
	var cfg testConfig
	path := writeFile(t, "c.yaml", "ingest:\n  kafka:\n    topics: [y1, y2]\n")
	_, err := config.Load(&cfg, []string{"-config.file", path, "-ingest.kafka.topics=f1"},
		env(map[string]string{"AA_INGEST_KAFKA_TOPICS": "e1,e2"}), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"f1"}; !reflect.DeepEqual([]string(cfg.Ingest.Kafka.Topics), want) {
		t.Errorf("topics = %q, want %q", cfg.Ingest.Kafka.Topics, want)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const pw = "hunter2"
	s := config.Secret(pw)
	j, _ := json.Marshal(s)
	y, _ := yaml.Marshal(s)
	txt, _ := s.MarshalText()
	for name, got := range map[string]string{
		"String":        s.String(),
		"%v":            fmt.Sprintf("%v", s),
		"%s":            fmt.Sprintf("%s", s),
		"%q":            fmt.Sprintf("%q", s),
		"%d":            fmt.Sprintf("%d", s),
		"%x":            fmt.Sprintf("%x", s),
		"%#v":           fmt.Sprintf("%#v", s),
		"%+v of struct": fmt.Sprintf("%+v", struct{ P config.Secret }{s}),
		"json":          string(j),
		"yaml":          string(y),
		"text":          string(txt),
		"slog":          s.LogValue().String(),
	} {
		if strings.Contains(got, pw) || !strings.Contains(got, config.Redacted) {
			t.Errorf("%s: %q, want %s and no secret", name, got, config.Redacted)
		}
	}
	if s.Reveal() != pw {
		t.Errorf("Reveal() = %q, want the secret", s.Reveal())
	}
	if got := config.Secret("").String(); got != "" {
		t.Errorf("empty secret prints %q, want \"\" (so an unset secret is visible as unset)", got)
	}
}

func TestSecretNotInSlogOutputOfConfig(t *testing.T) {
	var cfg testConfig
	_, err := config.Load(&cfg, nil, env(map[string]string{"AA_INGEST_KAFKA_PASSWORD": "hunter2"}), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingest.Kafka.Password.Reveal() != "hunter2" {
		t.Fatalf("password not loaded from env")
	}
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		logger := slog.New(h(&buf))
		logger.Info("config", "config", cfg, "config_ptr", &cfg, "password", cfg.Ingest.Kafka.Password,
			slog.Group("kafka", "password", cfg.Ingest.Kafka.Password))
		if out := buf.String(); strings.Contains(out, "hunter2") || !strings.Contains(out, config.Redacted) {
			t.Errorf("%s handler: %s", name, out)
		}
	}
}

func TestSecretVarSources(t *testing.T) {
	fromFile := writeFile(t, "pw", "from-file\n")
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "unset", want: ""},
		{name: "env value", env: map[string]string{"AA_INGEST_KAFKA_PASSWORD": "from-env"}, want: "from-env"},
		{name: "file flag, newline trimmed", args: []string{"-ingest.kafka.password-file", fromFile}, want: "from-file"},
		{name: "file from env", env: map[string]string{"AA_INGEST_KAFKA_PASSWORD_FILE": fromFile}, want: "from-file"},
		{name: "file wins over value in the same layer",
			env: map[string]string{"AA_INGEST_KAFKA_PASSWORD": "from-env", "AA_INGEST_KAFKA_PASSWORD_FILE": fromFile}, want: "from-file"},
		{name: "file flag wins over env value", args: []string{"-ingest.kafka.password-file=" + fromFile},
			env: map[string]string{"AA_INGEST_KAFKA_PASSWORD": "from-env"}, want: "from-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg testConfig
			if _, err := config.Load(&cfg, tc.args, env(tc.env), prefix); err != nil {
				t.Fatal(err)
			}
			if got := cfg.Ingest.Kafka.Password.Reveal(); got != tc.want {
				t.Errorf("password = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSecretVarRejectsEmptyFile(t *testing.T) {
	var cfg testConfig
	_, err := config.Load(&cfg, []string{"-ingest.kafka.password-file", writeFile(t, "pw", "\n")}, nil, prefix)
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Load = %v, want an empty-file error", err)
	}
}

func TestDumpRedactsSecretsAndRoundTrips(t *testing.T) {
	var cfg testConfig
	_, err := config.Load(&cfg, []string{"-ingest.kafka.timeout=1m30s", "-ingest.kafka.topics=a,b"},
		env(map[string]string{"AA_INGEST_KAFKA_PASSWORD": "hunter2"}), prefix)
	if err != nil {
		t.Fatal(err)
	}
	out, err := config.Dump(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	dump := string(out)
	if strings.Contains(dump, "hunter2") || !strings.Contains(dump, "password: '[REDACTED]'") {
		t.Errorf("dump does not redact the password:\n%s", dump)
	}
	for _, want := range []string{"timeout: 1m30s", "batch_size: 1000", "topics:\n      - a\n      - b", "brokers:\n      - localhost:9092"} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %q:\n%s", want, dump)
		}
	}

	// The dump is a valid config file that loads back to the same values
	// (the redacted secret aside).
	var again testConfig
	if _, err := config.Load(&again, []string{"-config.file", writeFile(t, "dump.yaml", dump)}, nil, prefix); err != nil {
		t.Fatalf("load dump: %v", err)
	}
	again.Ingest.Kafka.Password, cfg.Ingest.Kafka.Password = "", ""
	if !reflect.DeepEqual(again, cfg) {
		t.Errorf("round trip:\n got %+v\nwant %+v", again, cfg)
	}
}

func TestSecretFlagValueDoesNotShowInUsage(t *testing.T) {
	var cfg testConfig
	var sb strings.Builder
	config.PrintUsage(&sb, &cfg, prefix)
	if !strings.Contains(sb.String(), "-ingest.kafka.password-file") {
		t.Errorf("usage lacks the secret file flag:\n%s", sb.String())
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Set("ingest.kafka.password", "hunter2"); err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("ingest.kafka.password").Value.String(); got != config.Redacted {
		t.Errorf("flag value prints %q, want %s", got, config.Redacted)
	}
}
