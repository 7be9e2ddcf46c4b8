package retention

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

type indexRow struct{ tenant, trace, source string }

// ttlMerges stops or starts the TTL merges of trace_index. The tests insert
// data that is past its age already, which a deployment never sees: its
// data ages in place, and the index goes a day after the data is due. Here
// the index's TTL merges wait until the data side has deleted its due rows.
func (e *env) ttlMerges(t *testing.T, verb string) {
	t.Helper()
	if err := e.conn.Exec(context.Background(), "SYSTEM "+verb+" TTL MERGES `"+e.db+"`.trace_index"); err != nil {
		t.Fatal(err)
	}
}

func (e *env) indexRows(t *testing.T) []indexRow {
	t.Helper()
	rows, err := e.conn.Query(context.Background(), "SELECT DISTINCT tenant_id, trace_id, toString(source) FROM trace_index ORDER BY 1, 2, 3")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []indexRow
	for rows.Next() {
		var r indexRow
		if err := rows.Scan(&r.tenant, &r.trace, &r.source); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// unindexed lists the stored spans and audit events whose (tenant, trace,
// hour) has no trace_index row of their table: rows trace reconstruction
// would miss. It must always be empty.
func (e *env) unindexed(t *testing.T) []string {
	t.Helper()
	rows, err := e.conn.Query(context.Background(), `
		SELECT d.source, d.tenant_id, d.trace_id, toString(d.hour) FROM (
			SELECT 'span' AS source, tenant_id, trace_id, toStartOfHour(start_time) AS hour FROM spans WHERE trace_id != ''
			UNION ALL
			SELECT 'event', tenant_id, trace_id, toStartOfHour(ts) FROM audit_events WHERE trace_id != ''
		) AS d
		LEFT ANTI JOIN (SELECT toString(source) AS source, tenant_id, trace_id, hour FROM trace_index) AS i
		ON d.source = i.source AND d.tenant_id = i.tenant_id AND d.trace_id = i.trace_id AND d.hour = i.hour
		ORDER BY 1, 2, 3`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s, tenant, trace, hour string
		if err := rows.Scan(&s, &tenant, &trace, &hour); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s/%s at %s", s, tenant, trace, hour))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// trace_index follows the retention of what it indexes: after a policy is
// applied its TTL is the one derived from the spans and audit_events rules,
// and TTL merges delete the index rows of deleted data while every stored
// span and event keeps its index row (per tenant override, across a legal
// hold, and for the rows written before the index recorded its source).
func TestTraceIndexAgesLikeTheRowsItIndexes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	e.fastTTL(t, Spans, AuditEvents, TraceIndex)

	// Spans 90 days, audit events 400 (the shipped policy); tenant "long"
	// keeps spans 200 days, tenant "forever" keeps its spans.
	p := DefaultPolicy()
	p.Tenants = map[string]map[Class]Rule{
		"long":    {Spans: {ColdAfter: 7 * Day, DeleteAfter: 200 * Day}},
		"forever": {Spans: {ColdAfter: 7 * Day}},
	}
	res, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ti := res.Tables[len(res.Tables)-1]
	if ti.Class != TraceIndex || ti.State != "changed" || ti.TTL != RenderTTL(TraceIndex, p, nil, TableShape{}) {
		t.Fatalf("trace_index result: %+v", ti)
	}
	if _, _, err := e.m.PlaceHold(ctx, HoldRequest{TenantID: "held", AgentID: "a1", Reason: "incident 7", By: "soc"}); err != nil {
		t.Fatal(err)
	}

	// The TTL in force is the one rendered from the policy and the hold.
	want, err := e.m.canonicalTTL(ctx, TraceIndex, RenderTTL(TraceIndex, p, []Hold{{TenantID: "held", AgentID: "a1"}}, TableShape{}))
	if err != nil {
		t.Fatal(err)
	}
	create := e.createQuery(t, TraceIndex)
	if !hasTTL(create, want) {
		t.Fatalf("trace_index TTL:\n%s\nwant:\n%s", create, want)
	}
	for _, frag := range []string{
		"toStartOfDay(hour) + toIntervalDay(2)) + toIntervalDay(90) WHERE (source = 'span') AND (tenant_id NOT IN ('forever', 'long')) AND (NOT (tenant_id IN ('held')))",
		"toIntervalDay(400) WHERE (source = 'event') AND (NOT (tenant_id IN ('held')))",
	} {
		if !strings.Contains(create, frag) {
			t.Errorf("trace_index TTL lacks %q:\n%s", frag, create)
		}
	}
	st, err := e.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Tables[len(st.Tables)-1]; s.Class != TraceIndex || !s.Exists || s.TTL != want || s.TTLOnlyDropParts {
		t.Fatalf("status of trace_index: %+v", s)
	}

	e.ttlMerges(t, "STOP")
	now := time.Now().UTC()
	ago := func(days int) time.Time { return now.Add(-time.Duration(days) * Day) }
	span := func(tenant, agent, trace string, at time.Time) {
		t.Helper()
		if err := e.conn.Exec(ctx, "INSERT INTO spans (tenant_id, agent_id, trace_id, span_id, start_time) VALUES (?, ?, ?, toString(generateUUIDv4()), ?)", tenant, agent, trace, at); err != nil {
			t.Fatal(err)
		}
	}
	event := func(tenant, trace string, at time.Time) {
		t.Helper()
		if err := e.conn.Exec(ctx, "INSERT INTO audit_events (event_id, ts, tenant_id, agent_id, token_id, token_type, tool_name, policy_decision, trace_id) VALUES (generateUUIDv4(), ?, ?, 'a1', 'tok', 'm2m', 'crm.lookup', 'allow', ?)", at, tenant, trace); err != nil {
			t.Fatal(err)
		}
	}
	span("free", "a1", "span-expired", ago(93))
	span("free", "a1", "span-kept", ago(88))
	span("free", "a1", "mixed", ago(93)) // span deleted, event of the same hour kept
	event("free", "mixed", ago(93))
	event("free", "event-expired", ago(405))
	event("free", "event-kept", ago(395))
	span("long", "a1", "override-kept", ago(150))
	span("long", "a1", "override-expired", ago(203))
	span("forever", "a1", "forever", ago(1000))
	span("held", "a1", "held", ago(150))
	span("held", "a2", "held", ago(150))
	span("held", "a2", "held-other-agent", ago(150))
	// Rows indexed before migration 0040 have no source ('any'): aged by
	// the longer rule of the tenant, 400 days here.
	for trace, days := range map[string]int{"legacy-kept": 395, "legacy-expired": 405} {
		if err := e.conn.Exec(ctx, "INSERT INTO trace_index (tenant_id, trace_id, hour) VALUES ('free', ?, toStartOfHour(?))", trace, ago(days)); err != nil {
			t.Fatal(err)
		}
	}

	wantRows := []indexRow{
		{"forever", "forever", "span"},
		{"free", "event-kept", "event"},
		{"free", "legacy-kept", "any"},
		{"free", "mixed", "event"},
		{"free", "span-kept", "span"},
		{"held", "held", "span"},
		{"held", "held-other-agent", "span"}, // the hold on a1 keeps the tenant's index
		{"long", "override-kept", "span"},
	}
	// The data side deletes what the policy says (every rule here has a
	// WHERE: OPTIMIZE FINAL applies them row by row)...
	for _, c := range []Class{Spans, AuditEvents} {
		if err := e.conn.Exec(ctx, "OPTIMIZE TABLE "+string(c)+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.count(t, Spans, "trace_id IN ('span-expired', 'mixed', 'override-expired', 'held-other-agent')"); n != 0 {
		t.Fatalf("%d expired spans left", n)
	}
	if n := e.count(t, AuditEvents, "trace_id = 'event-expired'"); n != 0 {
		t.Fatalf("%d expired events left", n)
	}
	if n := e.count(t, Spans, "trace_id = 'held'"); n != 1 {
		t.Fatalf("held trace: %d spans, want the held agent's one", n)
	}
	// ...then the index follows.
	e.ttlMerges(t, "START")
	var got []indexRow
	eventually(t, 60*time.Second, "expired trace_index rows deleted", func() bool {
		if err := e.conn.Exec(ctx, "OPTIMIZE TABLE trace_index FINAL"); err != nil {
			t.Fatal(err)
		}
		if missing := e.unindexed(t); len(missing) > 0 {
			t.Fatalf("stored rows without their index row: %v", missing)
		}
		got = e.indexRows(t)
		return slices.Equal(got, wantRows)
	})
}

// An index row outlives its own rows by up to a day because its data can:
// with an unconditional spans rule (ttl_only_drop_parts) the daily part of
// spans is dropped only once its newest row is due, so a span due hours ago
// is still stored, and still read by trace reconstruction, while a span of
// the same day is not due yet. Its index row must stay; the index of a day
// whose spans are all gone goes.
func TestTraceIndexWaitsForTheWholeDayOfItsData(t *testing.T) {
	t.Parallel()
	floors := DefaultFloors()
	floors[Spans] = time.Second
	e := newEnv(t, floors)
	ctx := context.Background()
	e.fastTTL(t, Spans, TraceIndex)

	// Choose the spans age so that rows of 12:00 yesterday-or-so are due
	// right now: X = now - age is 12:00 UTC of the day before today.
	now := time.Now().UTC().Truncate(time.Second)
	x := now.Truncate(Day).Add(-Day + 12*time.Hour)
	p := DefaultPolicy()
	p.Classes[Spans] = Rule{DeleteAfter: now.Sub(x)}
	if _, err := e.m.Apply(ctx, p, ApplyOptions{Actor: "test", AllowBelowFloor: true, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if q := e.createQuery(t, Spans); !strings.Contains(q, "ttl_only_drop_parts = 1") || !strings.HasPrefix(storedTTL(q), "start_time + toIntervalSecond(") || strings.Contains(storedTTL(q), "WHERE") {
		t.Fatalf("spans should have an unconditional rule dropping parts: %s", q)
	}
	e.ttlMerges(t, "STOP")
	// One part for the day of x: a span due 2 h ago and one due in 2 h.
	err := e.conn.Exec(ctx, "INSERT INTO spans (tenant_id, trace_id, span_id, start_time) VALUES ('acme', 'due', 's1', ?), ('acme', 'not-due', 's2', ?)",
		x.Add(-2*time.Hour), x.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Two days before: all due a day ago, part and index go.
	if err := e.conn.Exec(ctx, "INSERT INTO spans (tenant_id, trace_id, span_id, start_time) VALUES ('acme', 'old', 's3', ?)", x.Add(-2*Day)); err != nil {
		t.Fatal(err)
	}
	// Spans are left to their TTL merges: OPTIMIZE FINAL deletes due rows
	// one by one whatever ttl_only_drop_parts says (seen on the engine).
	eventually(t, 60*time.Second, "the part of two days before dropped", func() bool { return e.count(t, Spans, "trace_id = 'old'") == 0 })
	e.ttlMerges(t, "START")
	want := []indexRow{{"acme", "due", "span"}, {"acme", "not-due", "span"}}
	eventually(t, 60*time.Second, "the index of the expired day deleted", func() bool {
		if err := e.conn.Exec(ctx, "OPTIMIZE TABLE trace_index FINAL"); err != nil {
			t.Fatal(err)
		}
		if missing := e.unindexed(t); len(missing) > 0 {
			t.Fatalf("stored rows without their index row: %v", missing)
		}
		return slices.Equal(e.indexRows(t), want)
	})
	if n := e.count(t, Spans, "trace_id = 'due'"); n != 1 {
		t.Fatalf("the due span of a part not yet droppable: %d rows (the premise of this test)", n)
	}
}
