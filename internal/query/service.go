package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/migrate"
)

// Service owns every SQL statement of the API. Each method takes the
// caller's Scope and puts it into the statement (tenant_id IN (?)); every
// other value is bound too. Handlers never see SQL.
type Service struct {
	conn          driver.Conn
	db            string
	queryTimeout  time.Duration
	exportTimeout time.Duration
	maxTraceSpans int
	maxThreads    int // 0: server default
}

// NewService returns the service over database db (validated: it is the
// one identifier spliced into statements).
func NewService(conn driver.Conn, db string, queryTimeout, exportTimeout time.Duration, maxTraceSpans int) (*Service, error) {
	if err := migrate.CheckIdentifier("database name", db); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return &Service{conn: conn, db: db, queryTimeout: queryTimeout, exportTimeout: exportTimeout, maxTraceSpans: maxTraceSpans}, nil
}

func (s *Service) table(name string) string { return s.db + "." + name }

// ctx bounds a query in time on both sides: the client context and
// ClickHouse's max_execution_time.
func (s *Service) ctx(ctx context.Context, d time.Duration, extra clickhouse.Settings) (context.Context, context.CancelFunc) {
	set := clickhouse.Settings{"max_execution_time": int(d.Seconds()) + 1}
	if s.maxThreads > 0 {
		set["max_threads"] = s.maxThreads
	}
	for k, v := range extra {
		set[k] = v
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return clickhouse.Context(ctx, clickhouse.WithSettings(set)), cancel
}

const eventCols = `toString(event_id), ts, tenant_id, agent_id, parent_identity, token_id, token_type,
	delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id,
	policy_decision, trace_id, span_id, attributes`

func scanEvent(rows driver.Rows, e *Event) error {
	return rows.Scan(&e.EventID, &e.TS, &e.TenantID, &e.AgentID, &e.ParentIdentity, &e.TokenID, &e.TokenType,
		&e.DelegationScope, &e.RequiredScopes, &e.ToolName, &e.ToolParamsHash, &e.Resource, &e.ResourceTenantID,
		&e.PolicyDecision, &e.TraceID, &e.SpanID, &e.Attributes)
}

// eventQuery is the search statement: newest first by (ts, event_id), below
// the cursor. ORDER BY starts with toStartOfHour(ts), the sort key's second
// column, so ClickHouse reads a tenant's hours in order and stops at LIMIT.
func (s *Service) eventQuery(sc Scope, f EventFilter, after *Cursor, limit int) (string, []any, error) {
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return "", nil, err
	}
	q.timeRange("ts", f.From, f.To)
	q.eq("agent_id", f.Agent)
	q.eq("token_id", f.Token)
	q.eq("tool_name", f.Tool)
	q.eq("policy_decision", f.Decision)
	q.eq("trace_id", f.TraceID)
	if f.Text != "" {
		q.add("(positionCaseInsensitiveUTF8(tool_name, ?) > 0 OR positionCaseInsensitiveUTF8(resource, ?) > 0)", f.Text, f.Text)
	}
	if f.Rule != "" {
		// Evidence of the rule's detections, themselves tenant-scoped.
		var d stmt
		if err := d.tenant(sc, "tenant_id"); err != nil {
			return "", nil, err
		}
		d.eq("rule_id", f.Rule)
		d.timeRange("event_ts", f.From.Add(-24*time.Hour), f.To.Add(24*time.Hour))
		q.add("event_id IN (SELECT arrayJoin(evidence_event_ids) FROM "+s.table("detections")+d.where()+")", d.args...)
	}
	if after != nil {
		q.add("ts <= "+tsSQL, nanos(after.TS))
		q.add("(ts, event_id) < ("+tsSQL+", toUUID(?))", nanos(after.TS), after.ID)
	}
	const order = " ORDER BY toStartOfHour(ts) DESC, ts DESC, event_id DESC"
	from := " FROM " + s.table("audit_events") + q.where()
	if limit <= 0 { // export: every row, streamed
		return "SELECT " + eventCols + from + order, q.args, nil
	}
	// One read: ClickHouse (lazy materialization, 25.4+, on by default up
	// to LIMIT 10000) reads the wide columns of the LIMIT rows only, which
	// an earlier two-step form (keys first, then IN) did by hand at the cost
	// of a second read of the table: measured on the bench data, 25 → 19.5 ms
	// of ClickHouse CPU for a tenant's week of denials.
	return "SELECT " + eventCols + from + order + " LIMIT ?", append(q.args, limit), nil
}

