package query

import (
	"github.com/gin-gonic/gin"
)

// param documents and whitelists one request parameter of a route.
type param struct {
	Name     string
	In       string // "query" or "path"
	Type     string // JSON Schema type: string, integer
	Format   string // date-time, uuid, …
	Enum     []string
	Required bool
	Repeated bool
	Desc     string
}

// route is one API route: registration, parameter whitelist and OpenAPI
// operation come from this one table, so they cannot disagree.
type route struct {
	Method  string
	Path    string // Gin syntax, /v1/detections/:detection_id
	ID      string // OpenAPI operationId
	Summary string
	Admin   bool // admins only
	Public  bool // no authentication (health, OpenAPI)
	// Global: the route returns no per-tenant rows (e.g. policy text), so
	// the isolation test only checks that no other tenant's rows appear.
	// Any per-tenant row it does return must carry a tenant_id field.
	Global bool
	Result string // OpenAPI schema name of the 200 body; "" for non-JSON
	// Problems lists problem statuses beyond the common ones (OpenAPI).
	Problems []string
	Produce  []string
	Params   []param
	handler  func(*Server, *gin.Context, *reqCtx) error
}

func (r *route) param(name, in string) *param {
	for i := range r.Params {
		if r.Params[i].Name == name && r.Params[i].In == in {
			return &r.Params[i]
		}
	}
	return nil
}

// Shared parameter sets.
var (
	pTenant = param{Name: "tenant", In: "query", Type: "string", Repeated: true,
		Desc: "Restrict to these tenants (repeatable); each must be granted to the caller, else 403. Default: every granted tenant."}
	pFrom     = param{Name: "from", In: "query", Type: "string", Format: "date-time", Required: true, Desc: "Start of the range, inclusive (RFC 3339)."}
	pTo       = param{Name: "to", In: "query", Type: "string", Format: "date-time", Required: true, Desc: "End of the range, exclusive (RFC 3339); to - from is bounded by the server's max range."}
	pOptFrom  = param{Name: "from", In: "query", Type: "string", Format: "date-time", Desc: "Optional start of the range (with to)."}
	pOptTo    = param{Name: "to", In: "query", Type: "string", Format: "date-time", Desc: "Optional end of the range (with from)."}
	pLimit    = param{Name: "limit", In: "query", Type: "integer", Desc: "Page size (default and maximum set by the server)."}
	pCursor   = param{Name: "cursor", In: "query", Type: "string", Desc: "Opaque cursor from next_cursor of the previous page (valid only with the same filters)."}
	pAgent    = param{Name: "agent", In: "query", Type: "string", Desc: "agent_id equals."}
	pToken    = param{Name: "token", In: "query", Type: "string", Desc: "token_id equals."}
	pTool     = param{Name: "tool", In: "query", Type: "string", Desc: "tool_name equals."}
	pDecision = param{Name: "decision", In: "query", Type: "string", Enum: []string{"allow", "deny"}, Desc: "policy_decision equals."}
	pTraceID  = param{Name: "trace_id", In: "query", Type: "string", Desc: "trace_id equals."}
	pRule     = param{Name: "rule", In: "query", Type: "string", Desc: "Only events that are evidence of a detection of this rule id."}
	pText     = param{Name: "q", In: "query", Type: "string", Desc: "Case-insensitive substring of tool_name or resource."}
	pManifest = param{Name: "manifest", In: "query", Type: "string", Enum: []string{"1"},
		Desc: "1: end the export with the HTTP trailer Agentaudit-Manifest, the base64 of a signed note holding the SHA-256 of the body, its rows and the latest checkpoint of each log holding the caller's tenants' events (400 when the server has no manifest key)."}
	pFormat = param{Name: "format", In: "query", Type: "string", Enum: []string{"ndjson", "csv"}, Desc: "Export format (default ndjson)."}
)

func eventFilterParams() []param {
	return []param{pTenant, pFrom, pTo, pAgent, pToken, pTool, pDecision, pTraceID, pRule, pText}
}

