package notify_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect/notify"
)

type svcConfig struct {
	Notify notify.Config `yaml:"notify"`
}

func (c *svcConfig) RegisterFlags(fs *flag.FlagSet) { c.Notify.RegisterFlagsWithPrefix("notify.", fs) }

// A YAML file with endpoints, env and flags layer as everywhere else;
// secrets are read from env or file and never appear in a dump.
func TestConfigLoadsEndpointsAndHidesSecrets(t *testing.T) {
	dir := t.TempDir()
	secFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secFile, []byte(secret(1)+"\n"+secret(2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(yml, []byte(`notify:
  schedule: [0s, 10ms, 1s]
  endpoints:
    - name: soc
      url: https://user:pw@soc.example/hooks
      kinds: [notify]
      tenants: [acme, globex]
      secrets_file: `+secFile+`
      format: ocsf
    - name: idp
      url: https://idp.example/caep
      kinds: [revoke]
      secrets: [`+secret(3)+`]
      format: caep-set
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var c svcConfig
	env := map[string]string{"AGENTAUDIT_NOTIFY_SECRETS": secret(4) + " " + secret(5)}
	if _, err := config.Load(&c, []string{"-config.file=" + yml, "-notify.url=http://127.0.0.1:9/hook", "-notify.revocation-window=5m"}, func(k string) string { return env[k] }, "AGENTAUDIT"); err != nil {
		t.Fatal(err)
	}
	if err := config.Validate(&c); err != nil {
		t.Fatal(err)
	}
	eps := c.Notify.AllEndpoints()
	if len(eps) != 3 || eps[2].Name != "default" || eps[0].Format != notify.FormatOCSF || eps[0].MaxConcurrency != 4 {
		t.Fatalf("endpoints %+v", eps)
	}
	if c.Notify.RevocationWindow != 5*time.Minute || len(c.Notify.Schedule) != 3 || c.Notify.Schedule[1] != 10*time.Millisecond {
		t.Fatalf("config %+v", c.Notify)
	}
	dump, err := config.Dump(&c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dump), strings.TrimPrefix(secret(3), "whsec_")) {
		t.Fatalf("dump shows a secret:\n%s", dump)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(*notify.Config)
		field string
	}{
		{"bad url", func(c *notify.Config) { c.Endpoints[0].URL = "ftp://x" }, "endpoints[0].url"},
		{"bad kind", func(c *notify.Config) { c.Endpoints[0].Kinds = config.StringSlice{"page"} }, "endpoints[0].kinds"},
		{"bad name", func(c *notify.Config) { c.Endpoints[0].Name = "Has Space" }, "endpoints[0].name"},
		{"duplicate name", func(c *notify.Config) { c.Endpoints = append(c.Endpoints, c.Endpoints[0]) }, "endpoints[1].name"},
		{"no secret", func(c *notify.Config) { c.Endpoints[0].Secrets = nil }, "endpoints[0].secrets"},
		{"bad secret", func(c *notify.Config) { c.Endpoints[0].Secrets = []config.Secret{"whsec_short"} }, "endpoints[0].secrets[0]"},
		{"caep for notify", func(c *notify.Config) { c.Endpoints[0].Format = notify.FormatCAEPSET }, "endpoints[0].format"},
		{"empty schedule", func(c *notify.Config) { c.Schedule = nil }, "schedule"},
		{"bad default", func(c *notify.Config) { c.Default.URL = "nope" }, "default.url"},
		{"no record interval", func(c *notify.Config) { c.RecordInterval = 0 }, "record_interval"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, "http://127.0.0.1:9/x", secret(1))
			c.edit(&cfg)
			err := config.Validate(&cfg)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Path != c.field {
				t.Fatalf("Validate: %v, want an error at %s", err, c.field)
			}
		})
	}
}