// SearchEvents returns up to limit events below after, and whether more follow.
func (s *Service) SearchEvents(ctx context.Context, sc Scope, f EventFilter, after *Cursor, limit int) ([]Event, bool, error) {
	sql, args, err := s.eventQuery(sc, f, after, limit+1)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("search events: %w", err)
	}
	defer rows.Close()
	out := make([]Event, 0, limit)
	for rows.Next() {
		var e Event
		if err := scanEvent(rows, &e); err != nil {
			return nil, false, fmt.Errorf("scan event: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("search events: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// ExportEvents streams every event of the filter below after to emit, in
// search order, reading small blocks so memory stays constant whatever the
// row count. max > 0 stops after max rows. emit errors stop the export.
func (s *Service) ExportEvents(ctx context.Context, sc Scope, f EventFilter, after *Cursor, max int64, emit func(*Event) error) (int64, error) {
	sql, args, err := s.eventQuery(sc, f, after, int(max))
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.ctx(ctx, s.exportTimeout, clickhouse.Settings{"max_block_size": 8192})
	defer cancel()
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("export events: %w", err)
	}
	defer rows.Close()
	var n int64
	var e Event
	for rows.Next() {
		e = Event{}
		if err := scanEvent(rows, &e); err != nil {
			return n, fmt.Errorf("scan event: %w", err)
		}
		if err := emit(&e); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("export events: %w", err)
	}
	return n, nil
}

// Timeline interleaves an agent's audit events and spans newest first by
// (ts, kind, id) and, on the first page, summarises its delegation chain
// over the range.
//
// One statement reads both tables (the newest limit+1 rows of each, merged
// here). On the first page, when the agent's events in the range all fit
// in it (an agent's day usually does), the chain is computed from those
// rows; only a range with more events than a page costs a second statement
// over the whole range. Measured on the bench data: ClickHouse spends ~5 ms
// on any statement before it reads a row, so statements are what to save.
func (s *Service) Timeline(ctx context.Context, sc Scope, agent string, from, to time.Time, after *Cursor, limit int) ([]TimelineItem, []Delegation, bool, error) {
	var ev, sp stmt
	if err := ev.tenant(sc, "tenant_id"); err != nil {
		return nil, nil, false, err
	}
	ev.eq("agent_id", agent)
	ev.timeRange("ts", from, to)
	if err := sp.tenant(sc, "tenant_id"); err != nil {
		return nil, nil, false, err
	}
	sp.eq("agent_id", agent)
	sp.timeRange("start_time", from, to)
	chain := stmt{conds: slices.Clone(ev.conds), args: slices.Clone(ev.args)} // the whole range, not the page
	if after != nil {
		ev.add("ts <= "+tsSQL, nanos(after.TS))
		ev.add("(ts, 'event', toString(event_id)) < ("+tsSQL+", ?, ?)", nanos(after.TS), after.Kind, after.ID)
		sp.add("start_time <= "+tsSQL, nanos(after.TS))
		sp.add("(start_time, 'span', span_id) < ("+tsSQL+", ?, ?)", nanos(after.TS), after.Kind, after.ID)
	}
	sql := `(SELECT 'event' AS kind, ts, toString(event_id) AS id, toString(tenant_id) AS tenant, parent_identity, token_id,
			toString(tool_name) AS tool, toString(policy_decision) AS decision, resource, trace_id, span_id,
			'' AS name, '' AS operation, '' AS model, toUInt64(0) AS input_tokens, toUInt64(0) AS output_tokens,
			toUInt64(0) AS duration_ns, '' AS status, toString(token_type) AS token_type
		FROM ` + s.table("audit_events") + ev.where() + `
		ORDER BY toStartOfHour(ts) DESC, ts DESC, id DESC LIMIT ?)
	UNION ALL
		(SELECT 'span', start_time, span_id, toString(tenant_id), '', '', toString(tool_name), '', '', trace_id, span_id,
			toString(name), toString(operation_name), toString(request_model), input_tokens, output_tokens, duration_ns,
			toString(status_code), ''
		FROM ` + s.table("spans") + sp.where() + `
		ORDER BY toStartOfHour(start_time) DESC, start_time DESC, span_id DESC LIMIT ?)`
	args := append(append(append(ev.args, limit+1), sp.args...), limit+1)
	qctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(qctx, sql, args...)
	if err != nil {
		return nil, nil, false, fmt.Errorf("timeline: %w", err)
	}
	defer rows.Close()
	items := make([]TimelineItem, 0, 2*(limit+1))
	var tokenTypes []string // of the events, in items order
	events := 0
	for rows.Next() {
		var it TimelineItem
		var tokenType string
		if err := rows.Scan(&it.Kind, &it.TS, &it.ID, &it.TenantID, &it.ParentIdentity, &it.TokenID, &it.ToolName, &it.Decision,
			&it.Resource, &it.TraceID, &it.SpanID, &it.Name, &it.Operation, &it.Model, &it.InputTokens, &it.OutputTokens,
			&it.DurationNS, &it.Status, &tokenType); err != nil {
			return nil, nil, false, fmt.Errorf("scan timeline: %w", err)
		}
		if it.Kind == "event" {
			events++
		}
		items = append(items, it)
		tokenTypes = append(tokenTypes, tokenType)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, false, fmt.Errorf("timeline: %w", err)
	}
	var delegation []Delegation
	if after == nil {
		if events <= limit { // every event of the range is here
			delegation = chainOf(items, tokenTypes)
		} else if delegation, err = s.delegationChain(qctx, chain); err != nil {
			return nil, nil, false, err
		}
	}
	// Newest first by (ts, kind, id), the order the cursor continues.
	slices.SortFunc(items, func(a, b TimelineItem) int {
		if c := b.TS.Compare(a.TS); c != 0 {
			return c
		}
		if c := strings.Compare(b.Kind, a.Kind); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	more := len(items) > limit
	if more {
		items = items[:limit]
	}
	return items, delegation, more, nil
}

// chainOf is delegationChain computed from events already read (the
// timeline's items when they hold every event of the range): grouped by
// (tenant, parent identity, token), ordered by first seen, parent, token.
func chainOf(items []TimelineItem, tokenTypes []string) []Delegation {
	type key struct{ tenant, parent, token string }
	idx := map[key]int{}
	var out []Delegation
	for i, it := range items {
		if it.Kind != "event" {
			continue
		}
		k := key{it.TenantID, it.ParentIdentity, it.TokenID}
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, Delegation{TenantID: it.TenantID, ParentIdentity: it.ParentIdentity, TokenID: it.TokenID,
				TokenType: tokenTypes[i], FirstSeen: it.TS, LastSeen: it.TS})
		}
		d := &out[j]
		if it.TS.Before(d.FirstSeen) {
			d.FirstSeen = it.TS
		}
		if it.TS.After(d.LastSeen) {
			d.LastSeen = it.TS
		}
		d.Events++
		if it.Decision == "deny" {
			d.Denied++
		}
	}
	slices.SortFunc(out, func(a, b Delegation) int {
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		if c := strings.Compare(a.ParentIdentity, b.ParentIdentity); c != 0 {
			return c
		}
		return strings.Compare(a.TokenID, b.TokenID)
	})
	if len(out) > maxChainLinks {
		out = out[:maxChainLinks]
	}
	return out
}

// maxChainLinks bounds a delegation chain.
const maxChainLinks = 1000

// delegationChain summarises on whose authority (parent identity) and with
// which credentials the events of chain acted.
func (s *Service) delegationChain(ctx context.Context, chain stmt) ([]Delegation, error) {
	rows, err := s.conn.Query(ctx, `SELECT toString(tenant_id), parent_identity, token_id, toString(any(token_type)),
		min(ts), max(ts), count(), countIf(policy_decision = 'deny')
		FROM `+s.table("audit_events")+chain.where()+`
		GROUP BY tenant_id, parent_identity, token_id ORDER BY min(ts), parent_identity, token_id LIMIT ?`, append(chain.args, maxChainLinks)...)
	if err != nil {
		return nil, fmt.Errorf("delegation chain: %w", err)
	}
	defer rows.Close()
	var out []Delegation
	for rows.Next() {
		var d Delegation
		if err := rows.Scan(&d.TenantID, &d.ParentIdentity, &d.TokenID, &d.TokenType, &d.FirstSeen, &d.LastSeen, &d.Events, &d.Denied); err != nil {
			return nil, fmt.Errorf("scan delegation: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delegation chain: %w", err)
	}
	return out, nil
}

// Trace returns the spans (as a tree) and audit events of one trace id, or
// errNotFound when none is in scope. A range, when given, narrows the read;
// without one the range comes from trace_index (migration 0010), so the
// trace's statement opens the partitions that hold it instead of every
// daily partition of both tables. A trace the index does not know (written
// before it existed and not backfilled) is read over every partition before
// it is called not found.
func (s *Service) Trace(ctx context.Context, sc Scope, traceID string, from, to time.Time) (*Trace, error) {
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	if from.IsZero() && to.IsZero() {
		lo, hi, ok, err := s.traceRange(ctx, sc, traceID)
		if err != nil {
			return nil, err
		}
		if ok {
			tr, err := s.trace(ctx, sc, traceID, lo, hi)
			if !errors.Is(err, errNotFound) {
				return tr, err
			}
		}
	}
	return s.trace(ctx, sc, traceID, from, to)
}

// traceRange is the span of hours in which trace_index saw the trace. A
// statement of its own so that Trace knows whether the index has the trace
// at all (else it reads every partition); as a scalar subquery of the read
// it measured the same ClickHouse CPU.
func (s *Service) traceRange(ctx context.Context, sc Scope, traceID string) (lo, hi time.Time, ok bool, err error) {
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return lo, hi, false, err
	}
	q.add("trace_id = ?", traceID)
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT min(hour), max(hour) + 3600, count() FROM "+s.table("trace_index")+q.where(), q.args...).Scan(&lo, &hi, &n); err != nil {
		return lo, hi, false, fmt.Errorf("trace index: %w", err)
	}
	return lo, hi, n > 0, nil
}

// traceSQL is the statement of a trace: its spans and its audit events in
// one UNION ALL, in a row shape that holds both (one statement costs
// ClickHouse less than two: planning and opening parts is most of the cost
// of a small read). from and to bound the read when set.
func (s *Service) traceSQL(sc Scope, traceID string, from, to time.Time) (string, []any, error) {
	var sp, ev stmt
	for _, q := range []*stmt{&sp, &ev} {
		if err := q.tenant(sc, "tenant_id"); err != nil {
			return "", nil, err
		}
		q.add("trace_id = ?", traceID)
	}
	sp.timeRange("start_time", from, to)
	ev.timeRange("ts", from, to)
	sql := `SELECT kind, id, parent_span_id, tenant, name, span_kind, t, end_t, duration_ns, status, service, operation,
		agent, tool, model, input_tokens, output_tokens, attrs, parent_identity, token_id, token_type, delegation_scope,
		required_scopes, tool_params_hash, resource, resource_tenant_id, decision, trace_id, event_span_id
	FROM (
		(SELECT 'span' AS kind, span_id AS id, parent_span_id, toString(tenant_id) AS tenant, toString(name) AS name,
			toString(kind) AS span_kind, start_time AS t, end_time AS end_t, duration_ns, toString(status_code) AS status,
			toString(service_name) AS service, toString(operation_name) AS operation, agent_id AS agent,
			toString(tool_name) AS tool, toString(request_model) AS model, input_tokens, output_tokens,
			span_attributes AS attrs, '' AS parent_identity, '' AS token_id, '' AS token_type,
			CAST([], 'Array(LowCardinality(String))') AS delegation_scope, CAST([], 'Array(LowCardinality(String))') AS required_scopes,
			'' AS tool_params_hash, '' AS resource, '' AS resource_tenant_id, '' AS decision, trace_id, '' AS event_span_id
		FROM ` + s.table("spans") + sp.where() + ` ORDER BY t, id LIMIT ?)
		UNION ALL
		(SELECT 'event', toString(event_id) AS id, '', toString(tenant_id), '', '', ts AS t, ts, toUInt64(0), '', '', '',
			agent_id, toString(tool_name), '', toUInt64(0), toUInt64(0), attributes, parent_identity, token_id,
			toString(token_type), delegation_scope, required_scopes, tool_params_hash, resource, toString(resource_tenant_id),
			toString(policy_decision), trace_id, span_id
		FROM ` + s.table("audit_events") + ev.where() + ` ORDER BY t, id LIMIT 10000)
	)
	ORDER BY kind DESC, t, id`
	return sql, append(append(sp.args, s.maxTraceSpans+1), ev.args...), nil
}

func (s *Service) trace(ctx context.Context, sc Scope, traceID string, from, to time.Time) (*Trace, error) {
	sql, args, err := s.traceSQL(sc, traceID, from, to)
	if err != nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	defer rows.Close()
	tr := &Trace{TraceID: traceID, Roots: []*Span{}, Events: []Event{}}
	var spans []*Span
	for rows.Next() {
		var kind string
		var x Span
		var e Event
		if err := rows.Scan(&kind, &x.SpanID, &x.ParentSpanID, &x.TenantID, &x.Name, &x.Kind, &x.StartTime, &x.EndTime,
			&x.DurationNS, &x.StatusCode, &x.ServiceName, &x.Operation, &x.AgentID, &x.ToolName, &x.Model, &x.InputTokens,
			&x.OutputTokens, &x.Attributes, &e.ParentIdentity, &e.TokenID, &e.TokenType, &e.DelegationScope, &e.RequiredScopes,
			&e.ToolParamsHash, &e.Resource, &e.ResourceTenantID, &e.PolicyDecision, &e.TraceID, &e.SpanID); err != nil {
			return nil, fmt.Errorf("scan trace row: %w", err)
		}
		if kind == "span" {
			spans = append(spans, &x)
			continue
		}
		e.EventID, e.TS, e.TenantID, e.AgentID, e.ToolName, e.Attributes = x.SpanID, x.StartTime, x.TenantID, x.AgentID, x.ToolName, x.Attributes
		tr.Events = append(tr.Events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	if len(spans) > s.maxTraceSpans {
		spans, tr.Truncated = spans[:s.maxTraceSpans], true
	}
	tr.SpanCount = len(spans)
	tr.Roots = buildTree(spans)
	if len(spans) == 0 && len(tr.Events) == 0 {
		return nil, errNotFound
	}
	return tr, nil
}

// buildTree links spans to their parents (in start order); spans whose
// parent is absent are roots.
func buildTree(spans []*Span) []*Span {
	byID := make(map[string]*Span, len(spans))
	for _, x := range spans {
		byID[x.SpanID] = x
	}
	roots := []*Span{}
	for _, x := range spans {
		if p, ok := byID[x.ParentSpanID]; ok && x.ParentSpanID != "" && p != x {
			p.Children = append(p.Children, x)
		} else {
			roots = append(roots, x)
		}
	}
	return roots
}

const detectionCols = `toString(detection_id), ts, event_ts, toString(rule_id), toString(severity), toString(tenant_id), agent_id,
	parent_identity, token_id, toString(token_type), toString(tool_name), toString(resource_tenant_id),
	arrayMap(x -> toString(x), evidence_event_ids), trace_id, summary, suppressed_count, attributes`

func scanDetection(rows driver.Rows, d *Detection) error {
	return rows.Scan(&d.DetectionID, &d.TS, &d.EventTS, &d.RuleID, &d.Severity, &d.TenantID, &d.AgentID, &d.ParentIdentity,
		&d.TokenID, &d.TokenType, &d.ToolName, &d.ResourceTenantID, &d.EvidenceEventIDs, &d.TraceID, &d.Summary,
		&d.SuppressedCount, &d.Attributes)
}

// Detections lists the latest version of detections (FINAL: the table is
// small), newest first by (ts, detection_id).
func (s *Service) Detections(ctx context.Context, sc Scope, f DetectionFilter, after *Cursor, limit int) ([]Detection, bool, error) {
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return nil, false, err
	}
	q.timeRange("ts", f.From, f.To)
	q.eq("rule_id", f.Rule)
	q.eq("severity", f.Severity)
	q.eq("agent_id", f.Agent)
	q.eq("token_id", f.Token)
	if after != nil {
		q.add("(ts, detection_id) < ("+tsSQL+", toUUID(?))", nanos(after.TS), after.ID)
	}
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, "SELECT "+detectionCols+" FROM "+s.table("detections")+" FINAL"+q.where()+
		" ORDER BY ts DESC, detection_id DESC LIMIT ?", append(q.args, limit+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("detections: %w", err)
	}
	defer rows.Close()
	out := make([]Detection, 0, limit)
	for rows.Next() {
		var d Detection
		if err := scanDetection(rows, &d); err != nil {
			return nil, false, fmt.Errorf("scan detection: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("detections: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// Detection returns one detection in scope, or errNotFound.
func (s *Service) Detection(ctx context.Context, sc Scope, id string) (*Detection, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, paramErr("detection_id", "not a UUID")
	}
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return nil, err
	}
	q.add("detection_id = toUUID(?)", id)
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, "SELECT "+detectionCols+" FROM "+s.table("detections")+" FINAL"+q.where()+" ORDER BY ts DESC LIMIT 1", q.args...)
	if err != nil {
		return nil, fmt.Errorf("detection: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("detection: %w", err)
		}
		return nil, errNotFound
	}
	var d Detection
	if err := scanDetection(rows, &d); err != nil {
		return nil, fmt.Errorf("scan detection: %w", err)
	}
	return &d, nil
}

// Deliveries returns every webhook delivery attempt of a detection in scope
// (errNotFound if the detection is not), oldest first.
func (s *Service) Deliveries(ctx context.Context, sc Scope, detectionID string) ([]Delivery, error) {
	d, err := s.Detection(ctx, sc, detectionID)
	if err != nil {
		return nil, err
	}
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return nil, err
	}
	q.add("detection_id = toUUID(?)", d.DetectionID)
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, `SELECT delivery_id, toString(detection_id), ts, toString(tenant_id), toString(endpoint), toString(kind),
		token_id, attempt, status_code, toString(outcome), latency_ms, error, next_attempt_at
		FROM `+s.table("webhook_deliveries")+q.where()+` ORDER BY ts, delivery_id, attempt LIMIT 10000`, q.args...)
	if err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		var x Delivery
		if err := rows.Scan(&x.DeliveryID, &x.DetectionID, &x.TS, &x.TenantID, &x.Endpoint, &x.Kind, &x.TokenID, &x.Attempt,
			&x.StatusCode, &x.Outcome, &x.LatencyMS, &x.Error, &x.NextAttemptAt); err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deliveries: %w", err)
	}
	return out, nil
}