// routes is the API.
func routes() []*route {
	return []*route{
		{Method: "GET", Path: "/healthz", ID: "healthz", Summary: "Liveness.", Public: true, Produce: []string{"text/plain"}, handler: (*Server).healthz},
		{Method: "GET", Path: "/readyz", ID: "readyz", Summary: "Readiness (ClickHouse reachable).", Public: true, Produce: []string{"text/plain"}, handler: (*Server).readyz},
		{Method: "GET", Path: "/metrics", ID: "metrics", Summary: "Prometheus metrics.", Public: true, Produce: []string{"text/plain"}, handler: (*Server).metricsHandler},
		{Method: "GET", Path: "/openapi.json", ID: "openapi", Summary: "This document.", Public: true, Produce: []string{"application/json"}, handler: (*Server).openapi},

		{Method: "GET", Path: "/v1/events", ID: "searchEvents", Summary: "Search audit events, newest first, cursor-paginated.", Result: "EventPage",
			Params: append(eventFilterParams(), pLimit, pCursor), handler: (*Server).searchEvents},
		{Method: "GET", Path: "/v1/export/events", ID: "exportEvents", Summary: "Stream every event of a search as NDJSON or CSV; each row carries the cursor to resume after it.",
			Produce: []string{"application/x-ndjson", "text/csv"}, Params: append(eventFilterParams(), pFormat, pCursor, pManifest), handler: (*Server).exportEvents},
		{Method: "GET", Path: "/v1/agents/:agent_id/timeline", ID: "agentTimeline", Summary: "An agent's audit events and GenAI spans interleaved by time, with its delegation chain.", Result: "Timeline",
			Params: []param{{Name: "agent_id", In: "path", Type: "string", Required: true}, pTenant, pFrom, pTo, pLimit, pCursor}, handler: (*Server).timeline},
		{Method: "GET", Path: "/v1/traces/:trace_id", ID: "getTrace", Summary: "A trace: its span tree and the audit events carrying its trace id.", Result: "Trace",
			Params: []param{{Name: "trace_id", In: "path", Type: "string", Required: true}, pTenant, pOptFrom, pOptTo}, handler: (*Server).trace},
		{Method: "GET", Path: "/v1/detections", ID: "listDetections", Summary: "Detections, newest first, cursor-paginated.", Result: "DetectionPage",
			Params: []param{pTenant, pFrom, pTo, {Name: "rule", In: "query", Type: "string", Desc: "rule_id equals."},
				{Name: "severity", In: "query", Type: "string", Enum: []string{"low", "medium", "high", "critical"}}, pAgent, pToken, pLimit, pCursor},
			handler: (*Server).listDetections},
		{Method: "GET", Path: "/v1/detections/:detection_id", ID: "getDetection", Summary: "One detection.", Result: "Detection",
			Params: []param{{Name: "detection_id", In: "path", Type: "string", Format: "uuid", Required: true}, pTenant}, handler: (*Server).getDetection},
		{Method: "GET", Path: "/v1/detections/:detection_id/deliveries", ID: "getDeliveries", Summary: "Every webhook delivery attempt of a detection.", Result: "DeliveryList",
			Params: []param{{Name: "detection_id", In: "path", Type: "string", Format: "uuid", Required: true}, pTenant}, handler: (*Server).getDeliveries},
		{Method: "GET", Path: "/v1/tokens/:token_id/revocations", ID: "getRevocations", Summary: "Revocations issued for a token.", Result: "RevocationList",
			Params: []param{{Name: "token_id", In: "path", Type: "string", Required: true}, pTenant}, handler: (*Server).getRevocations},
		{Method: "GET", Path: "/v1/reports", ID: "report", Summary: "Counts per time bucket, tenant and agent/tool: events by decision, spans and token usage, detections.", Result: "Report",
			Params: []param{pTenant, pFrom, pTo,
				{Name: "bucket", In: "query", Type: "string", Enum: []string{"hour", "day", "week"}, Desc: "Time bucket (default day)."},
				{Name: "group_by", In: "query", Type: "string", Enum: []string{"tenant", "agent", "tool"}, Desc: "Key within a tenant (default tenant: none)."}},
			handler: (*Server).report},
		{Method: "GET", Path: "/v1/admin/query-audit", ID: "queryAudit", Summary: "The query audit trail: every API call. Admins only.", Admin: true, Result: "AuditPage",
			Params:  []param{pTenant, pFrom, pTo, {Name: "principal", In: "query", Type: "string"}, {Name: "route", In: "query", Type: "string", Desc: "Route template, e.g. /v1/events."}, pLimit, pCursor},
			handler: (*Server).queryAudit},
		{Method: "GET", Path: "/v1/retention/status", ID: "retentionStatus", Result: "RetentionStatus",
			Summary: "Retention state of the caller's tenants: rows per data class and volume (hot/cold), ages under the policy in force, when the next move and deletion are due, legal holds. " +
				"A principal granted every tenant who names none gets the whole database per table and volume and the policy instead.",
			Params: []param{pTenant}, handler: (*Server).retentionStatus},
		{Method: "GET", Path: "/v1/integrity/events/:event_id/proof", ID: "inclusionProof", Result: "InclusionProof",
			Summary: "Inclusion proof of an audit event in its signed Merkle log (RFC 6962), with the signed checkpoint note verbatim; byte fields are base64. " +
				"404 for an event of a tenant not granted, 409 (not-committed) while no checkpoint covers the event yet.",
			Params: []param{{Name: "event_id", In: "path", Type: "string", Format: "uuid", Required: true}, pTenant,
				{Name: "size", In: "query", Type: "integer", Desc: "Prove against the checkpoint of this tree size (default: the latest)."}},
			Problems: []string{"409"}, handler: (*Server).inclusionProof},
		{Method: "GET", Path: "/v1/integrity/logs/audit_events/:partition/consistency", ID: "consistencyProof", Result: "ConsistencyProof", Admin: true, Global: true,
			Summary: "Consistency proof between two signed checkpoints of the log audit_events/<partition>, with both notes verbatim; byte fields are base64. Admins only: " +
				"a log holds every tenant of a Kafka partition, and its sizes and checkpoint times reveal their volumes.",
			Params: []param{{Name: "partition", In: "path", Type: "integer", Required: true},
				{Name: "from_size", In: "query", Type: "integer", Desc: "Size of the older checkpoint (default: the checkpoint before to_size)."},
				{Name: "to_size", In: "query", Type: "integer", Desc: "Size of the newer checkpoint (default: the latest)."}},
			handler: (*Server).consistencyProof},
	}
}
