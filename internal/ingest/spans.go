package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
)

// spanColumns are the columns ingest writes, in the order of insertSpans.
const spanColumns = `tenant_id, start_time, end_time, duration_ns, trace_id, span_id, parent_span_id, trace_state, flags,
name, kind, status_code, status_message, service_name, scope_name, scope_version,
operation_name, provider_name, agent_id, agent_name, agent_version, tool_name, tool_call_id, tool_type,
request_model, response_model, response_id, conversation_id, finish_reasons,
input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens, reasoning_output_tokens,
error_type, tool_call_arguments_sha256, tool_call_result_sha256,
resource_attributes, scope_attributes, span_attributes,
events_time, events_name, events_attributes, links_trace_id, links_span_id, links_trace_state, links_attributes,
dropped_attributes_count, dropped_events_count, dropped_links_count,
src_partition, src_offset, src_index`

type spanHandler struct {
	opts event.SpanOptions
	enc  event.Encoding
	m    *metrics
}

func newSpanHandler(cfg Config, m *metrics) (*spanHandler, error) {
	enc := event.Encoding(cfg.SpansEncoding)
	if err := enc.Validate(); err != nil {
		return nil, err
	}
	return &spanHandler{opts: cfg.Spans, enc: enc, m: m}, nil
}

func (h *spanHandler) table() string   { return "spans" }
func (h *spanHandler) newBatch() batch { return &spanBatch{h: h} }

type spanBatch struct {
	h       *spanHandler
	spans   []event.Span
	scratch []event.Span
}

func (b *spanBatch) rows() int { return len(b.spans) }
func (b *spanBatch) reset()    { clear(b.spans); b.spans = b.spans[:0] }

func (b *spanBatch) add(msg kafka.Message, stored *storedSet) (int, error) {
	var st event.Stats
	var err error
	b.scratch, st, err = event.DecodeSpans(msg.Value, b.h.enc, b.h.opts, b.scratch[:0])
	if err != nil {
		return 0, err
	}
	if st.UnknownTenant > 0 {
		b.h.m.unknown.Add(float64(st.UnknownTenant))
	}
	n := 0
	for i := range b.scratch {
		s := &b.scratch[i]
		if stored.has(msg.Offset, s.SrcIndex) {
			b.h.m.skipped.WithLabelValues("spans").Inc()
			continue
		}
		s.SrcPartition = uint16(msg.Partition)
		s.SrcOffset = uint64(msg.Offset)
		b.spans = append(b.spans, *s)
		n++
	}
	clear(b.scratch)
	return n, nil
}

