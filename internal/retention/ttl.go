package retention

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Hold is a legal hold: while it stands, TTL never deletes the rows it
// covers.
type Hold struct {
	ID            string    `json:"hold_id"`
	TenantID      string    `json:"tenant_id"`
	AgentID       string    `json:"agent_id,omitempty"` // "" holds the whole tenant
	Reason        string    `json:"reason"`
	PlacedBy      string    `json:"placed_by"`
	PlacedAt      time.Time `json:"placed_at"`
	Released      bool      `json:"released"`
	ReleasedBy    string    `json:"released_by,omitempty"`
	ReleasedAt    time.Time `json:"released_at,omitzero"`
	ReleaseReason string    `json:"release_reason,omitempty"`
}

// quote renders s as a ClickHouse string literal. Only ids that passed
// validID reach it (no quotes, backslashes or whitespace); the escaping is a
// second line of defence.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
}

// interval renders d as a ClickHouse interval function call: days when every
// value is whole days (the policy file's unit), else seconds (tests).
func intervalFunc(ds ...time.Duration) (fn string, unit time.Duration) {
	for _, d := range ds {
		if d%Day != 0 {
			return "toIntervalSecond", time.Second
		}
	}
	return "toIntervalDay", Day
}

// heldCondition is the SQL condition true for rows under a hold, "" when no
// hold covers the table. A hold on one agent covers only that agent where
// the table has an agent_id column, and the whole tenant where it has not:
// a hold never covers less than it asked for.
func heldCondition(holds []Hold, hasAgent bool) string {
	tenants := map[string]bool{}
	agents := map[string][]string{}
	for _, h := range holds {
		if h.Released {
			continue
		}
		if h.AgentID == "" || !hasAgent {
			tenants[h.TenantID] = true
		} else {
			agents[h.TenantID] = append(agents[h.TenantID], h.AgentID)
		}
	}
	var parts []string
	if len(tenants) > 0 {
		parts = append(parts, "tenant_id IN ("+quoteList(sortedKeys(tenants))+")")
	}
	for _, t := range sortedKeys(agents) {
		if tenants[t] {
			continue
		}
		a := slices.Compact(slices.Sorted(slices.Values(agents[t])))
		parts = append(parts, "(tenant_id = "+quote(t)+" AND agent_id IN ("+quoteList(a)+"))")
	}
	return strings.Join(parts, " OR ")
}

// TableShape is what RenderTTL needs to know about a class's table.
type TableShape struct {
	// HasAgent: the table has an agent_id column (holds on one agent can
	// be exact).
	HasAgent bool
	// HasCold: the table's storage policy has the cold volume. Without it
	// the move rule is left out (rows stay where they are) and deletes
	// still apply.
	HasCold bool
}

// RenderTTL turns the policy for class c into the table's TTL clause (the
// text after MODIFY TTL), "" for none.
//
// Moves: one rule; a tenant override changes the move age of that tenant's
// rows through multiIf. A part moves as a whole once every row in it is due,
// so a part mixing tenants moves with its latest-due tenant (moving later
// only costs hot disk).
//
// Deletes: with neither tenant overrides nor holds, one unconditional DELETE;
// with ttl_only_drop_parts = 1 (set on every class table) the engine then
// drops whole parts once all their rows expired instead of rewriting them
// (parts are per day: PARTITION BY toDate(ts)). Otherwise one DELETE WHERE
// per distinct delete age, each excluding held rows; DELETE WHERE rules are
// applied row by row in TTL merges whatever ttl_only_drop_parts says, which
// is what per-tenant ages need because every part mixes tenants (sort key
// starts with tenant_id, partitions are days).
//
// TraceIndex gets the rules of renderTraceIndexTTL; t is not used for it.
func RenderTTL(c Class, p Policy, holds []Hold, t TableShape) string {
	if c == TraceIndex {
		return renderTraceIndexTTL(p, holds)
	}
	ts := c.timeColumn()
	base := p.Classes[c]
	var overrides []string
	for _, tenant := range sortedKeys(p.Tenants) {
		if _, ok := p.Tenants[tenant][c]; ok {
			overrides = append(overrides, tenant)
		}
	}
	var rules []string

	// Move.
	if base.ColdAfter > 0 && t.HasCold {
		ages := []time.Duration{base.ColdAfter}
		byAge := map[time.Duration][]string{}
		for _, tenant := range overrides {
			if a := p.Tenants[tenant][c].ColdAfter; a != base.ColdAfter {
				byAge[a] = append(byAge[a], tenant)
				ages = append(ages, a)
			}
		}
		fn, unit := intervalFunc(ages...)
		expr := fmt.Sprint(int64(base.ColdAfter / unit))
		if len(byAge) > 0 {
			keys := sortedDurations(byAge)
			var b strings.Builder
			b.WriteString("multiIf(")
			for _, a := range keys {
				fmt.Fprintf(&b, "tenant_id IN (%s), %d, ", quoteList(byAge[a]), a/unit)
			}
			b.WriteString(expr + ")")
			expr = b.String()
		}
		rules = append(rules, fmt.Sprintf("%s + %s(%s) TO VOLUME %s", ts, fn, expr, quote(coldVolume)))
	}

	// Delete.
	ages := map[string]time.Duration{}
	for _, tenant := range overrides {
		ages[tenant] = p.Tenants[tenant][c].DeleteAfter
	}
	rules = append(rules, deleteRules(ts, base.DeleteAfter, ages, "", heldCondition(holds, t.HasAgent))...)
	return strings.Join(rules, ", ")
}

