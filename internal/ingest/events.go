package ingest

import (
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
)

const eventColumns = `event_id, ts, tenant_id, agent_id, parent_identity, token_id, token_type,
delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id,
policy_decision, trace_id, span_id, attributes, schema_version, src_partition, src_offset, src_index`

type eventCodec struct {
	dec   *event.AuditDecoder
	attrs sortedMap
}

func newEventCodec(cfg Config) (*eventCodec, error) {
	dec, err := event.NewAuditDecoder(cfg.Events)
	if err != nil {
		return nil, err
	}
	return &eventCodec{dec: dec}, nil
}

func (c *eventCodec) table() string   { return "audit_events" }
func (c *eventCodec) columns() string { return eventColumns }

func (c *eventCodec) appendTo(cols []driver.BatchColumn, msg kafka.Message, stored *storedSet) (appended, error) {
	e, err := c.dec.Decode(msg.Value)
	if err != nil {
		return appended{}, err
	}
	if stored.has(msg.Offset, 0) {
		return appended{skipped: 1}, nil
	}
	if cols == nil {
		return appended{rows: 1}, nil
	}
	vals := [...]any{
		e.EventID, e.TS, e.TenantID, e.AgentID, e.ParentIdentity, e.TokenID, e.TokenType,
		orEmptyStrs(e.DelegationScope), orEmptyStrs(e.RequiredScopes), e.ToolName, e.ToolParamsHash, e.Resource, e.ResourceTenantID,
		e.PolicyDecision, e.TraceID, e.SpanID, c.attrs.of(e.Attributes), e.SchemaVersion,
		uint16(msg.Partition), uint64(msg.Offset), uint32(0),
	}
	for i, v := range vals {
		if err := cols[i].AppendRow(v); err != nil {
			return appended{rows: 1}, fmt.Errorf("append audit_events column %d: %w", i, err)
		}
	}
	return appended{rows: 1}, nil
}
