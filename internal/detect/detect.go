// Package detect is agentaudit's detector: it consumes audit events and
// OTLP spans from Kafka (its own consumer group), evaluates the rules of
// rules.yaml with per-actor state in memory, stores every detection in
// ClickHouse and only then hands it to the action sink (revocation and
// notification webhooks, package detect/notify).
//
// # State
//
// The Engine keeps, per agent, its first sighting, baseline scopes, the
// tenants it acted under and per-second request and token counts; per token
// its tenants and whether its revocation was asked for; per parent identity
// its declared scopes; recent traces (to join spans to audit events); and
// the open detections of the suppression periods. Each map is bounded
// (Config.State) and evicts the least recently used entry, counted in
// agentaudit_detector_state_evictions_total. At start, Engine.Warm loads the
// same state from ClickHouse (audit_events, spans, detections,
// revocations), so a restart forgets no baseline, binding, revocation or
// open detection. Windows are measured on event time.
//
// Audit events are keyed tenant/agent, so one agent's events are on one
// partition and ordered; one detector instance owns the state of the agents
// of its partitions. (With several instances, a rebalance moves partitions
// and the new owner's state for them is what it warmed at start: re-warm on
// assignment is future work; a single instance is complete.)
//
// # Delivery
//
// For each message the engine returns Outcomes (new detections, newer
// versions of open ones). The sink inserts them in batches into
// detections — an insert is acknowledged before any action — then calls
// Actions.Act for those that ask for one, in order; a BatchActions sink
// (the webhook sender) writes its outbox rows for the batch while the
// detections are inserted and sends only after both are acknowledged. A partition's offset is
// committed only up to messages whose outcomes have all been stored and
// acted on. A crash between storing and committing re-consumes those
// messages; the warmed open detections make their re-detection a
// suppressed repeat of the same detection id, not a second detection.
package detect

import (
	"context"
	"log/slog"

	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/event"
)

// Actions receives stored detections that call for an action. Act must
// return nil only once the action is durably accepted (e.g. written to the
// webhook outbox); an error is retried.
type Actions interface {
	Act(ctx context.Context, d event.Detection, revoke bool) error
}

// BatchActions is an action sink that takes every detection of one
// detections insert at once, in two steps (notify.Sender): PrepareBatch
// makes the actions durable (the webhook outbox) while the detections are
// being stored, and the release it returns — called only once the
// detections insert is acknowledged too — lets them go. The sink then gets
// no Act calls. An error retries the whole PrepareBatch.
type BatchActions interface {
	Actions
	PrepareBatch(ctx context.Context, acts []notify.Action) (release func(), err error)
}

// LogActions only logs detections: the action sink when no notifier is
// configured.
type LogActions struct{ Log *slog.Logger }

// Act logs d.
func (a LogActions) Act(_ context.Context, d event.Detection, revoke bool) error {
	a.Log.Warn("detection", "rule_id", d.RuleID, "severity", d.Severity, "tenant_id", d.TenantID, "agent_id", d.AgentID,
		"detection_id", d.ID, "revoke", revoke, "summary", d.Summary)
	return nil
}
