package notify

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

// Message types of the json format (the Standard Webhooks payload shape:
// type, timestamp, data).
const (
	TypeRevoke    = "agentaudit.token.revoke"
	TypeDetection = "agentaudit.detection"
)

// Payload is the json-format body.
type Payload struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      PayloadData `json:"data"`
}

// PayloadData names the token, the actor and why.
type PayloadData struct {
	DetectionID     uuid.UUID `json:"detection_id"`
	Action          string    `json:"action"` // revoke | notify
	TokenID         string    `json:"token_id"`
	TokenType       string    `json:"token_type"`
	AgentID         string    `json:"agent_id"`
	ParentIdentity  string    `json:"parent_identity,omitempty"`
	TenantID        string    `json:"tenant_id"`
	RuleID          string    `json:"rule_id"`
	Severity        string    `json:"severity"`
	Reason          string    `json:"reason"`
	DetectedAt      time.Time `json:"detected_at"`
	EventTime       time.Time `json:"event_time"`
	SuppressedCount uint32    `json:"suppressed_count"`
	Evidence        Evidence  `json:"evidence"`
}

// Evidence points at what the detection is based on.
type Evidence struct {
	EventIDs         []uuid.UUID       `json:"event_ids"`
	TraceID          string            `json:"trace_id,omitempty"`
	ToolName         string            `json:"tool_name,omitempty"`
	ResourceTenantID string            `json:"resource_tenant_id,omitempty"`
	Attributes       map[string]string `json:"attributes,omitempty"`
}

func jsonBody(d event.Detection, kind string) ([]byte, error) {
	p := Payload{Type: TypeDetection, Timestamp: d.Time.UTC(), Data: PayloadData{
		DetectionID: d.ID, Action: kind, TokenID: d.TokenID, TokenType: d.TokenType,
		AgentID: d.AgentID, ParentIdentity: d.ParentIdentity, TenantID: d.TenantID,
		RuleID: d.RuleID, Severity: string(d.Severity), Reason: d.Summary,
		DetectedAt: d.Time.UTC(), EventTime: d.EventTime.UTC(), SuppressedCount: d.SuppressedCount,
		Evidence: Evidence{EventIDs: d.EvidenceEventIDs, TraceID: d.TraceID, ToolName: d.ToolName,
			ResourceTenantID: d.ResourceTenantID, Attributes: d.Attributes},
	}}
	if p.Data.Evidence.EventIDs == nil {
		p.Data.Evidence.EventIDs = []uuid.UUID{}
	}
	if kind == KindRevoke {
		p.Type = TypeRevoke
	}
	return json.Marshal(p)
}

// caepSET is a CAEP session-revoked Security Event Token (RFC 8417 claims,
// OpenID CAEP 1.0 event). It is sent as plain JSON claims, not a JWS: the
// Standard Webhooks HMAC already authenticates the body and binds it to the
// webhook-id and timestamp, and a second signature would need a key pair
// the receiver must fetch. tenant_id and rule_id are extra claims.
type caepSET struct {
	Iss      string                    `json:"iss"`
	Jti      string                    `json:"jti"`
	Iat      int64                     `json:"iat"`
	Txn      string                    `json:"txn"`
	SubID    map[string]string         `json:"sub_id"`
	Events   map[string]caepRevocation `json:"events"`
	TenantID string                    `json:"tenant_id"`
	RuleID   string                    `json:"rule_id"`
}

type caepRevocation struct {
	EventTimestamp   int64             `json:"event_timestamp"`
	InitiatingEntity string            `json:"initiating_entity"`
	ReasonAdmin      map[string]string `json:"reason_admin"`
}

