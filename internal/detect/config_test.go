package detect

import (
	"os"
	"path/filepath"
	"runtime/debug"
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

func TestGCConfigApplyAndRestore(t *testing.T) {
	before := debug.SetGCPercent(123)
	defer debug.SetGCPercent(before)
	beforeLimit := debug.SetMemoryLimit(-1)
	noEnv := func(string) string { return "" }

	restore := GCConfig{Percent: 400, MemoryLimit: 1 << 30}.Apply(noEnv)
	if got := debug.SetGCPercent(-1); got != 400 {
		t.Errorf("GC percent = %d, want 400", got)
	}
	debug.SetGCPercent(400)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("memory limit = %d, want %d", got, 1<<30)
	}
	restore()
	if got := debug.SetGCPercent(-1); got != 123 {
		t.Errorf("GC percent after restore = %d, want 123", got)
	}
	debug.SetGCPercent(123)
	if got := debug.SetMemoryLimit(-1); got != beforeLimit {
		t.Errorf("memory limit after restore = %d, want %d", got, beforeLimit)
	}

	// The environment's GOGC and GOMEMLIMIT win.
	env := func(k string) string { return map[string]string{"GOGC": "100", "GOMEMLIMIT": "512MiB"}[k] }
	restore = GCConfig{Percent: 400, MemoryLimit: 1 << 30}.Apply(env)
	if got := debug.SetGCPercent(-1); got != 123 {
		t.Errorf("GC percent with GOGC set = %d, want it untouched (123)", got)
	}
	debug.SetGCPercent(123)
	if got := debug.SetMemoryLimit(-1); got != beforeLimit {
		t.Errorf("memory limit with GOMEMLIMIT set = %d, want it untouched", got)
	}
	restore()
}

func TestFetchMinBytesValidated(t *testing.T) {
	var c ServiceConfig
	c.RegisterFlags(newFlagSet())
	c.Detect.FetchMinBytes = c.Detect.FetchMaxBytes + 1
	c.Detect.SpansFetchMinBytes = c.Detect.FetchMaxBytes + 1
	c.Detect.SpansFetchMaxWait = 0
	c.Detect.GC.Percent = 0
	err := config.Validate(&c)
	for _, want := range []string{"detect.fetch_min_bytes", "detect.spans_fetch_min_bytes", "detect.spans_fetch_max_wait", "detect.gc.percent"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to mention %s", err, want)
		}
	}
}

// TestInsertNiceValidated: the inserts' nice value must be one Linux has.
func TestInsertNiceValidated(t *testing.T) {
	for nice, valid := range map[int]bool{-21: false, -20: true, 0: true, 19: true, 20: false} {
		var c ServiceConfig
		c.RegisterFlags(newFlagSet())
		c.Detect.InsertNice = nice
		err := config.Validate(&c)
		if mentions := err != nil && strings.Contains(err.Error(), "detect.insert_nice"); mentions == valid {
			t.Errorf("insert nice %d: err = %v", nice, err)
		}
	}
}
