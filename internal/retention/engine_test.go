package retention

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/schema"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// syncBuffer is a log sink tests can read while the manager writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	conn driver.Conn
	db   string
	m    *Manager
	logs *syncBuffer
}

// newEnv is a fresh database with the shipped schema on the tiered storage
// policy and a Manager on it. Floors are scaled to seconds like the
// policies of the tests that need the engine to act while they wait.
func newEnv(t *testing.T, floors Floors) *env {
	t.Helper()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(context.Background(), conn, ms, migrate.Options{Database: db, StoragePolicy: chdb.StoragePolicy}); err != nil {
		t.Fatal(err)
	}
	// query_audit is the query API's table, and retention must work with
	// and without it (a deployment without the query API has none): these
	// tests start without it and create it where they cover that case.
	if err := conn.Exec(context.Background(), "DROP TABLE query_audit SYNC"); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	m, err := New(conn, Options{Database: db, Floors: floors, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &env{conn: conn, db: db, m: m, logs: logs}
}

// fastTTL lets TTL merges run a second apart instead of every 4 hours.
func (e *env) fastTTL(t *testing.T, tables ...Class) {
	t.Helper()
	for _, c := range tables {
		if err := e.conn.Exec(context.Background(), "ALTER TABLE `"+e.db+"`."+string(c)+" MODIFY SETTING merge_with_ttl_timeout = 1"); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) createQuery(t *testing.T, c Class) string {
	t.Helper()
	var q string
	if err := e.conn.QueryRow(context.Background(), "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", e.db, string(c)).Scan(&q); err != nil {
		t.Fatal(err)
	}
	return q
}

func (e *env) count(t *testing.T, c Class, where string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM "+string(c)+" WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// insertEvents writes n audit events of tenant/agent at ts.
func (e *env) insertEvents(t *testing.T, tenant, agent string, ts time.Time, n int) {
	t.Helper()
	err := e.conn.Exec(context.Background(),
		"INSERT INTO audit_events (event_id, ts, tenant_id, agent_id, token_id, token_type, tool_name, policy_decision) SELECT generateUUIDv4(), ?, ?, ?, 'tok', 'm2m', 'crm.lookup', 'allow' FROM numbers(?)",
		ts, tenant, agent, n)
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) insertDeliveries(t *testing.T, tenant string, ts time.Time, n int) {
	t.Helper()
	err := e.conn.Exec(context.Background(),
		"INSERT INTO webhook_deliveries (delivery_id, detection_id, ts, tenant_id, endpoint, kind, attempt, outcome) SELECT toString(generateUUIDv4()), generateUUIDv4(), ?, ?, 'soc', 'notify', 1, 'delivered' FROM numbers(?)",
		ts, tenant, n)
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(200 * time.Millisecond) // polling interval, not a guess at timing
	}
}

func (e *env) disks(t *testing.T, c Class) map[string]uint64 {
	t.Helper()
	rows, err := e.conn.Query(context.Background(), "SELECT disk_name, sum(rows) FROM system.parts WHERE database = ? AND table = ? AND active GROUP BY disk_name", e.db, string(c))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var d string
		var n uint64
		if err := rows.Scan(&d, &n); err != nil {
			t.Fatal(err)
		}
		out[d] = n
	}
	return out
}

// secondsPolicy is the shipped policy with audit events and deliveries
// scaled to seconds: cold after `cold`, deleted after `del`.
func secondsPolicy(cold, del time.Duration) Policy {
	p := DefaultPolicy()
	p.Classes[AuditEvents] = Rule{ColdAfter: cold, DeleteAfter: del}
	p.Classes[WebhookDeliveries] = Rule{ColdAfter: cold, DeleteAfter: del}
	return p
}

func secondFloors() Floors {
	f := DefaultFloors()
	f[AuditEvents] = 10 * time.Second
	f[WebhookDeliveries] = 10 * time.Second
	return f
}

// Rows move from the hot to the cold volume when due and are deleted when
// due, not before; the status view shows both on the way.
func TestRowsMoveToColdThenExpireOnTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, secondFloors())
	ctx := context.Background()
	e.fastTTL(t, AuditEvents)
	const cold, del = 60 * time.Second, 75 * time.Second
	if _, err := e.m.Apply(ctx, secondsPolicy(cold, del), ApplyOptions{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	// Rows 55 s old: due on cold in 5 s, due for deletion in 20 s.
	ts := time.Now().Add(-55 * time.Second).Truncate(time.Second)
	e.insertEvents(t, "acme", "agent-1", ts, 100)
	if d := e.disks(t, AuditEvents); d[chdb.HotVolume] != 100 || d[chdb.ColdVolume] != 0 {
		t.Fatalf("before the move is due: %v", d)
	}
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hot := volume(t, st, AuditEvents, chdb.HotVolume)
	if hot.Rows != 100 || !hot.NextMoveDue.Equal(ts.Add(cold)) || !hot.NextDeleteDue.Equal(ts.Add(del)) || !hot.Oldest.Equal(ts) {
		t.Fatalf("status before the move: %+v (rows at %s)", hot, ts)
	}

	eventually(t, 30*time.Second, "rows on the cold disk", func() bool { return e.disks(t, AuditEvents)[chdb.ColdVolume] == 100 })
	if now := time.Now(); now.Before(ts.Add(cold)) {
		t.Fatalf("moved at %s, before it was due at %s", now, ts.Add(cold))
	}
	if n := e.count(t, AuditEvents, "1"); n != 100 && time.Now().Before(ts.Add(del)) {
		t.Fatalf("%d rows left before they were due for deletion", n)
	}
	st, err = e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := volume(t, st, AuditEvents, chdb.ColdVolume); c.Rows != 100 || c.Disk != "cold" || !c.NextMoveDue.IsZero() {
		t.Fatalf("status after the move: %+v", c)
	}

	eventually(t, 45*time.Second, "rows deleted", func() bool { return e.count(t, AuditEvents, "1") == 0 })
	if now := time.Now(); now.Before(ts.Add(del)) {
		t.Fatalf("deleted at %s, before due at %s", now, ts.Add(del))
	}
}

func volume(t *testing.T, st *Status, c Class, vol string) VolumeStatus {
	t.Helper()
	for _, ts := range st.Tables {
		if ts.Class != c {
			continue
		}
		for _, v := range ts.Volumes {
			if v.Volume == vol {
				return v
			}
		}
		t.Fatalf("%s has no rows on volume %s: %+v", c, vol, ts.Volumes)
	}
	t.Fatalf("no status for %s", c)
	return VolumeStatus{}
}

// A held tenant's rows (and a held agent's) survive past their expiry,
// even through OPTIMIZE FINAL, while everyone else's are deleted; once the
// hold is lifted they are deleted too. Placing and lifting are audited.
func TestLegalHoldKeepsRowsPastExpiryUntilReleased(t *testing.T) {
	t.Parallel()
	e := newEnv(t, secondFloors())
	ctx := context.Background()
	e.fastTTL(t, AuditEvents, WebhookDeliveries)
	if _, err := e.m.Apply(ctx, secondsPolicy(5*time.Second, 20*time.Second), ApplyOptions{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	tenantHold, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "held", Reason: "litigation 2026-17", By: "counsel@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	agentHold, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "partial", AgentID: "agent-x", Reason: "incident 42", By: "soc@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	// Merges run again after the fence: OPTIMIZE fails while they are stopped.
	if err := e.conn.Exec(ctx, "OPTIMIZE TABLE audit_events"); err != nil {
		t.Fatalf("merges left stopped: %v", err)
	}

	// Rows already 15 s old: due for deletion in 5 s.
	ts := time.Now().Add(-15 * time.Second)
	e.insertEvents(t, "held", "agent-1", ts, 50)
	e.insertEvents(t, "partial", "agent-x", ts, 30)
	e.insertEvents(t, "partial", "agent-y", ts, 20)
	e.insertEvents(t, "free", "agent-1", ts, 40)
	e.insertDeliveries(t, "partial", ts, 10) // no agent_id column: the whole tenant is held
	e.insertDeliveries(t, "free", ts, 10)

	eventually(t, 45*time.Second, "unheld rows deleted", func() bool {
		return e.count(t, AuditEvents, "tenant_id = 'free' OR agent_id = 'agent-y'") == 0 &&
			e.count(t, WebhookDeliveries, "tenant_id = 'free'") == 0
	})
	for _, tbl := range []string{"audit_events", "webhook_deliveries"} {
		if err := e.conn.Exec(ctx, "OPTIMIZE TABLE "+tbl+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.count(t, AuditEvents, "tenant_id = 'held'"); n != 50 {
		t.Fatalf("held tenant: %d of 50 rows left", n)
	}
	if n := e.count(t, AuditEvents, "agent_id = 'agent-x'"); n != 30 {
		t.Fatalf("held agent: %d of 30 rows left", n)
	}
	if n := e.count(t, WebhookDeliveries, "tenant_id = 'partial'"); n != 10 {
		t.Fatalf("deliveries of a tenant with a held agent: %d of 10 left", n)
	}

	if _, _, err := e.m.ReleaseHold(ctx, tenantHold.ID, "counsel@example.com", "case closed"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 45*time.Second, "released tenant's rows deleted", func() bool { return e.count(t, AuditEvents, "tenant_id = 'held'") == 0 })
	if n := e.count(t, AuditEvents, "agent_id = 'agent-x'"); n != 30 {
		t.Fatalf("still-held agent after the other release: %d of 30 rows left", n)
	}
	if _, _, err := e.m.ReleaseHold(ctx, tenantHold.ID, "counsel@example.com", "again"); !errors.Is(err, ErrHoldNotFound) {
		t.Fatalf("releasing twice: %v", err)
	}

	active, err := e.m.Holds(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[0].ID != agentHold.ID || active[0].AgentID != "agent-x" || active[0].PlacedBy != "soc@example.com" {
		t.Fatalf("active holds: %+v", active)
	}
	all, err := e.m.Holds(ctx, "held", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || !all[0].Released || all[0].ReleasedBy != "counsel@example.com" || all[0].ReleaseReason != "case closed" || all[0].Reason != "litigation 2026-17" {
		t.Fatalf("released hold: %+v", all)
	}
	var trail []string
	rows, err := e.conn.Query(ctx, "SELECT action || ' ' || tenant_id || ' ' || actor || ' ' || reason FROM retention_audit WHERE action LIKE 'hold_%' ORDER BY ts, action")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		trail = append(trail, s)
	}
	rows.Close()
	want := []string{
		"hold_placed held counsel@example.com litigation 2026-17",
		"hold_placed partial soc@example.com incident 42",
		"hold_released held counsel@example.com case closed",
	}
	if strings.Join(trail, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit trail:\n%s\nwant:\n%s", strings.Join(trail, "\n"), strings.Join(want, "\n"))
	}
}

// A hold placed with no policy applied yet is recorded; the first apply
// puts it into the TTLs. ApplyIfNone applies only that first time.
func TestHoldBeforeAnyPolicyIsInForceFromTheFirstApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "early", Reason: "r", By: "b"}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.createQuery(t, AuditEvents), " TTL ") {
		t.Fatal("a TTL appeared without a policy")
	}
	if _, applied, err := e.m.ApplyIfNone(ctx, DefaultPolicy(), ApplyOptions{Actor: "test"}); err != nil || !applied {
		t.Fatalf("first ApplyIfNone: %v %v", applied, err)
	}
	other := DefaultPolicy()
	other.Classes[Spans] = Rule{ColdAfter: Day, DeleteAfter: 31 * Day}
	if _, applied, err := e.m.ApplyIfNone(ctx, other, ApplyOptions{Actor: "test"}); err != nil || applied {
		t.Fatalf("ApplyIfNone over an applied policy: %v %v", applied, err)
	}
	if q := e.createQuery(t, Spans); !strings.Contains(q, "toIntervalDay(90)") {
		t.Fatalf("ApplyIfNone replaced the policy in force: %s", q)
	}
	for _, c := range []Class{Spans, AuditEvents, Detections, WebhookDeliveries} {
		if q := e.createQuery(t, c); !strings.Contains(q, "NOT (tenant_id IN ('early'))") {
			t.Errorf("%s TTL does not exclude the held tenant: %s", c, q)
		}
	}
	if _, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "bad tenant", Reason: "r", By: "b"}); !errors.Is(err, ErrInvalidHold) {
		t.Fatalf("tenant id with a space: %v", err)
	}
	if _, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "t", By: "b"}); !errors.Is(err, ErrInvalidHold) {
		t.Fatalf("no reason: %v", err)
	}
}

// Applying the same policy twice changes nothing the second time: no
// statement, no table definition change, no audit row.
func TestApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	p := DefaultPolicy()
	p.Tenants = map[string]map[Class]Rule{"acme-bank": {AuditEvents: {ColdAfter: 60 * Day, DeleteAfter: 3653 * Day}}}
	if _, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "wayne", AgentID: "agent-7", Reason: "r", By: "b"}); err != nil {
		t.Fatal(err)
	}

	first, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Changed != 5 {
		t.Fatalf("first apply changed %d tables, want 5 (four classes and trace_index): %+v", first.Changed, first.Tables)
	}
	for _, tr := range first.Tables {
		if tr.Class == QueryAudit {
			if tr.State != "skipped" || !strings.Contains(tr.Note, "does not exist") {
				t.Errorf("query_audit: %+v", tr)
			}
			continue
		}
		if got := strings.Contains(e.createQuery(t, tr.Class), "ttl_only_drop_parts = 1"); got != (tr.Class != TraceIndex) {
			t.Errorf("%s: ttl_only_drop_parts = 1 is %v", tr.Class, got)
		}
	}
	before := map[Class]string{}
	for _, c := range append(Classes()[:4], TraceIndex) {
		before[c] = e.createQuery(t, c)
	}
	var audits uint64
	_ = e.conn.QueryRow(ctx, "SELECT count() FROM retention_audit").Scan(&audits)

	second, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Changed != 0 {
		t.Fatalf("second apply changed %d tables: %+v", second.Changed, second.Tables)
	}
	for _, tr := range second.Tables {
		if len(tr.Statements) != 0 || tr.State == "changed" {
			t.Errorf("%s: %s %v", tr.Class, tr.State, tr.Statements)
		}
		if tr.Class == QueryAudit {
			continue
		}
		if got := e.createQuery(t, tr.Class); got != before[tr.Class] {
			t.Errorf("%s changed:\n%s\n%s", tr.Class, before[tr.Class], got)
		}
	}
	var audits2 uint64
	_ = e.conn.QueryRow(ctx, "SELECT count() FROM retention_audit").Scan(&audits2)
	if audits2 != audits {
		t.Errorf("second apply recorded %d audit rows", audits2-audits)
	}

	// A different policy changes exactly the class that differs, and the
	// index of its rows.
	p.Classes[Spans] = Rule{ColdAfter: 3 * Day, DeleteAfter: 60 * Day}
	third, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if last := third.Tables[len(third.Tables)-1]; third.Changed != 2 || third.Tables[0].Class != Spans || third.Tables[0].State != "changed" ||
		last.Class != TraceIndex || last.State != "changed" || !strings.Contains(last.TTL, "toIntervalDay(60) DELETE WHERE source = 'span'") {
		t.Fatalf("changing spans: %+v", third.Tables)
	}
	// A detections change leaves trace_index alone.
	p.Classes[Detections] = Rule{ColdAfter: 30 * Day, DeleteAfter: 800 * Day}
	fourth, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if fourth.Changed != 1 || fourth.Tables[2].Class != Detections || fourth.Tables[2].State != "changed" {
		t.Fatalf("changing detections: %+v", fourth.Tables)
	}
}

