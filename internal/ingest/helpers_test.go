package ingest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/kafkabroker"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/schema"
)

// testTrace builds one trace of n spans (an invoke_agent root and tool
// children) for tenant, deterministic in seed.
func testTrace(seed uint64, tenant string, n int, at time.Time) ([]byte, string) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "agent-runtime")
	rs.Resource().Attributes().PutStr("tenant.id", tenant)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("agentaudit.test")
	var tid pcommon.TraceID
	binary.BigEndian.PutUint64(tid[:8], seed+1)
	binary.BigEndian.PutUint64(tid[8:], 0xabcdef)
	var root pcommon.SpanID
	for i := range n {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(tid)
		var sid pcommon.SpanID
		binary.BigEndian.PutUint64(sid[:], seed<<8|uint64(i)+1)
		sp.SetSpanID(sid)
		start := at.Add(time.Duration(i) * time.Millisecond)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(5 * time.Millisecond)))
		if i == 0 {
			root = sid
			sp.SetName("invoke_agent planner")
			sp.Attributes().PutStr("gen_ai.operation.name", "invoke_agent")
			sp.Attributes().PutStr("gen_ai.agent.id", fmt.Sprintf("agent-%d", seed%7))
		} else {
			sp.SetParentSpanID(root)
			sp.SetName("execute_tool db.query")
			sp.Attributes().PutStr("gen_ai.operation.name", "execute_tool")
			sp.Attributes().PutStr("gen_ai.tool.name", "db.query")
			sp.Attributes().PutInt("gen_ai.usage.input_tokens", int64(i*10))
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		panic(err)
	}
	return b, hex.EncodeToString(tid[:])
}

// testEvent builds one valid audit event.
func testEvent(seed uint64, tenant string, at time.Time) []byte {
	h := sha256.Sum256([]byte(fmt.Sprint(seed)))
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[:8], (seed+1)<<16) // seed in bytes 0-5, clear of the version bits
	binary.BigEndian.PutUint64(id[8:], 0x4000_8000_0000_0000)
	id[6] = 0x40 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	b, _ := json.Marshal(map[string]any{
		"event_id": id.String(), "ts": at.Format(time.RFC3339Nano), "tenant_id": tenant,
		"agent_id": fmt.Sprintf("agent-%d", seed%7), "parent_identity": "user:alice@example.com",
		"token_id": fmt.Sprintf("tok-%d", seed%11), "token_type": "oauth",
		"delegation_scope": []string{"db:read"}, "required_scopes": []string{"db:read"},
		"tool_name": "db.query", "tool_params_hash": hex.EncodeToString(h[:]),
		"resource": "db://orders", "resource_tenant_id": tenant, "policy_decision": "allow",
	})
	return b
}

type env struct {
	broker *kafkabroker.Broker
	conn   driver.Conn
	db     string
	addr   string // ClickHouse native address
	cfg    Config
}

// target is where ingest inserts.
func (e *env) target() chstore.Config {
	return chstore.Config{Addr: []string{e.addr}, Database: e.db, Username: "default", DialTimeout: 2 * time.Second, ReadTimeout: 30 * time.Second}
}

// newEnv gives a test a fresh database with the schema, a kfake broker with
// the two topics, and an ingest config pointing at both.
func newEnv(t *testing.T, partitions int) *env {
	t.Helper()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(context.Background(), conn, ms, migrate.Options{Database: db}); err != nil {
		t.Fatal(err)
	}
	b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{
		Topics: map[string]int{"spans": partitions, "events": partitions}, AutoCreateTopics: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{broker: b, conn: conn, db: db, addr: chtest.Addr(), cfg: testConfig(b.Addr())}
}

// newEnvOn is newEnv against the ClickHouse server at addr.
func newEnvOn(t *testing.T, partitions int, addr string) *env {
	t.Helper()
	ctx := context.Background()
	admin, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ms, _ := migrate.Load(schema.Migrations, "migrations")
	if _, err := migrate.Apply(ctx, admin, ms, migrate.Options{Database: "agentaudit"}); err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: "agentaudit"}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{
		Topics: map[string]int{"spans": partitions, "events": partitions}, AutoCreateTopics: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{broker: b, conn: conn, db: "agentaudit", addr: addr, cfg: testConfig(b.Addr())}
}

func testConfig(broker string) Config {
	var c Config
	fs := flagSet()
	c.RegisterFlagsWithPrefix("", fs)
	c.Brokers = config.StringSlice{broker}
	c.SpansTopic, c.EventsTopic = "spans", "events"
	c.GroupID = "ingest-test"
	c.Batch.MaxAge = 200 * time.Millisecond
	c.Retry.MaxBackoff = 500 * time.Millisecond
	c.SessionTimeout = 6 * time.Second
	c.HeartbeatInterval = 500 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	return c
}

func produce(t *testing.T, addr, topic string, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if err := w.WriteMessages(context.Background(), msgs[:n]...); err != nil {
			t.Errorf("produce to %s: %v", topic, err) // may run outside the test goroutine
			return
		}
		msgs = msgs[n:]
	}
}

// startService runs the ingest service until the returned stop is called.
func startService(t *testing.T, e *env, cfg Config) (stop func()) {
	t.Helper()
	return startServiceWith(t, e, cfg, prometheus.NewRegistry(), nil)
}

// startServiceWith is startService with the metrics in reg, sealing audit
// events with signer unless it is nil.
func startServiceWith(t *testing.T, e *env, cfg Config, reg *prometheus.Registry, signer *integrity.Signer) (stop func()) {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(testLogWriter(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := New(cfg, e.conn, e.target(), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	if signer != nil {
		svc.SealWith(signer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ingest Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("ingest did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return stop
}

// testSigner is an integrity signer with a fresh key (checkpoints every
// 200 ms) and that key's public half.
func testSigner(t *testing.T) (*integrity.Signer, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.NewSigner(integrity.Config{Enabled: true, Key: config.Secret(base64.StdEncoding.EncodeToString(priv.Seed())), CheckpointInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return signer, pub
}

func testLogWriter() io.Writer {
	if os.Getenv("AGENTAUDIT_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// counts returns count() and uniqExact of the natural key of a table, plain
// SELECTs without FINAL, as any SQL client would see them.
func counts(t *testing.T, conn driver.Conn, table string) (rows, unique uint64) {
	t.Helper()
	key := "(trace_id, span_id)"
	if table == "audit_events" {
		key = "event_id"
	}
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact("+key+") FROM "+table).Scan(&rows, &unique); err != nil {
		t.Fatal(err)
	}
	return rows, unique
}

// waitCounts waits until table has want rows, then checks it stays there
// and that every row is unique.
func waitCounts(t *testing.T, conn driver.Conn, table string, want uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var rows, unique uint64
	for time.Now().Before(deadline) {
		rows, unique = counts(t, conn, table)
		if rows >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The count reached; now check nothing more arrives (a late duplicate
	// would): this is the one wait that has no condition to wait on.
	time.Sleep(500 * time.Millisecond)
	rows, unique = counts(t, conn, table)
	if rows != want || unique != want {
		t.Fatalf("%s: count()=%d uniqExact(key)=%d, want both %d", table, rows, unique, want)
	}
	t.Logf("%s: count()=%d uniqExact(key)=%d (want %d)", table, rows, unique, want)
}

// metricSum is the sum of a metric's samples in reg whose labels include
// every name=value pair of labels.
func metricSum(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
