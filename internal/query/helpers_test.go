package query

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/query/auth"
	"github.com/agentaudit/agentaudit/schema"
)

func TestMain(m *testing.M) {
	chtest.Main(leakCheck{m})
}

// leakCheck runs goleak after the tests (chtest.Main owns os.Exit).
type leakCheck struct{ m *testing.M }

func (l leakCheck) Run() int {
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreCurrent(),
			goleak.IgnoreTopFunction("github.com/ClickHouse/clickhouse-go/v2.(*clickhouse).startAutoCloseIdleConnections"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// Test keys: principal name → key.
var testKeys = map[string]struct {
	role    auth.Role
	tenants []string
}{
	"auditor-a": {auth.RoleAuditor, []string{"tenant-a"}},
	"auditor-b": {auth.RoleAuditor, []string{"tenant-b"}},
	"admin-a":   {auth.RoleAdmin, []string{"tenant-a"}},
	"admin-b":   {auth.RoleAdmin, []string{"tenant-b"}},
	"admin-all": {auth.RoleAdmin, []string{"*"}},
	"auditor-c": {auth.RoleAuditor, []string{"tenant-c"}},
}

func keyOf(name string) string { return "key-" + name + "-0123456789abcdef" }

type env struct {
	t    *testing.T
	conn driver.Conn
	db   string
	srv  *Server
	http *httptest.Server
	reg  *prometheus.Registry
	stop func() // stops Run (flushes query_audit)
}

func testConfig() Config {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlagsWithPrefix("", fs)
	var b strings.Builder
	for name, k := range testKeys {
		fmt.Fprintf(&b, "- name: %s\n  key_sha256: %s\n  role: %s\n  tenants: [%q]\n", name, auth.HashKey(keyOf(name)), k.role, strings.Join(k.tenants, `", "`))
	}
	c.APIKeys = config.Secret(b.String())
	c.CursorKey = config.Secret("test-cursor-key")
	c.ListenAddress = "127.0.0.1:0"
	c.RateLimit.RequestsPerSecond = 10_000
	c.RateLimit.Burst = 10_000
	c.Audit.FlushInterval = 50 * time.Millisecond
	c.ShutdownTimeout = 10 * time.Second
	return c
}

// newEnv migrates a fresh database and starts a server on it.
func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(context.Background(), conn, ms, migrate.Options{Database: db}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := New(context.Background(), cfg, conn, db, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e := &env{t: t, conn: conn, db: db, srv: s, reg: reg}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(e.stop)
	e.http = httptest.NewServer(s.Handler())
	t.Cleanup(e.http.Close)
	return e
}

// get calls path as principal ("" for none) and returns status and body.
func (e *env) get(principal, path string) (int, []byte, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
	if principal != "" {
		req.Header.Set("X-API-Key", keyOf(principal))
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("GET %s: read: %v", path, err)
	}
	return resp.StatusCode, b, resp.Header
}

func (e *env) getJSON(principal, path string, v any) int {
	e.t.Helper()
	code, b, _ := e.get(principal, path)
	if code == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			e.t.Fatalf("GET %s: %v in %s", path, err, b)
		}
	}
	return code
}

// base is the seed data's first timestamp.
var base = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// seedIDs are the ids of one tenant's seed data, for id routes.
type seedIDs struct {
	agent, token, trace string
	detection           uuid.UUID
	events              []uuid.UUID
}

// seed writes, for tenant t, n audit events (2 agents, 2 tokens, every
// 10th denied), a trace of 3 spans per 10 events, a detection with two
// delivery attempts and a revocation. Ids contain the short name x (a/b),
// never the tenant id, so "tenant-b" in a body means a row of tenant-b.
func seed(t *testing.T, conn driver.Conn, db, tenant, x string, n int, at time.Time) seedIDs {
	t.Helper()
	ctx := context.Background()
	ids := seedIDs{agent: "agent-" + x + "-1", token: "tok-" + x + "-1", trace: "trace-" + x + "-0"}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".audit_events (event_id, ts, tenant_id, agent_id, parent_identity, token_id, token_type, delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id, policy_decision, trace_id, span_id, attributes, schema_version)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := uuid.New()
		ids.events = append(ids.events, id)
		dec := "allow"
		if i%10 == 9 {
			dec = "deny"
		}
		if err := b.Append(id, at.Add(time.Duration(i)*time.Minute), tenant, fmt.Sprintf("agent-%s-%d", x, 1+i%2), "alice@"+x+".example",
			fmt.Sprintf("tok-%s-%d", x, 1+i%2), "oauth", []string{"crm:read"}, []string{"crm:read"}, "crm.lookup",
			strings.Repeat("ab", 32), fmt.Sprintf("crm://%s/contacts/%d", x, i), tenant, dec, fmt.Sprintf("trace-%s-%d", x, i/10), fmt.Sprintf("span-%s-%d", x, i),
			map[string]string{"k": "v"}, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	sb, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".spans (tenant_id, start_time, duration_ns, trace_id, span_id, parent_span_id, name, kind, status_code, service_name, operation_name, agent_id, tool_name, request_model, input_tokens, output_tokens)")
	if err != nil {
		t.Fatal(err)
	}
	for tr := 0; tr*10 < n; tr++ {
		st := at.Add(time.Duration(tr*10)*time.Minute + time.Second)
		root := fmt.Sprintf("span-%s-root-%d", x, tr)
		for j := range 3 {
			sid, parent, name, op := fmt.Sprintf("span-%s-t%d-%d", x, tr, j), root, "execute_tool crm.lookup", "execute_tool"
			if j == 0 {
				sid, parent, name, op = root, "", "invoke_agent planner", "invoke_agent"
			}
			s := st.Add(time.Duration(j) * time.Millisecond)
			if err := sb.Append(tenant, s, uint64(5e6), fmt.Sprintf("trace-%s-%d", x, tr), sid, parent, name, "internal", "ok", "agent-runtime", op,
				ids.agent, "crm.lookup", "gpt-x", uint64(10*(j+1)), uint64(j+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := sb.Send(); err != nil {
		t.Fatal(err)
	}
	ids.detection = uuid.NewSHA1(uuid.NameSpaceOID, []byte(tenant))
	exec(t, conn, "INSERT INTO "+db+".detections (detection_id, ts, event_ts, rule_id, severity, tenant_id, agent_id, parent_identity, token_id, token_type, tool_name, resource_tenant_id, evidence_event_ids, trace_id, summary, suppressed_count, version) VALUES (?, ?, ?, 'scope_escalation.out_of_delegation', 'critical', ?, ?, 'alice', ?, 'oauth', 'crm.lookup', ?, ?, ?, 'escalation', 0, 1)",
		ids.detection, at.Add(5*time.Minute), at.Add(4*time.Minute), tenant, ids.agent, ids.token, tenant, []uuid.UUID{ids.events[4]}, ids.trace)
	// A newer version of the same detection: readers must see only it.
	exec(t, conn, "INSERT INTO "+db+".detections (detection_id, ts, event_ts, rule_id, severity, tenant_id, agent_id, parent_identity, token_id, token_type, tool_name, resource_tenant_id, evidence_event_ids, trace_id, summary, suppressed_count, version) VALUES (?, ?, ?, 'scope_escalation.out_of_delegation', 'critical', ?, ?, 'alice', ?, 'oauth', 'crm.lookup', ?, ?, ?, 'escalation', 3, 2)",
		ids.detection, at.Add(5*time.Minute), at.Add(4*time.Minute), tenant, ids.agent, ids.token, tenant, []uuid.UUID{ids.events[4]}, ids.trace)
	for attempt := 1; attempt <= 2; attempt++ {
		exec(t, conn, "INSERT INTO "+db+".webhook_deliveries (delivery_id, detection_id, ts, tenant_id, endpoint, kind, token_id, attempt, status_code, outcome, latency_ms, error) VALUES (?, ?, ?, ?, 'soc', 'revoke', ?, ?, ?, ?, 12.5, '')",
			"msg-"+x, ids.detection, at.Add(time.Duration(5+attempt)*time.Minute), tenant, ids.token, uint16(attempt), uint16(500-300*(attempt-1)), map[int]string{1: "retry", 2: "success"}[attempt])
	}
	exec(t, conn, "INSERT INTO "+db+".revocations (tenant_id, token_id, token_type, agent_id, ts, detection_id, delivery_id, rule_id, reason) VALUES (?, ?, 'oauth', ?, ?, ?, ?, 'scope_escalation.out_of_delegation', 'escalation')",
		tenant, ids.token, ids.agent, at.Add(7*time.Minute), ids.detection, "msg-"+x)
	return ids
}

func exec(t *testing.T, conn driver.Conn, sql string, args ...any) {
	t.Helper()
	if err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rangeQS is a from/to query string covering the seed data.
func rangeQS() string {
	return "from=" + base.Add(-time.Hour).Format(time.RFC3339) + "&to=" + base.Add(30*24*time.Hour).Format(time.RFC3339)
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
