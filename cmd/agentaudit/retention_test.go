package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/retention"
	"github.com/agentaudit/agentaudit/schema"
)

func TestRetentionFlagsPerCommand(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"apply", "-dry-run"}, ""},
		{[]string{"apply", "-by", "ops", "-allow-below-floor"}, "reason"},
		{[]string{"hold", "-tenant", "acme", "-reason", "case 1"}, "by"},
		{[]string{"hold", "-tenant", "acme", "-reason", "case 1", "-by", "counsel"}, ""},
		{[]string{"release", "-by", "counsel", "-reason", "closed"}, "hold-id"},
		{[]string{"status", "-tenant", "acme"}, "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cfg := retentionConfig{action: tc.args[0]}
			_, err := config.Load(&cfg, tc.args[1:], func(string) string { return "" }, envPrefix)
			if err == nil {
				err = config.Validate(&cfg)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// The commands against the real engine: dry run, apply, status, hold,
// holds, release.
func TestRetentionCommands(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, conn, ms, migrate.Options{Database: db, StoragePolicy: chdb.StoragePolicy}); err != nil {
		t.Fatal(err)
	}
	m, err := retention.New(conn, retention.Options{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	run := func(cfg retentionConfig) string {
		t.Helper()
		var out bytes.Buffer
		if err := runRetention(ctx, m, cfg, &out); err != nil {
			t.Fatalf("%s: %v\n%s", cfg.action, err, out.String())
		}
		return out.String()
	}
	out := run(retentionConfig{action: "apply", DryRun: true})
	for _, want := range []string{"-- " + db + ".spans: would change", "MODIFY TTL start_time + toIntervalDay(7) TO VOLUME 'cold'", db + ".query_audit: would change", db + ".trace_index: would change", "-- 6 tables would change"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if out := run(retentionConfig{action: "apply", By: "ops"}); !strings.Contains(out, "-- 6 tables changed") {
		t.Fatalf("apply:\n%s", out)
	}
	if out := run(retentionConfig{action: "apply", By: "ops"}); !strings.Contains(out, "-- 0 tables changed") {
		t.Fatalf("second apply:\n%s", out)
	}
	out = run(retentionConfig{action: "hold", Tenant: "acme", Reason: "case 1", By: "counsel"})
	if !strings.Contains(out, "placed on tenant acme") || !strings.Contains(out, "NOT (tenant_id IN ('acme'))") {
		t.Fatalf("hold:\n%s", out)
	}
	hs, err := m.Holds(ctx, "acme", false)
	if err != nil || len(hs) != 1 {
		t.Fatalf("holds: %v %v", hs, err)
	}
	if out := run(retentionConfig{action: "holds"}); !strings.Contains(out, hs[0].ID) || !strings.Contains(out, "counsel") {
		t.Fatalf("holds:\n%s", out)
	}
	out = run(retentionConfig{action: "status"})
	for _, want := range []string{"policy: applied; active legal holds: 1", db + ".audit_events TTL: ts + toIntervalDay(30) TO VOLUME 'cold'", db + ".query_audit TTL: ts + toIntervalDay(90) TO VOLUME 'cold'", db + ".trace_index TTL: (toStartOfDay(hour) + toIntervalDay(2)) + toIntervalDay(90) WHERE (source = 'span') AND (NOT (tenant_id IN ('acme')))"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status output lacks %q:\n%s", want, out)
		}
	}
	if out := run(retentionConfig{action: "release", HoldID: hs[0].ID, Reason: "closed", By: "counsel"}); !strings.Contains(out, "released") {
		t.Fatalf("release:\n%s", out)
	}
	var buf bytes.Buffer
	err = runRetention(ctx, m, retentionConfig{action: "release", HoldID: hs[0].ID, Reason: "closed", By: "counsel"}, &buf)
	if !errors.Is(err, retention.ErrHoldNotFound) {
		t.Fatalf("second release: %v", err)
	}
}
