package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentaudit/agentaudit/internal/config"
)

func TestConfigDefaultsValidateAndRulesFileIsChecked(t *testing.T) {
	var c ServiceConfig
	c.RegisterFlags(newFlagSet())
	if err := config.Validate(&c); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(bad, []byte("rules: {rate.limit_exceeded: {severity: urgent}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Detect.RulesFile = bad
	c.Detect.State.Agents = 0
	err := config.Validate(&c)
	for _, want := range []string{"detect.rules_file", `severity "urgent"`, "detect.state.agents"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to mention %s", err, want)
		}
	}
}
