package integrity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"hash/fnv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/sim"
	"github.com/agentaudit/agentaudit/schema"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// newDB gives a fresh database with all migrations applied.
func newDB(t testing.TB) driver.Conn {
	t.Helper()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(context.Background(), conn, ms, migrate.Options{Database: db}); err != nil {
		t.Fatal(err)
	}
	return conn
}

// seedLine returns a fresh ed25519 key as a base64 seed line.
func seedLine(t testing.TB) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(priv.Seed())
}

func newSigner(t testing.TB, keys string) *Signer {
	t.Helper()
	s, err := NewSigner(Config{Enabled: true, Key: config.Secret(keys), Origin: "test.example", CheckpointInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// simEvents decodes the audit events of a deterministic simulator run and
// spreads them over partitions as Kafka would (by key), with offsets in
// arrival order; every 7th offset of a partition is skipped, as a message
// that was dead-lettered leaves a gap.
func simEvents(t testing.TB, traces, partitions int) map[int][]Sealed {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.MaxTraces = traces
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := event.DefaultEventOptions()
	opts.Now = func() time.Time { return cfg.Start }
	out := map[int][]Sealed{}
	next := map[int]int64{}
	for m := range s.All() {
		if m.IsTrace() {
			continue
		}
		ev, err := event.DecodeAuditEvent(m.Value, opts)
		if err != nil {
			t.Fatalf("decode simulator event: %v", err)
		}
		h := fnv.New32a()
		h.Write(m.Key)
		p := int(h.Sum32() % uint32(partitions))
		if next[p]%7 == 6 {
			next[p]++ // dead-lettered offset
		}
		ev.SrcPartition, ev.SrcOffset = uint16(p), uint64(next[p])
		next[p]++
		out[p] = append(out[p], Sealed{Offset: int64(ev.SrcOffset), Event: &ev})
	}
	return out
}

// insertRows stores events in audit_events as ingest does (one row each,
// src_partition/src_offset set).
func insertRows(t testing.TB, conn driver.Conn, evs []Sealed) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), `INSERT INTO audit_events (event_id, ts, tenant_id, agent_id,
		parent_identity, token_id, token_type, delegation_scope, required_scopes, tool_name, tool_params_hash,
		resource, resource_tenant_id, policy_decision, trace_id, span_id, attributes, schema_version,
		src_partition, src_offset, src_index)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range evs {
		if err := b.AppendStruct(s.Event); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// seal appends evs to the partition's log in batches of n and checkpoints
// after each batch.
func seal(t testing.TB, l *Log, evs []Sealed, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(evs); i += n {
		if err := l.Append(ctx, evs[i:min(i+n, len(evs))]); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Checkpoint(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
}
