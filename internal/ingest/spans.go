package ingest

import (
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
)

// spanColumns are the columns ingest writes, in the order of appendSpan.
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

type spanCodec struct {
	opts    event.SpanOptions
	enc     event.Encoding
	scratch []event.Span
	// unknownTenant is the tenant of spans that name none.
	unknownTenant string
	maps          [3]sortedMap // resource, scope, span attributes
}

func newSpanCodec(cfg Config) (*spanCodec, error) {
	enc := event.Encoding(cfg.SpansEncoding)
	if err := enc.Validate(); err != nil {
		return nil, err
	}
	unknown := cfg.Spans.UnknownTenant
	if unknown == "" {
		unknown = event.DefaultUnknownTenant
	}
	return &spanCodec{opts: cfg.Spans, enc: enc, unknownTenant: unknown}, nil
}

func (c *spanCodec) table() string   { return "spans" }
func (c *spanCodec) columns() string { return spanColumns }

func (c *spanCodec) appendTo(cols []driver.BatchColumn, msg kafka.Message, stored *storedSet) (appended, error) {
	spans, st, err := event.DecodeSpans(msg.Value, c.enc, c.opts, c.scratch[:0])
	c.scratch = spans
	defer clear(c.scratch)
	if err != nil {
		return appended{}, err
	}
	var a appended
	for i := range spans {
		s := &spans[i]
		if stored.has(msg.Offset, s.SrcIndex) {
			a.skipped++
			continue
		}
		a.rows++
		if st.UnknownTenant > 0 && s.TenantID == c.unknownTenant {
			a.unknownTenant++
		}
		if cols == nil {
			continue
		}
		s.SrcPartition, s.SrcOffset = uint16(msg.Partition), uint64(msg.Offset)
		if err := appendSpan(cols, s, &c.maps); err != nil {
			return a, err
		}
	}
	return a, nil
}

var (
	emptyMap   = map[string]string{}
	emptyStrs  = []string{}
	emptyTimes = []time.Time{}
	emptyMaps  = []map[string]string{}
)

func orEmptyStrs(s []string) []string {
	if s == nil {
		return emptyStrs
	}
	return s
}

func orEmptyMaps(s []map[string]string) []map[string]string {
	if s == nil {
		return emptyMaps
	}
	for i := range s {
		if s[i] == nil {
			s[i] = emptyMap
		}
	}
	return s
}

// appendSpan appends one row, column by column, in spanColumns order.
func appendSpan(cols []driver.BatchColumn, s *event.Span, maps *[3]sortedMap) error {
	evTimes := s.EventsTime
	if evTimes == nil {
		evTimes = emptyTimes
	}
	vals := [...]any{
		s.TenantID, s.StartTime, s.EndTime, s.DurationNs, s.TraceID, s.SpanID, s.ParentSpanID, s.TraceState, s.Flags,
		s.Name, s.Kind, s.StatusCode, s.StatusMessage, s.ServiceName, s.ScopeName, s.ScopeVersion,
		s.OperationName, s.ProviderName, s.AgentID, s.AgentName, s.AgentVersion, s.ToolName, s.ToolCallID, s.ToolType,
		s.RequestModel, s.ResponseModel, s.ResponseID, s.ConversationID, orEmptyStrs(s.FinishReasons),
		s.InputTokens, s.OutputTokens, s.CacheReadInputTokens, s.CacheCreationInputTokens, s.ReasoningOutputTokens,
		s.ErrorType, s.ToolCallArgumentsSHA256, s.ToolCallResultSHA256,
		maps[0].of(s.ResourceAttributes), maps[1].of(s.ScopeAttributes), maps[2].of(s.SpanAttributes),
		evTimes, orEmptyStrs(s.EventsName), orEmptyMaps(s.EventsAttributes),
		orEmptyStrs(s.LinksTraceID), orEmptyStrs(s.LinksSpanID), orEmptyStrs(s.LinksTraceState), orEmptyMaps(s.LinksAttributes),
		s.DroppedAttributes, s.DroppedEvents, s.DroppedLinks,
		s.SrcPartition, s.SrcOffset, s.SrcIndex,
	}
	for i, v := range vals {
		if err := cols[i].AppendRow(v); err != nil {
			return fmt.Errorf("append spans column %d: %w", i, err)
		}
	}
	return nil
}
