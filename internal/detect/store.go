package detect

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/event"
)

const detectionColumns = `detection_id, ts, event_ts, rule_id, severity, tenant_id, agent_id, parent_identity,
token_id, token_type, tool_name, resource_tenant_id, evidence_event_ids, trace_id, summary,
suppressed_count, attributes, version`

// insertSettings are the settings of the inserts on the way to a webhook
// (detections, outbox rows): ClickHouse runs their threads at nice
// (os_thread_priority, -detect.insert.nice); 0 leaves them alone.
func insertSettings(nice int) clickhouse.Settings {
	s := clickhouse.Settings{}
	if nice != 0 {
		s["os_thread_priority"] = nice
	}
	return s
}

// insertDetections writes rows to the detections table and returns once
// ClickHouse acknowledged them. The insert carries a deduplication token
// derived from the rows' ids and versions, so a retry of an insert that was
// applied but not acknowledged is not applied twice.
func insertDetections(ctx context.Context, conn driver.Conn, ds []event.Detection, nice int) error {
	h := sha256.New()
	var b [8]byte
	for i := range ds {
		h.Write(ds[i].ID[:])
		binary.BigEndian.PutUint64(b[:], ds[i].Version)
		h.Write(b[:])
	}
	settings := insertSettings(nice)
	settings["insert_deduplication_token"] = "detect-" + hex.EncodeToString(h.Sum(nil)[:16])
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO detections ("+detectionColumns+")")
	if err != nil {
		return fmt.Errorf("prepare insert into detections: %w", err)
	}
	defer batch.Abort()
	for i := range ds {
		d := &ds[i]
		attrs := d.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		if err := batch.Append(d.ID, d.Time, d.EventTime, d.RuleID, string(d.Severity), d.TenantID, d.AgentID, d.ParentIdentity,
			d.TokenID, d.TokenType, d.ToolName, d.ResourceTenantID, d.EvidenceEventIDs, d.TraceID, d.Summary,
			d.SuppressedCount, attrs, d.Version); err != nil {
			return fmt.Errorf("append detection: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert into detections: %w", err)
	}
	return nil
}

// WarmStats says what Warm loaded.
type WarmStats struct {
	Agents, Bindings, Parents, Revoked, Detections, RateBuckets, Traces int
}

// Warm loads the engine's state from ClickHouse, as of the latest audit
// event stored (not the clock, so a replay of old traffic warms the same):
// agents' first sighting and baseline scopes, the tenants agents and tokens
// acted under within the stale-binding window, parents' declared scopes,
// revoked tokens (revocations table and detections that asked for one),
// open detections within their suppression period, and request and token
// counts of the rate window. lookback bounds how far back it reads.
// It is for an engine that has seen nothing yet; see WarmMissing.
func (e *Engine) Warm(ctx context.Context, conn driver.Conn, lookback time.Duration) (WarmStats, error) {
	return e.warm(ctx, conn, lookback, false)
}

// WarmMissing is Warm for an engine that is already running, when this
// instance takes over partitions another instance consumed: it adds the
// agents, tokens, parents, revocations, open detections and traces the
// engine does not know, and leaves what it knows as it is (its in-memory
// state is at least as recent as ClickHouse, and counting the stored rates
// of an agent it already counts would count them twice).
func (e *Engine) WarmMissing(ctx context.Context, conn driver.Conn, lookback time.Duration) (WarmStats, error) {
	return e.warm(ctx, conn, lookback, true)
}

func (e *Engine) warm(ctx context.Context, conn driver.Conn, lookback time.Duration, missingOnly bool) (WarmStats, error) {
	var st WarmStats
	var latest time.Time
	if err := conn.QueryRow(ctx, "SELECT max(ts) FROM audit_events").Scan(&latest); err != nil {
		return st, fmt.Errorf("warm: latest event: %w", err)
	}
	if latest.Unix() <= 0 {
		latest = e.now()
	}
	from := latest.Add(-lookback)
	r := e.rules.Rules
	e.mu.Lock()
	defer e.mu.Unlock()
	// newAgents: agents this warm-up created (with missingOnly, the only
	// ones whose stored rates are counted: a known agent's are counted).
	newAgents := map[string]bool{}
	agentFor := func(id string) *agentState {
		a, ok := e.agents.get(id)
		if !ok {
			a = &agentState{}
			e.agents.put(id, a)
			newAgents[id] = true
		}
		return a
	}
	// keepKnown: with missingOnly, an entry the engine has stays as it is.
	keepKnown := func(has bool) bool { return missingOnly && has }

	// Agents: first sighting within the lookback and the scopes seen in the
	// learning window after it.
	rows, err := conn.Query(ctx, `
		SELECT a.agent_id, f.first, groupUniqArrayArray(a.delegation_scope)
		FROM audit_events AS a
		INNER JOIN (SELECT agent_id, min(ts) AS first FROM audit_events WHERE ts >= ? GROUP BY agent_id) AS f USING (agent_id)
		WHERE a.ts >= ? AND a.ts <= f.first + toIntervalMillisecond(?)
		GROUP BY a.agent_id, f.first`, from, from, r[RuleScopeGrowth].Thresholds.LearningWindow.Milliseconds())
	if err != nil {
		return st, fmt.Errorf("warm agents: %w", err)
	}
	for rows.Next() {
		var agent string
		var first time.Time
		var scopes []string
		if err := rows.Scan(&agent, &first, &scopes); err != nil {
			rows.Close()
			return st, fmt.Errorf("warm agents: %w", err)
		}
		// A known agent keeps its state, merged with what another
		// instance saw of it (its events under another tenant are in
		// another partition): the earliest sighting, the union of scopes.
		a := agentFor(agent)
		if a.firstSeen.IsZero() || first.Before(a.firstSeen) {
			a.firstSeen = first
		}
		a.baseline = union(a.baseline, scopes)
		st.Agents++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("warm agents: %w", err)
	}

	// Bindings: tenants per agent and per token within the window.
	win := r[RuleStaleBinding].Window
	for _, kind := range []string{"agent_id", "token_id"} {
		rows, err := conn.Query(ctx, "SELECT "+kind+", tenant_id, min(ts), max(ts), argMin(event_id, ts) FROM audit_events WHERE ts >= ? AND "+kind+" != '' GROUP BY "+kind+", tenant_id",
			maxTime(from, latest.Add(-win)))
		if err != nil {
			return st, fmt.Errorf("warm bindings: %w", err)
		}
		for rows.Next() {
			var id, tenant string
			var first, last time.Time
			var firstEvent uuid.UUID
			if err := rows.Scan(&id, &tenant, &first, &last, &firstEvent); err != nil {
				rows.Close()
				return st, fmt.Errorf("warm bindings: %w", err)
			}
			b := binding{tenant: tenant, first: first, last: last, firstEvent: firstEvent}
			if kind == "agent_id" {
				a := agentFor(id)
				a.bindings = mergeBinding(a.bindings, b)
			} else {
				t, ok := e.tokens.get(id)
				if !ok {
					t = &tokenState{}
					e.tokens.put(id, t)
				}
				t.bindings = mergeBinding(t.bindings, b)
			}
			st.Bindings++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return st, fmt.Errorf("warm bindings: %w", err)
		}
	}

	// Parents: the latest declared scopes.
	rows, err = conn.Query(ctx, `SELECT parent_identity, argMax(attributes['delegation.parent_scope'], ts)
		FROM audit_events WHERE ts >= ? AND parent_identity != '' AND attributes['delegation.parent_scope'] != ''
		GROUP BY parent_identity`, from)
	if err != nil {
		return st, fmt.Errorf("warm parents: %w", err)
	}
	for rows.Next() {
		var parent, scopes string
		if err := rows.Scan(&parent, &scopes); err != nil {
			rows.Close()
			return st, fmt.Errorf("warm parents: %w", err)
		}
		if _, has := e.parents.get(parent); !keepKnown(has) {
			e.parents.put(parent, parentScopes{raw: scopes, fields: splitFields(scopes)})
			st.Parents++
		}
	}
	rows.Close()

	// Revoked tokens: revocations the notifier recorded and detections that
	// asked for one (stored before the request was sent).
	rows, err = conn.Query(ctx, `
		SELECT token_id, min(at), any(id) FROM (
			SELECT token_id, event_ts AS at, toString(detection_id) AS id FROM detections
			WHERE attributes['`+AttrRevoked+`'] = 'true' AND token_id != ''
			UNION ALL
			SELECT r.token_id, if(d.detection_id = r.detection_id, d.event_ts, toDateTime64(r.ts, 9, 'UTC')) AS at, toString(r.detection_id) AS id
			FROM revocations AS r LEFT JOIN detections AS d ON d.detection_id = r.detection_id
			WHERE r.token_id != ''
		) GROUP BY token_id`)
	if err != nil {
		return st, fmt.Errorf("warm revocations: %w", err)
	}
	for rows.Next() {
		var tok, id string
		var at time.Time
		if err := rows.Scan(&tok, &at, &id); err != nil {
			rows.Close()
			return st, fmt.Errorf("warm revocations: %w", err)
		}
		if _, has := e.revoked.get(tok); !keepKnown(has) {
			e.revoked.put(tok, revocation{at: at, detectionID: id})
			st.Revoked++
		}
	}
	rows.Close()

	// Open detections: the latest version of each, so repeats after the
	// restart are folded into it instead of creating a second detection.
	var maxSupp time.Duration
	for _, rr := range r {
		maxSupp = max(maxSupp, rr.Suppression)
	}
	var ds []event.Detection
	rows, err = conn.Query(ctx, `SELECT `+detectionColumns+` FROM detections FINAL WHERE event_ts >= ? ORDER BY event_ts`, latest.Add(-maxSupp))
	if err != nil {
		return st, fmt.Errorf("warm detections: %w", err)
	}
	for rows.Next() {
		var d event.Detection
		var sev string
		if err := rows.Scan(&d.ID, &d.Time, &d.EventTime, &d.RuleID, &sev, &d.TenantID, &d.AgentID, &d.ParentIdentity,
			&d.TokenID, &d.TokenType, &d.ToolName, &d.ResourceTenantID, &d.EvidenceEventIDs, &d.TraceID, &d.Summary,
			&d.SuppressedCount, &d.Attributes, &d.Version); err != nil {
			rows.Close()
			return st, fmt.Errorf("warm detections: %w", err)
		}
		d.Severity = event.Severity(sev)
		ds = append(ds, d)
	}
	rows.Close()
	for _, d := range ds {
		rule := r[d.RuleID]
		sk := d.Attributes[AttrSuppressionKey]
		if rule == nil || sk == "" {
			continue
		}
		e.version = max(e.version, d.Version)
		if _, has := e.supp.get(sk); !keepKnown(has) {
			e.supp.put(sk, &suppression{
				det:   &detectionState{d: d, notified: d.Attributes[AttrNotified] == "true", revoked: d.Attributes[AttrRevoked] == "true"},
				until: d.EventTime.Add(rule.Suppression),
			})
			st.Detections++
		}
	}

	// Recent traces: the audit events of each, so spans that arrive after
	// the restart still join their events.
	rows, err = conn.Query(ctx, `SELECT trace_id, any(tenant_id), any(agent_id), any(token_id), any(parent_identity), any(token_type), groupArray(3)(event_id)
		FROM audit_events WHERE ts >= ? AND trace_id != '' GROUP BY trace_id`, maxTime(from, latest.Add(-traceWarmWindow)))
	if err != nil {
		return st, fmt.Errorf("warm traces: %w", err)
	}
	for rows.Next() {
		var trace string
		ti := &traceInfo{}
		if err := rows.Scan(&trace, &ti.tenant, &ti.agent, &ti.token, &ti.parent, &ti.tokenType, &ti.events); err != nil {
			rows.Close()
			return st, fmt.Errorf("warm traces: %w", err)
		}
		tk, valid := traceKeyOf(trace)
		if !valid {
			continue // not an id an audit event can carry
		}
		if _, has := e.traces.get(tk); !keepKnown(has) {
			e.traces.put(tk, ti)
			st.Traces++
		}
	}
	rows.Close()

	// Rates: requests per agent and second, and chat tokens per agent and
	// second (joined to the agent through the trace's root span).
	rwin := r[RuleRateLimit].Window
	rfrom := maxTime(from, latest.Add(-rwin))
	rows, err = conn.Query(ctx, `SELECT agent_id, toUnixTimestamp(ts) AS s, count(), toUInt64(0) FROM audit_events
		WHERE ts >= ? GROUP BY agent_id, s
		UNION ALL
		SELECT r.root_agent, toUnixTimestamp(c.start_time) AS s, toUInt64(0), sum(c.input_tokens + c.output_tokens)
		FROM spans AS c INNER JOIN (SELECT trace_id, any(agent_id) AS root_agent FROM spans WHERE start_time >= ? AND agent_id != '' GROUP BY trace_id) AS r USING (trace_id)
		WHERE c.start_time >= ? AND c.operation_name = 'chat' GROUP BY r.root_agent, s`, rfrom, rfrom, rfrom)
	if err != nil {
		return st, fmt.Errorf("warm rates: %w", err)
	}
	for rows.Next() {
		var agent string
		var sec uint32
		var req, tok uint64
		if err := rows.Scan(&agent, &sec, &req, &tok); err != nil {
			rows.Close()
			return st, fmt.Errorf("warm rates: %w", err)
		}
		a := agentFor(agent)
		if missingOnly && !newAgents[agent] {
			continue
		}
		if a.rate == nil {
			a.rate = &rateRing{}
		}
		a.rate.add(time.Unix(int64(sec), 0), uint32(req), tok, rwin)
		a.rateWarmed = max(a.rateWarmed, int64(sec))
		st.RateBuckets++
	}
	rows.Close()
	return st, rows.Err()
}

// mergeBinding adds b to bs, or widens the binding of the same tenant to
// cover both (the earliest sighting keeps its event).
func mergeBinding(bs []binding, b binding) []binding {
	for i := range bs {
		if bs[i].tenant != b.tenant {
			continue
		}
		if b.first.Before(bs[i].first) {
			bs[i].first, bs[i].firstEvent = b.first, b.firstEvent
		}
		if b.last.After(bs[i].last) {
			bs[i].last = b.last
		}
		return bs
	}
	return append(bs, b)
}

// traceWarmWindow: traces are exported after their events (the simulator:
// 0.2–5 s after the root span ended); spans arriving later than this after
// their events are not joined across a restart.
const traceWarmWindow = 5 * time.Minute

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}