// Revocations returns the revocations issued for a token in scope, newest
// first (an empty list when there are none or the token is not in scope:
// the two are indistinguishable on purpose).
func (s *Service) Revocations(ctx context.Context, sc Scope, tokenID string) ([]Revocation, error) {
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return nil, err
	}
	q.add("token_id = ?", tokenID)
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, `SELECT toString(tenant_id), token_id, toString(token_type), agent_id, ts, toString(detection_id),
		delivery_id, toString(rule_id), reason
		FROM `+s.table("revocations")+" FINAL"+q.where()+` ORDER BY ts DESC LIMIT 10000`, q.args...)
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	defer rows.Close()
	out := []Revocation{}
	for rows.Next() {
		var r Revocation
		if err := rows.Scan(&r.TenantID, &r.TokenID, &r.TokenType, &r.AgentID, &r.TS, &r.DetectionID, &r.DeliveryID, &r.RuleID, &r.Reason); err != nil {
			return nil, fmt.Errorf("scan revocation: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	return out, nil
}

// bucketSQL and groupSQL map the report's enumerated parameters to fixed
// SQL text (never the request's text).
var (
	bucketSQL = map[string]string{"hour": "toStartOfHour(%s)", "day": "toStartOfDay(%s)", "week": "toMonday(%s)"}
	groupSQL  = map[string]string{"tenant": "''", "agent": "agent_id", "tool": "toString(tool_name)"}
)

// maxReportRows bounds a report; Truncated says when it was cut.
const maxReportRows = 10_000

// Report counts, per bucket, tenant and group key: events by decision,
// spans and their token usage, and detections.
func (s *Service) Report(ctx context.Context, sc Scope, p ReportParams) (*Report, error) {
	bfmt, ok1 := bucketSQL[p.Bucket]
	key, ok2 := groupSQL[p.GroupBy]
	if !ok1 || !ok2 {
		return nil, paramErr("bucket", "unknown bucket or group_by")
	}
	bucket := func(col string) string { return fmt.Sprintf(bfmt, col) }
	var ev, sp, de stmt
	for _, q := range []*stmt{&ev, &sp, &de} {
		if err := q.tenant(sc, "tenant_id"); err != nil {
			return nil, err
		}
	}
	ev.timeRange("ts", p.From, p.To)
	sp.timeRange("start_time", p.From, p.To)
	de.timeRange("event_ts", p.From, p.To)
	detKey := key
	sql := `SELECT b, t, k, sum(events), sum(allowed), sum(denied), sum(spans), sum(in_tok), sum(out_tok), sum(dets), sum(crit)
	FROM (
		SELECT ` + bucket("ts") + ` AS b, toString(tenant_id) AS t, ` + key + ` AS k, count() AS events,
			countIf(policy_decision = 'allow') AS allowed, countIf(policy_decision = 'deny') AS denied,
			toUInt64(0) AS spans, toUInt64(0) AS in_tok, toUInt64(0) AS out_tok, toUInt64(0) AS dets, toUInt64(0) AS crit
		FROM ` + s.table("audit_events") + ev.where() + ` GROUP BY b, t, k
		UNION ALL
		SELECT ` + bucket("start_time") + `, toString(tenant_id), ` + key + `, 0, 0, 0, count(), sum(input_tokens), sum(output_tokens), 0, 0
		FROM ` + s.table("spans") + sp.where() + ` GROUP BY 1, 2, 3
		UNION ALL
		SELECT ` + bucket("event_ts") + `, toString(tenant_id), ` + detKey + `, 0, 0, 0, 0, 0, 0, count(), countIf(severity = 'critical')
		FROM ` + s.table("detections") + ` FINAL` + de.where() + ` GROUP BY 1, 2, 3
	)
	GROUP BY b, t, k ORDER BY b, t, k LIMIT ?`
	args := append(append(append(ev.args, sp.args...), de.args...), maxReportRows+1)
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer rows.Close()
	r := &Report{From: p.From, To: p.To, Bucket: p.Bucket, GroupBy: p.GroupBy, Rows: []ReportRow{}}
	for rows.Next() {
		var x ReportRow
		if err := rows.Scan(&x.Bucket, &x.TenantID, &x.Key, &x.Events, &x.Allowed, &x.Denied, &x.Spans, &x.InputTokens,
			&x.OutputTokens, &x.Detections, &x.Critical); err != nil {
			return nil, fmt.Errorf("scan report: %w", err)
		}
		x.Bucket = x.Bucket.UTC()
		r.Rows = append(r.Rows, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if len(r.Rows) > maxReportRows {
		r.Rows, r.Truncated = r.Rows[:maxReportRows], true
	}
	return r, nil
}

// QueryAudit lists query_audit rows, newest first. Tenant-bound admins see
// the rows of calls scoped to one of their tenants; calls that spanned
// several tenants (tenant_id ”) only unrestricted admins see.
func (s *Service) QueryAudit(ctx context.Context, sc Scope, f AuditFilter, after *Cursor, limit int) ([]AuditRecord, bool, error) {
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return nil, false, err
	}
	q.timeRange("ts", f.From, f.To)
	q.eq("principal", f.Principal)
	q.eq("route", f.Route)
	if after != nil {
		q.add("(ts, request_id) < ("+tsSQL+", toUUID(?))", nanos(after.TS), after.ID)
	}
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, `SELECT ts, toString(request_id), toString(tenant_id), arrayMap(x -> toString(x), tenants), principal,
		toString(auth_method), toString(role), toString(method), toString(route), mapApply((k, v) -> (toString(k), v), path_params),
		mapApply((k, v) -> (toString(k), v), filters), rows_returned, status, duration_ms, client_ip, user_agent, toString(error_type)
		FROM `+s.table("query_audit")+q.where()+` ORDER BY ts DESC, request_id DESC LIMIT ?`, append(q.args, limit+1)...)
	if err != nil {
		return nil, false, fmt.Errorf("query audit: %w", err)
	}
	defer rows.Close()
	out := make([]AuditRecord, 0, limit)
	for rows.Next() {
		var r AuditRecord
		if err := rows.Scan(&r.TS, &r.RequestID, &r.TenantID, &r.Tenants, &r.Principal, &r.AuthMethod, &r.Role, &r.Method, &r.Route,
			&r.PathParams, &r.Filters, &r.Rows, &r.Status, &r.DurationMS, &r.ClientIP, &r.UserAgent, &r.ErrorType); err != nil {
			return nil, false, fmt.Errorf("scan query audit: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("query audit: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// Ping checks ClickHouse, for /readyz.
func (s *Service) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }
