package query

import "time"

// Event is an audit event as the API returns it.
type Event struct {
	EventID          string            `json:"event_id"`
	TS               time.Time         `json:"ts"`
	TenantID         string            `json:"tenant_id"`
	AgentID          string            `json:"agent_id"`
	ParentIdentity   string            `json:"parent_identity"`
	TokenID          string            `json:"token_id"`
	TokenType        string            `json:"token_type"`
	DelegationScope  []string          `json:"delegation_scope"`
	RequiredScopes   []string          `json:"required_scopes"`
	ToolName         string            `json:"tool_name"`
	ToolParamsHash   string            `json:"tool_params_hash"`
	Resource         string            `json:"resource"`
	ResourceTenantID string            `json:"resource_tenant_id"`
	PolicyDecision   string            `json:"policy_decision"`
	TraceID          string            `json:"trace_id"`
	SpanID           string            `json:"span_id"`
	Attributes       map[string]string `json:"attributes"`
}

// EventFilter selects audit events. From and To are required by the routes
// (Service methods accept any bounded range).
type EventFilter struct {
	From, To time.Time
	Agent    string
	Token    string
	Tool     string
	Decision string
	TraceID  string
	Rule     string // events that are evidence of a detection of this rule
	Text     string // case-insensitive substring of tool_name or resource
}

// Page is one page of rows and the cursor of the next ("" at the end).
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// TimelineItem is an audit event or a span of one agent.
type TimelineItem struct {
	Kind           string    `json:"kind"` // "event" or "span"
	TS             time.Time `json:"ts"`
	ID             string    `json:"id"` // event_id or span_id
	TenantID       string    `json:"tenant_id"`
	ParentIdentity string    `json:"parent_identity,omitempty"`
	TokenID        string    `json:"token_id,omitempty"`
	ToolName       string    `json:"tool_name,omitempty"`
	Decision       string    `json:"policy_decision,omitempty"`
	Resource       string    `json:"resource,omitempty"`
	TraceID        string    `json:"trace_id,omitempty"`
	SpanID         string    `json:"span_id,omitempty"`
	Name           string    `json:"name,omitempty"`
	Operation      string    `json:"operation_name,omitempty"`
	Model          string    `json:"request_model,omitempty"`
	InputTokens    uint64    `json:"input_tokens,omitempty"`
	OutputTokens   uint64    `json:"output_tokens,omitempty"`
	DurationNS     uint64    `json:"duration_ns,omitempty"`
	Status         string    `json:"status_code,omitempty"`
}

// Delegation is one link of an agent's delegation chain: on whose
// authority (parent identity) and with which credential it acted.
type Delegation struct {
	TenantID       string    `json:"tenant_id"`
	ParentIdentity string    `json:"parent_identity"`
	TokenID        string    `json:"token_id"`
	TokenType      string    `json:"token_type"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	Events         uint64    `json:"events"`
	Denied         uint64    `json:"denied"`
}

// Timeline is an agent's page of interleaved events and spans plus its
// delegation chain over the whole range.
type Timeline struct {
	AgentID    string         `json:"agent_id"`
	Delegation []Delegation   `json:"delegation_chain"`
	Items      []TimelineItem `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// Span is a span of a reconstructed trace; Children make the tree.
type Span struct {
	SpanID       string            `json:"span_id"`
	ParentSpanID string            `json:"parent_span_id,omitempty"`
	TenantID     string            `json:"tenant_id"`
	Name         string            `json:"name"`
	Kind         string            `json:"kind"`
	StartTime    time.Time         `json:"start_time"`
	EndTime      time.Time         `json:"end_time"`
	DurationNS   uint64            `json:"duration_ns"`
	StatusCode   string            `json:"status_code"`
	ServiceName  string            `json:"service_name"`
	Operation    string            `json:"operation_name,omitempty"`
	AgentID      string            `json:"agent_id,omitempty"`
	ToolName     string            `json:"tool_name,omitempty"`
	Model        string            `json:"request_model,omitempty"`
	InputTokens  uint64            `json:"input_tokens,omitempty"`
	OutputTokens uint64            `json:"output_tokens,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	Children     []*Span           `json:"children,omitempty"`
}

// Trace is one trace: its span tree (roots; orphans whose parent is not
// stored are roots too) and the audit events carrying its trace id.
type Trace struct {
	TraceID   string  `json:"trace_id"`
	Roots     []*Span `json:"roots"`
	SpanCount int     `json:"span_count"`
	Truncated bool    `json:"truncated"`
	Events    []Event `json:"events"`
}

// Detection is the latest version of a detection row.
type Detection struct {
	DetectionID      string            `json:"detection_id"`
	TS               time.Time         `json:"ts"`
	EventTS          time.Time         `json:"event_ts"`
	RuleID           string            `json:"rule_id"`
	Severity         string            `json:"severity"`
	TenantID         string            `json:"tenant_id"`
	AgentID          string            `json:"agent_id"`
	ParentIdentity   string            `json:"parent_identity"`
	TokenID          string            `json:"token_id"`
	TokenType        string            `json:"token_type"`
	ToolName         string            `json:"tool_name"`
	ResourceTenantID string            `json:"resource_tenant_id"`
	EvidenceEventIDs []string          `json:"evidence_event_ids"`
	TraceID          string            `json:"trace_id"`
	Summary          string            `json:"summary"`
	SuppressedCount  uint32            `json:"suppressed_count"`
	Attributes       map[string]string `json:"attributes"`
}

// DetectionFilter selects detections.
type DetectionFilter struct {
	From, To time.Time
	Rule     string
	Severity string
	Agent    string
	Token    string
}

// Delivery is one webhook delivery attempt.
type Delivery struct {
	DeliveryID    string     `json:"delivery_id"`
	DetectionID   string     `json:"detection_id"`
	TS            time.Time  `json:"ts"`
	TenantID      string     `json:"tenant_id"`
	Endpoint      string     `json:"endpoint"`
	Kind          string     `json:"kind"`
	TokenID       string     `json:"token_id"`
	Attempt       uint16     `json:"attempt"`
	StatusCode    uint16     `json:"status_code"`
	Outcome       string     `json:"outcome"`
	LatencyMS     float64    `json:"latency_ms"`
	Error         string     `json:"error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// Revocation is one revocation the product asked for.
type Revocation struct {
	TenantID    string    `json:"tenant_id"`
	TokenID     string    `json:"token_id"`
	TokenType   string    `json:"token_type"`
	AgentID     string    `json:"agent_id"`
	TS          time.Time `json:"ts"`
	DetectionID string    `json:"detection_id"`
	DeliveryID  string    `json:"delivery_id"`
	RuleID      string    `json:"rule_id"`
	Reason      string    `json:"reason"`
}

// ReportParams shape a report.
type ReportParams struct {
	From, To time.Time
	Bucket   string // hour, day or week
	GroupBy  string // tenant, agent or tool
}

// ReportRow is one bucket × tenant × key of a report.
type ReportRow struct {
	Bucket       time.Time `json:"bucket"`
	TenantID     string    `json:"tenant_id"`
	Key          string    `json:"key"`
	Events       uint64    `json:"events"`
	Allowed      uint64    `json:"allowed"`
	Denied       uint64    `json:"denied"`
	Spans        uint64    `json:"spans"`
	InputTokens  uint64    `json:"input_tokens"`
	OutputTokens uint64    `json:"output_tokens"`
	Detections   uint64    `json:"detections"`
	Critical     uint64    `json:"detections_critical"`
}

// Report is an aggregate over a range.
type Report struct {
	From      time.Time   `json:"from"`
	To        time.Time   `json:"to"`
	Bucket    string      `json:"bucket"`
	GroupBy   string      `json:"group_by"`
	Rows      []ReportRow `json:"rows"`
	Truncated bool        `json:"truncated"`
}

// AuditRecord is one query_audit row.
type AuditRecord struct {
	TS         time.Time         `json:"ts"`
	RequestID  string            `json:"request_id"`
	TenantID   string            `json:"tenant_id"`
	Tenants    []string          `json:"tenants"`
	Principal  string            `json:"principal"`
	AuthMethod string            `json:"auth_method"`
	Role       string            `json:"role"`
	Method     string            `json:"method"`
	Route      string            `json:"route"`
	PathParams map[string]string `json:"path_params"`
	Filters    map[string]string `json:"filters"`
	Rows       uint64            `json:"rows_returned"`
	Status     uint16            `json:"status"`
	DurationMS float64           `json:"duration_ms"`
	ClientIP   string            `json:"client_ip"`
	UserAgent  string            `json:"user_agent"`
	ErrorType  string            `json:"error_type,omitempty"`
}

// AuditFilter selects query_audit rows.
type AuditFilter struct {
	From, To  time.Time
	Principal string
	Route     string
}
