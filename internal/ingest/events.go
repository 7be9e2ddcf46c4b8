package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
)

const eventColumns = `event_id, ts, tenant_id, agent_id, parent_identity, token_id, token_type,
delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id,
policy_decision, trace_id, span_id, attributes, schema_version, src_partition, src_offset, src_index`

type eventHandler struct {
	dec *event.AuditDecoder
}

func newEventHandler(cfg Config) (*eventHandler, error) {
	dec, err := event.NewAuditDecoder(cfg.Events)
	if err != nil {
		return nil, err
	}
	return &eventHandler{dec: dec}, nil
}

func (h *eventHandler) table() string   { return "audit_events" }
func (h *eventHandler) newBatch() batch { return &eventBatch{h: h} }

type eventBatch struct {
	h      *eventHandler
	events []event.AuditEvent
	src    []rowID
	part   uint16
}

func (b *eventBatch) rows() int { return len(b.events) }
func (b *eventBatch) reset() {
	clear(b.events)
	b.events, b.src = b.events[:0], b.src[:0]
}

func (b *eventBatch) add(msg kafka.Message, stored *storedSet) (int, error) {
	ev, err := b.h.dec.Decode(msg.Value)
	if err != nil {
		return 0, err
	}
	if stored.has(msg.Offset, 0) {
		return 0, nil
	}
	b.part = uint16(msg.Partition)
	b.events = append(b.events, ev)
	b.src = append(b.src, rowID{msg.Offset, 0})
	return 1, nil
}

func (b *eventBatch) insert(ctx context.Context, conn driver.Conn, token string) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": token,
	}))
	bt, err := conn.PrepareBatch(ctx, "INSERT INTO audit_events ("+eventColumns+")")
	if err != nil {
		return fmt.Errorf("prepare insert into audit_events: %w", err)
	}
	defer bt.Abort()
	n := len(b.events)
	var (
		ids      = make([]uuid.UUID, n)
		ts       = make([]time.Time, n)
		strCols  = make([][]string, 12)
		arrCols  = [2][][]string{make([][]string, n), make([][]string, n)}
		attrs    = make([]map[string]string, n)
		parts    = make([]uint16, n)
		offsets  = make([]uint64, n)
		indexes  = make([]uint32, n)
		versions = make([]string, n)
	)
	for c := range strCols {
		strCols[c] = make([]string, n)
	}
	for i := range b.events {
		e := &b.events[i]
		ids[i], ts[i] = e.EventID, e.TS
		for c, v := range [...]string{e.TenantID, e.AgentID, e.ParentIdentity, e.TokenID, e.TokenType, e.ToolName,
			e.ToolParamsHash, e.Resource, e.ResourceTenantID, e.PolicyDecision, e.TraceID, e.SpanID} {
			strCols[c][i] = v
		}
		arrCols[0][i] = nonNil(e.DelegationScope)
		arrCols[1][i] = nonNil(e.RequiredScopes)
		if attrs[i] = e.Attributes; attrs[i] == nil {
			attrs[i] = map[string]string{}
		}
		versions[i] = e.SchemaVersion
		parts[i], offsets[i], indexes[i] = b.part, uint64(b.src[i].offset), b.src[i].index
	}
	cols := []any{ids, ts, strCols[0], strCols[1], strCols[2], strCols[3], strCols[4],
		arrCols[0], arrCols[1], strCols[5], strCols[6], strCols[7], strCols[8],
		strCols[9], strCols[10], strCols[11], attrs, versions, parts, offsets, indexes}
	for i, c := range cols {
		if err := bt.Column(i).Append(c); err != nil {
			return fmt.Errorf("append audit_events column %d: %w", i, err)
		}
	}
	if err := bt.Send(); err != nil {
		return fmt.Errorf("insert %d rows into audit_events: %w", n, err)
	}
	return nil
}
