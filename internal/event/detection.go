package event

import (
	"time"

	"github.com/google/uuid"
)

// Severity of a detection, ordered low < medium < high < critical.
type Severity string

// Severities.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Rank orders severities (0 for an unknown one).
func (s Severity) Rank() int {
	switch s {
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return 0
}

// Valid reports whether s is one of the four severities.
func (s Severity) Valid() bool { return s.Rank() > 0 }

// Detection is one row of the detections table
// (schema/migrations/0003_detections.sql): what the detector found, about
// which actor, on which evidence. It is the contract between the detector,
// the webhook notifier and the query API.
type Detection struct {
	// ID is deterministic: the same rule firing on the same evidence gives
	// the same ID, so a re-detection after a restart replaces, not doubles.
	ID        uuid.UUID `ch:"detection_id"`
	Time      time.Time `ch:"ts"`       // when the detector decided, UTC
	EventTime time.Time `ch:"event_ts"` // time of the triggering event, UTC
	RuleID    string    `ch:"rule_id"`  // e.g. scope_escalation.out_of_delegation
	Severity  Severity  `ch:"severity"`

	TenantID         string `ch:"tenant_id"`
	AgentID          string `ch:"agent_id"`
	ParentIdentity   string `ch:"parent_identity"`
	TokenID          string `ch:"token_id"`
	TokenType        string `ch:"token_type"`
	ToolName         string `ch:"tool_name"`
	ResourceTenantID string `ch:"resource_tenant_id"`

	EvidenceEventIDs []uuid.UUID `ch:"evidence_event_ids"`
	TraceID          string      `ch:"trace_id"`
	Summary          string      `ch:"summary"` // one human sentence, no secrets
	// SuppressedCount is how many repeats were folded into this detection
	// during its suppression window.
	SuppressedCount uint32            `ch:"suppressed_count"`
	Attributes      map[string]string `ch:"attributes"`
	// Version orders rewrites of the same detection (ReplacingMergeTree).
	Version uint64 `ch:"version"`
}