// A policy under a floor is refused and nothing is applied; with the
// override it is applied, logged at warn and recorded.
func TestPolicyUnderTheFloorIsRefusedUnlessOverridden(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	p := DefaultPolicy()
	p.Classes[AuditEvents] = Rule{ColdAfter: 7 * Day, DeleteAfter: 30 * Day}

	_, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "ops"})
	if !errors.Is(err, ErrBelowFloor) || !strings.Contains(err.Error(), "audit_events (class default): delete after 30 days is under the floor of 183 days") {
		t.Fatalf("got %v", err)
	}
	for _, c := range Classes()[:4] {
		if strings.Contains(e.createQuery(t, c), " TTL ") {
			t.Fatalf("%s got a TTL from a refused policy", c)
		}
	}
	if _, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "ops", AllowBelowFloor: true}); !errors.Is(err, ErrBelowFloor) {
		t.Fatalf("override without a reason: %v", err)
	}

	res, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "ops", AllowBelowFloor: true, Reason: "test tenant data only"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.FloorOverrides) != 1 || res.Changed != 5 {
		t.Fatalf("result: %+v", res)
	}
	if !strings.Contains(e.createQuery(t, AuditEvents), "toIntervalDay(30)") {
		t.Fatalf("audit_events TTL: %s", e.createQuery(t, AuditEvents))
	}
	again, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "ops", AllowBelowFloor: true, Reason: "test tenant data only"})
	if err != nil || again.Changed != 0 {
		t.Fatalf("re-applying the overridden policy: %+v %v", again, err)
	}
	var overrides uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM retention_audit WHERE action = 'floor_override'").Scan(&overrides); err != nil || overrides != 1 {
		t.Fatalf("override recorded %d times (%v), want once", overrides, err)
	}
	var actor, class, reason, details string
	if err := e.conn.QueryRow(ctx, "SELECT actor, class, reason, details FROM retention_audit WHERE action = 'floor_override'").Scan(&actor, &class, &reason, &details); err != nil {
		t.Fatal(err)
	}
	if actor != "ops" || class != "audit_events" || reason != "test tenant data only" || !strings.Contains(details, "4392h0m0s") {
		t.Fatalf("recorded override: %s %s %s %s", actor, class, reason, details)
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"level":"WARN"`) || !strings.Contains(logs, "under the floor") || !strings.Contains(logs, `"class":"audit_events"`) {
		t.Fatalf("override not logged at warn:\n%s", logs)
	}
}

// A dry run returns the DDL and changes nothing.
func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	before := e.createQuery(t, Spans)
	res, err := e.m.Apply(ctx, DefaultPolicy(), ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	sp := res.Tables[0]
	if sp.State != "would change" || len(sp.Statements) != 6 {
		t.Fatalf("spans: %+v", sp)
	}
	want := fmt.Sprintf("ALTER TABLE `%s`.`spans` MODIFY TTL start_time + toIntervalDay(7) TO VOLUME 'cold', start_time + toIntervalDay(90) DELETE SETTINGS materialize_ttl_after_modify = 0", e.db)
	if sp.Statements[3] != want || !strings.HasPrefix(sp.Statements[1], "SYSTEM STOP MERGES") || !strings.HasPrefix(sp.Statements[2], "--") {
		t.Fatalf("statements:\n%s", strings.Join(sp.Statements, "\n"))
	}
	if after := e.createQuery(t, Spans); after != before {
		t.Fatalf("dry run changed spans:\n%s", after)
	}
	if _, ok, err := e.m.CurrentPolicy(ctx); err != nil || ok {
		t.Fatalf("dry run recorded a policy: %v %v", ok, err)
	}
}

// query_audit is owned by the query API's migration; once it exists it is
// managed like the others.
func TestQueryAuditIsManagedOnceItExists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if qa := st.Tables[4]; qa.Class != QueryAudit || qa.Exists || !strings.Contains(qa.Note, "does not exist") {
		t.Fatalf("status of a missing query_audit: %+v", qa)
	}
	if err := e.conn.Exec(ctx, "CREATE TABLE query_audit (tenant_id LowCardinality(String), ts DateTime64(3, 'UTC'), principal String, rows UInt64) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (tenant_id, ts) SETTINGS storage_policy = 'tiered'"); err != nil {
		t.Fatal(err)
	}
	res, err := e.m.Apply(ctx, DefaultPolicy(), ApplyOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed != 6 {
		t.Fatalf("changed %d: %+v", res.Changed, res.Tables)
	}
	if q := e.createQuery(t, QueryAudit); !strings.Contains(q, "TTL ts + toIntervalDay(90) TO VOLUME 'cold', ts + toIntervalDay(730)") {
		t.Fatalf("query_audit: %s", q)
	}
}

// The tenant-scoped status shows the asked tenants' rows per volume, their
// ages and holds, and nothing of other tenants.
func TestTenantStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.m.Apply(ctx, DefaultPolicy(), ApplyOptions{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-40 * Day).Truncate(time.Second)
	recent := time.Now().Add(-Day).Truncate(time.Second)
	e.insertEvents(t, "acme", "agent-1", old, 3) // past cold_after at insert: written to cold
	e.insertEvents(t, "acme", "agent-2", recent, 2)
	e.insertEvents(t, "globex", "agent-1", recent, 7)
	if _, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "acme", AgentID: "agent-1", Reason: "r", By: "b"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "globex", Reason: "r", By: "b"}); err != nil {
		t.Fatal(err)
	}

	rep, err := e.m.TenantStatus(ctx, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.PolicyApplied || len(rep.Classes) != len(Classes()) || len(rep.Holds) != 1 || rep.Holds[0].TenantID != "acme" {
		t.Fatalf("report: %+v", rep)
	}
	var ae, wd, qa TenantClassStatus
	for _, c := range rep.Classes {
		if c.TenantID != "acme" {
			t.Fatalf("other tenant in the report: %+v", c)
		}
		switch c.Class {
		case AuditEvents:
			ae = c
		case WebhookDeliveries:
			wd = c
		case QueryAudit:
			qa = c
		}
	}
	want := []TenantVolume{
		{Volume: "cold", Disk: "cold", Rows: 3, Oldest: old, Newest: old},
		{Volume: "hot", Disk: "hot", Rows: 2, Oldest: recent, Newest: recent},
	}
	if fmt.Sprint(ae.Volumes) != fmt.Sprint(want) {
		t.Fatalf("audit_events volumes:\n got %v\nwant %v", ae.Volumes, want)
	}
	if ae.Held || fmt.Sprint(ae.HeldAgents) != "[agent-1]" || !ae.NextDeleteDue.IsZero() ||
		!ae.NextMoveDue.Equal(recent.Add(30*Day)) || ae.DeleteAfterSeconds != int64(400*Day/time.Second) {
		t.Fatalf("audit_events: %+v", ae)
	}
	if !wd.Held || len(wd.Volumes) != 0 {
		t.Fatalf("webhook_deliveries (no agent_id column: an agent hold holds the tenant): %+v", wd)
	}
	if qa.Exists || qa.Note == "" {
		t.Fatalf("query_audit: %+v", qa)
	}
}

// When the TTL change fails inside the merge fence, merges are started
// again and the error says which table and statement failed.
func TestFailedTTLChangeRestartsMerges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	// A query_audit whose ts is not a time: its TTL cannot be applied.
	if err := e.conn.Exec(ctx, "CREATE TABLE query_audit (tenant_id String, ts UUID) ENGINE = MergeTree ORDER BY (tenant_id, ts) SETTINGS storage_policy = 'tiered'"); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Exec(ctx, "INSERT INTO query_audit VALUES ('a', generateUUIDv4())"); err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Exec(ctx, "INSERT INTO query_audit VALUES ('b', generateUUIDv4())"); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Apply(ctx, DefaultPolicy(), ApplyOptions{Actor: "test"})
	if err == nil || !strings.Contains(err.Error(), e.db+".query_audit") || !strings.Contains(err.Error(), "MODIFY TTL") {
		t.Fatalf("got %v", err)
	}
	// OPTIMIZE fails with "Cancelled merging parts" while merges are stopped.
	if err := e.conn.Exec(ctx, "OPTIMIZE TABLE query_audit FINAL"); err != nil {
		t.Fatalf("merges left stopped after a failed change: %v", err)
	}
	var parts uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'query_audit' AND active", e.db).Scan(&parts); err != nil || parts != 1 {
		t.Fatalf("parts after OPTIMIZE: %d %v", parts, err)
	}
}

// A table on a storage policy without the cold volume still gets its
// deletes; the move is left out and the result says why.
func TestTableWithoutColdVolumeStillDeletes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.conn.Exec(ctx, "CREATE TABLE query_audit (tenant_id String, ts DateTime64(3, 'UTC')) ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY (tenant_id, ts)"); err != nil {
		t.Fatal(err)
	}
	res, err := e.m.Apply(ctx, DefaultPolicy(), ApplyOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	qa := res.Tables[4]
	if qa.State != "changed" || !strings.Contains(qa.Note, `storage policy "default" has no volume "cold"`) {
		t.Fatalf("query_audit: %+v", qa)
	}
	if q := e.createQuery(t, QueryAudit); !strings.Contains(q, "TTL ts + toIntervalDay(730) SETTINGS") {
		t.Fatalf("query_audit: %s", q)
	}
}