// deleteRules renders the DELETE rules of one table: rows of a tenant in
// ages are due at from + ages[tenant] (0: kept forever), every other row at
// from + base (0: kept forever). cond, when set, restricts every rule;
// held, when set, is excluded from every rule. One rule per distinct age:
// the default first (unconditional when there is nothing to restrict),
// then the overrides by increasing age.
func deleteRules(from string, base time.Duration, ages map[string]time.Duration, cond, held string) []string {
	byAge := map[time.Duration][]string{}
	var nonDefault []string
	for _, tenant := range sortedKeys(ages) {
		if a := ages[tenant]; a != base {
			byAge[a] = append(byAge[a], tenant)
			nonDefault = append(nonDefault, tenant)
		}
	}
	rule := func(age time.Duration, tenants string) string {
		fn, unit := intervalFunc(age)
		r := fmt.Sprintf("%s + %s(%d) DELETE", from, fn, age/unit)
		var where []string
		for _, c := range []string{cond, tenants} {
			if c != "" {
				where = append(where, c)
			}
		}
		if held != "" {
			where = append(where, "NOT ("+held+")")
		}
		if len(where) > 0 {
			r += " WHERE " + strings.Join(where, " AND ")
		}
		return r
	}
	var rules []string
	if base > 0 {
		tenants := ""
		if len(nonDefault) > 0 {
			tenants = "tenant_id NOT IN (" + quoteList(nonDefault) + ")"
		}
		rules = append(rules, rule(base, tenants))
	}
	for _, a := range sortedDurations(byAge) {
		if a == 0 {
			continue // kept forever: excluded from the default rule above
		}
		rules = append(rules, rule(a, "tenant_id IN ("+quoteList(byAge[a])+")"))
	}
	return rules
}

// traceIndexFrom is the time trace_index ages are counted from: the end of
// the day AFTER the day of the row's hour. An index row must not go before
// the rows it points to, and those outlive their own age:
//
//   - with ttl_only_drop_parts (an unconditional rule) the daily part of
//     spans or audit_events is dropped once its LAST row is due, so a row
//     of 00:30 goes with the rows of 23:59 (TestTraceIndexWaitsForTheWhole
//     DayOfItsData sees an hour-based rule lose such a row's index);
//   - due rows stay until a TTL merge of their part runs (the table setting
//     merge_with_ttl_timeout spaces them, 4 h by default), and the index's
//     own TTL merges are not ordered with the data's.
//
// So the index row is due a day after the whole day of its data is due:
// never before its rows while their TTL merges keep up, and at most two
// days after its rows' own due time (one daily partition plus that day).
const traceIndexFrom = "toStartOfDay(hour) + toIntervalDay(2)"

// renderTraceIndexTTL derives trace_index's TTL from the policy. Each row
// is aged like the table it indexes (column source, migration 0040): 'span'
// rows by the spans rule, 'event' rows by the audit_events rule, per
// tenant; 'any' rows, written before the index recorded its source, by the
// longer of the two (kept forever when either is). trace_index has no
// agent_id, so a hold on one agent keeps the index of the agent's whole
// tenant (a hold never covers less than it asked for). There is no move to
// the cold volume: the index is small and every read of it is a point
// lookup. Every rule has a WHERE (the source), so rows are deleted row by
// row in TTL merges: trace_index has no partition key, and a whole-part
// drop would wait for the newest row of the part.
func renderTraceIndexTTL(p Policy, holds []Hold) string {
	held := heldCondition(holds, false)
	tenants := sortedKeys(p.Tenants)
	agesOf := func(age func(tenant string) time.Duration) map[string]time.Duration {
		m := map[string]time.Duration{}
		for _, t := range tenants {
			m[t] = age(t)
		}
		return m
	}
	longer := func(a, b time.Duration) time.Duration {
		if a == 0 || b == 0 {
			return 0 // kept forever
		}
		return max(a, b)
	}
	spans := func(t string) time.Duration { return p.rule(Spans, t).DeleteAfter }
	events := func(t string) time.Duration { return p.rule(AuditEvents, t).DeleteAfter }
	either := func(t string) time.Duration { return longer(spans(t), events(t)) }
	var rules []string
	for _, s := range []struct {
		source string
		age    func(tenant string) time.Duration
	}{{"span", spans}, {"event", events}, {"any", either}} {
		rules = append(rules, deleteRules(traceIndexFrom, s.age(""), agesOf(s.age), "source = "+quote(s.source), held)...)
	}
	return strings.Join(rules, ", ")
}

func sortedDurations[V any](m map[time.Duration]V) []time.Duration {
	keys := make([]time.Duration, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