// insert sends the batch as one INSERT, column by column.
func (b *spanBatch) insert(ctx context.Context, conn driver.Conn, token string) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": token,
	}))
	bt, err := conn.PrepareBatch(ctx, "INSERT INTO spans ("+spanColumns+")")
	if err != nil {
		return fmt.Errorf("prepare insert into spans: %w", err)
	}
	defer bt.Abort()
	n := len(b.spans)
	str := func(f func(*event.Span) string) []string {
		out := make([]string, n)
		for i := range b.spans {
			out[i] = f(&b.spans[i])
		}
		return out
	}
	u64 := func(f func(*event.Span) uint64) []uint64 {
		out := make([]uint64, n)
		for i := range b.spans {
			out[i] = f(&b.spans[i])
		}
		return out
	}
	u32 := func(f func(*event.Span) uint32) []uint32 {
		out := make([]uint32, n)
		for i := range b.spans {
			out[i] = f(&b.spans[i])
		}
		return out
	}
	ts := func(f func(*event.Span) time.Time) []time.Time {
		out := make([]time.Time, n)
		for i := range b.spans {
			out[i] = f(&b.spans[i])
		}
		return out
	}
	maps := func(f func(*event.Span) map[string]string) []map[string]string {
		out := make([]map[string]string, n)
		for i := range b.spans {
			if out[i] = f(&b.spans[i]); out[i] == nil {
				out[i] = map[string]string{}
			}
		}
		return out
	}
	strs := func(f func(*event.Span) []string) [][]string {
		out := make([][]string, n)
		for i := range b.spans {
			if out[i] = f(&b.spans[i]); out[i] == nil {
				out[i] = []string{}
			}
		}
		return out
	}
	u16 := make([]uint16, n)
	for i := range b.spans {
		u16[i] = b.spans[i].SrcPartition
	}
	evTimes := make([][]time.Time, n)
	evAttrs := make([][]map[string]string, n)
	lnAttrs := make([][]map[string]string, n)
	for i := range b.spans {
		s := &b.spans[i]
		evTimes[i] = nonNil(s.EventsTime)
		evAttrs[i] = nonNilMaps(s.EventsAttributes)
		lnAttrs[i] = nonNilMaps(s.LinksAttributes)
	}
	cols := []any{
		str(func(s *event.Span) string { return s.TenantID }),
		ts(func(s *event.Span) time.Time { return s.StartTime }),
		ts(func(s *event.Span) time.Time { return s.EndTime }),
		u64(func(s *event.Span) uint64 { return s.DurationNs }),
		str(func(s *event.Span) string { return s.TraceID }),
		str(func(s *event.Span) string { return s.SpanID }),
		str(func(s *event.Span) string { return s.ParentSpanID }),
		str(func(s *event.Span) string { return s.TraceState }),
		u32(func(s *event.Span) uint32 { return s.Flags }),
		str(func(s *event.Span) string { return s.Name }),
		str(func(s *event.Span) string { return s.Kind }),
		str(func(s *event.Span) string { return s.StatusCode }),
		str(func(s *event.Span) string { return s.StatusMessage }),
		str(func(s *event.Span) string { return s.ServiceName }),
		str(func(s *event.Span) string { return s.ScopeName }),
		str(func(s *event.Span) string { return s.ScopeVersion }),
		str(func(s *event.Span) string { return s.OperationName }),
		str(func(s *event.Span) string { return s.ProviderName }),
		str(func(s *event.Span) string { return s.AgentID }),
		str(func(s *event.Span) string { return s.AgentName }),
		str(func(s *event.Span) string { return s.AgentVersion }),
		str(func(s *event.Span) string { return s.ToolName }),
		str(func(s *event.Span) string { return s.ToolCallID }),
		str(func(s *event.Span) string { return s.ToolType }),
		str(func(s *event.Span) string { return s.RequestModel }),
		str(func(s *event.Span) string { return s.ResponseModel }),
		str(func(s *event.Span) string { return s.ResponseID }),
		str(func(s *event.Span) string { return s.ConversationID }),
		strs(func(s *event.Span) []string { return s.FinishReasons }),
		u64(func(s *event.Span) uint64 { return s.InputTokens }),
		u64(func(s *event.Span) uint64 { return s.OutputTokens }),
		u64(func(s *event.Span) uint64 { return s.CacheReadInputTokens }),
		u64(func(s *event.Span) uint64 { return s.CacheCreationInputTokens }),
		u64(func(s *event.Span) uint64 { return s.ReasoningOutputTokens }),
		str(func(s *event.Span) string { return s.ErrorType }),
		str(func(s *event.Span) string { return s.ToolCallArgumentsSHA256 }),
		str(func(s *event.Span) string { return s.ToolCallResultSHA256 }),
		maps(func(s *event.Span) map[string]string { return s.ResourceAttributes }),
		maps(func(s *event.Span) map[string]string { return s.ScopeAttributes }),
		maps(func(s *event.Span) map[string]string { return s.SpanAttributes }),
		evTimes,
		strs(func(s *event.Span) []string { return s.EventsName }),
		evAttrs,
		strs(func(s *event.Span) []string { return s.LinksTraceID }),
		strs(func(s *event.Span) []string { return s.LinksSpanID }),
		strs(func(s *event.Span) []string { return s.LinksTraceState }),
		lnAttrs,
		u32(func(s *event.Span) uint32 { return s.DroppedAttributes }),
		u32(func(s *event.Span) uint32 { return s.DroppedEvents }),
		u32(func(s *event.Span) uint32 { return s.DroppedLinks }),
		u16,
		u64(func(s *event.Span) uint64 { return s.SrcOffset }),
		u32(func(s *event.Span) uint32 { return s.SrcIndex }),
	}
	for i, c := range cols {
		if err := bt.Column(i).Append(c); err != nil {
			return fmt.Errorf("append spans column %d: %w", i, err)
		}
	}
	if err := bt.Send(); err != nil {
		return fmt.Errorf("insert %d rows into spans: %w", n, err)
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nonNilMaps(s []map[string]string) []map[string]string {
	if s == nil {
		return []map[string]string{}
	}
	for i := range s {
		if s[i] == nil {
			s[i] = map[string]string{}
		}
	}
	return s
}