func caepBody(d event.Detection, e *Endpoint, issuer, deliveryID string) ([]byte, error) {
	sub := map[string]string{"format": "opaque", "id": d.TokenID}
	if e.CAEPSubjectFormat == "jwt_id" {
		sub = map[string]string{"format": "jwt_id", "iss": e.TokenIssuer, "jti": d.TokenID}
	}
	return json.Marshal(caepSET{
		Iss: issuer, Jti: deliveryID, Iat: d.Time.Unix(), Txn: d.ID.String(), SubID: sub,
		Events: map[string]caepRevocation{webhooksink.CAEPSessionRevoked: {
			EventTimestamp: d.Time.Unix(), InitiatingEntity: "policy",
			ReasonAdmin: map[string]string{"en": d.RuleID + ": " + d.Summary},
		}},
		TenantID: d.TenantID, RuleID: d.RuleID,
	})
}

// OCSF renders d as an OCSF 1.3 Detection Finding (category 2 Findings,
// class_uid 2004, activity 1 Create). The agent is the actor's user, the
// token the actor's session credential; fields OCSF has no place for go to
// unmapped.
func OCSF(d event.Detection) ([]byte, error) {
	sevID, sevName := 0, "Unknown"
	switch d.Severity {
	case event.SeverityLow:
		sevID, sevName = 2, "Low"
	case event.SeverityMedium:
		sevID, sevName = 3, "Medium"
	case event.SeverityHigh:
		sevID, sevName = 4, "High"
	case event.SeverityCritical:
		sevID, sevName = 5, "Critical"
	}
	evidence := make([]string, len(d.EvidenceEventIDs))
	for i, id := range d.EvidenceEventIDs {
		evidence[i] = id.String()
	}
	f := map[string]any{
		"activity_id": 1, "activity_name": "Create",
		"category_uid": 2, "category_name": "Findings",
		"class_uid": 2004, "class_name": "Detection Finding",
		"type_uid": 200401, "type_name": "Detection Finding: Create",
		"severity_id": sevID, "severity": sevName,
		"status_id": 1, "status": "New",
		"time":    d.Time.UnixMilli(),
		"message": d.Summary,
		"metadata": map[string]any{
			"version":     "1.3.0",
			"uid":         d.ID.String(),
			"tenant_uid":  d.TenantID,
			"log_name":    "detections",
			"product":     map[string]any{"name": "agentaudit", "vendor_name": "agentaudit", "feature": map[string]any{"name": "detector"}},
			"logged_time": d.Time.UnixMilli(),
		},
		"finding_info": map[string]any{
			"uid": d.ID.String(), "title": d.RuleID, "desc": d.Summary,
			"created_time": d.Time.UnixMilli(), "first_seen_time": d.EventTime.UnixMilli(),
			"types":    []string{d.RuleID},
			"analytic": map[string]any{"uid": d.RuleID, "name": d.RuleID, "type_id": 1, "type": "Rule"},
		},
		"actor": map[string]any{
			"user":    map[string]any{"uid": d.AgentID, "name": d.AgentID, "type_id": 99, "type": "AI agent"},
			"session": map[string]any{"credential_uid": d.TokenID},
		},
		"unmapped": map[string]any{
			"tenant_id": d.TenantID, "parent_identity": d.ParentIdentity, "token_type": d.TokenType,
			"tool_name": d.ToolName, "resource_tenant_id": d.ResourceTenantID, "trace_id": d.TraceID,
			"evidence_event_ids": evidence, "suppressed_count": d.SuppressedCount, "attributes": d.Attributes,
		},
	}
	if d.ResourceTenantID != "" {
		f["resources"] = []map[string]any{{"uid": d.ResourceTenantID, "type": "tenant"}}
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode ocsf finding: %w", err)
	}
	return b, nil
}

// body renders the message body of d for endpoint e and kind.
func body(d event.Detection, e *Endpoint, kind, issuer, deliveryID string) ([]byte, error) {
	switch e.Format {
	case FormatCAEPSET:
		return caepBody(d, e, issuer, deliveryID)
	case FormatOCSF:
		return OCSF(d)
	}
	return jsonBody(d, kind)
}
