package integrity

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/config"
)

type testService struct {
	Integrity Config `yaml:"integrity"`
}

func (c *testService) RegisterFlags(fs *flag.FlagSet) {
	c.Integrity.RegisterFlagsWithPrefix("integrity.", fs)
}

// TestConfigEnvKeyPublishAndMetrics: the key comes from
// AGENTAUDIT_INTEGRITY_KEY and never prints; checkpoints land in the publish
// directory and the metrics count them.
func TestConfigEnvKeyPublishAndMetrics(t *testing.T) {
	ctx := context.Background()
	seed := seedLine(t)
	dir := t.TempDir()
	env := map[string]string{"AGENTAUDIT_INTEGRITY_KEY": seed}
	var cfg testService
	if _, err := config.Load(&cfg, []string{"-integrity.enabled", "-integrity.publish-dir", dir, "-integrity.origin", "audit.example"}, func(k string) string { return env[k] }, "AGENTAUDIT"); err != nil {
		t.Fatal(err)
	}
	if err := config.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	dump, err := config.Dump(&cfg)
	if err != nil || strings.Contains(string(dump), seed) || !strings.Contains(string(dump), config.Redacted) {
		t.Fatalf("dump shows the key or not its presence: %s %v", dump, err)
	}
	if _, err := config.Load(&testService{}, []string{"-integrity.key", seed}, nil, "AGENTAUDIT"); err == nil {
		t.Fatal("key accepted on the command line")
	}
	signer, err := NewSigner(cfg.Integrity)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := signer.Instrument(reg); err != nil {
		t.Fatal(err)
	}
	conn := newDB(t)
	evs := simEvents(t, 20, 1)[0]
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	seal(t, l, evs, 5)
	b, err := os.ReadFile(filepath.Join(dir, "audit.example_audit_events_0.checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := VerifyNote(string(b), signer.PublicKeys())
	if err != nil || cp.Size != uint64(len(evs)) || !strings.HasPrefix(string(b), "audit.example/audit_events/0\n") {
		t.Fatalf("published note: %v\n%s", err, b)
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			got[mf.GetName()] = m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			got[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	batches := float64((len(evs) + 4) / 5)
	want := map[string]float64{
		"agentaudit_integrity_leaves_appended_total":    float64(len(evs)),
		"agentaudit_integrity_checkpoints_signed_total": batches,
		"agentaudit_integrity_append_duration_seconds":  batches,
		"agentaudit_integrity_proof_lag_seconds":        float64(len(evs)), // one observation per event
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
