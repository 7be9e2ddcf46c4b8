package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/schema"
)

// TestVerifyCommand runs `agentaudit verify` on a sealed database: exit 0,
// then 1 after one row was changed.
func TestVerifyCommand(t *testing.T) {
	ctx := context.Background()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(ctx, conn, ms, migrate.Options{Database: db}); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	seed := base64.StdEncoding.EncodeToString(priv.Seed())
	signer, err := integrity.NewSigner(integrity.Config{Enabled: true, Key: config.Secret(seed), Origin: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var evs []integrity.Sealed
	b, err := conn.PrepareBatch(ctx, "INSERT INTO audit_events (event_id, ts, tenant_id, agent_id, token_type, tool_name, policy_decision, schema_version, src_partition, src_offset)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		ev := &event.AuditEvent{EventID: uuid.New(), TS: time.Date(2026, 1, 1, 0, 0, i, 123456789, time.UTC), TenantID: "acme",
			AgentID: "agent-1", TokenType: "oauth", ToolName: "db.query", PolicyDecision: "deny", SchemaVersion: "1", SrcOffset: uint64(i)}
		if err := b.Append(ev.EventID, ev.TS, ev.TenantID, ev.AgentID, ev.TokenType, ev.ToolName, ev.PolicyDecision, ev.SchemaVersion, ev.SrcPartition, ev.SrcOffset); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, integrity.Sealed{Offset: int64(i), Event: ev})
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	l, err := integrity.OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(ctx, true); err != nil {
		t.Fatal(err)
	}
	// The operator derives the public keys from the signing key file.
	dir := t.TempDir()
	signing, keys := filepath.Join(dir, "signing.key"), filepath.Join(dir, "keys")
	if err := os.WriteFile(signing, []byte(seed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(keys)
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = out
	code := verifyMain([]string{"-keys", signing, "-print-public-keys"})
	os.Stdout = stdout
	out.Close()
	if code != 0 {
		t.Fatalf("print public keys: exit %d", code)
	}
	if b, _ := os.ReadFile(keys); strings.Contains(string(b), seed) || !strings.HasPrefix(string(b), "ed25519:") {
		t.Fatalf("printed keys: %q", b)
	}
	args := []string{"-clickhouse.addr", chtest.Addr(), "-clickhouse.database", db, "-keys", keys}
	if code := verifyMain(args); code != 0 {
		t.Fatalf("clean database: exit %d", code)
	}
	if err := conn.Exec(ctx, "ALTER TABLE audit_events UPDATE policy_decision = 'allow' WHERE src_offset = 2 SETTINGS mutations_sync = 2"); err != nil {
		t.Fatal(err)
	}
	if code := verifyMain(args); code != 1 {
		t.Fatalf("tampered database: exit %d", code)
	}
	if code := verifyMain([]string{"-clickhouse.addr", chtest.Addr()}); code != 2 {
		t.Fatalf("no keys: exit %d", code)
	}
}
