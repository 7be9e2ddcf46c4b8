package ingest

import (
	"slices"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/agentaudit/agentaudit/internal/event"
)

// Typed native-protocol columns for one batch of a table. Values are
// appended straight into typed buffers (strings copied into one byte
// buffer per column, LowCardinality dictionaries built once per block at
// send time), so a batch costs a few bytes per value and nothing per value
// for the garbage collector; the decoded message can be released at once.

func lowCard() *lcStr { return newLCStr() }

func dateTime64() *proto.ColDateTime64 {
	return new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano).WithLocation(time.UTC)
}

// attrMap is an attribute map column. The tables hold Map(String, String)
// (migration 0020: cheaper for the server to insert and merge); on the wire
// the keys stay LowCardinality, which the server converts on insert, so a
// batch holds each distinct key once instead of once per row.
func attrMap() *proto.ColMap[string, string] {
	return proto.NewMap[string, string](lowCard(), new(proto.ColStr))
}

// appendSorted appends m to a Map column in key order. Go randomizes map
// iteration: in iteration order, rows with the same attributes would be
// different bytes and the column would compress several times worse (the
// resource attributes of the bench workload took 20 B/span instead of 10
// at ZSTD(1)). keys is scratch space.
func appendSorted(c *proto.ColMap[string, string], m map[string]string, keys *[]string) {
	ks := (*keys)[:0]
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for _, k := range ks {
		c.Keys.Append(k)
		c.Values.Append(m[k])
	}
	c.Offsets.Append(uint64(c.Keys.Rows()))
	*keys = ks
}

// appendMaps appends one Array(Map) row.
func appendMaps(c *proto.ColArr[map[string]string], ms []map[string]string, keys *[]string) {
	mc := c.Data.(*proto.ColMap[string, string])
	for _, m := range ms {
		appendSorted(mc, m, keys)
	}
	c.Offsets.Append(uint64(mc.Rows()))
}

// block is the typed columns of one table, in insert order.
type block struct {
	input proto.Input
	keys  []string // scratch for appendSorted
}

func (b *block) add(name string, c proto.ColInput) {
	b.input = append(b.input, proto.InputColumn{Name: name, Data: c})
}

func (b *block) rows() int {
	if len(b.input) == 0 {
		return 0
	}
	return b.input[0].Data.Rows()
}

func (b *block) reset() {
	for _, c := range b.input {
		c.Data.(proto.Resettable).Reset()
	}
}

// spanBlock is a batch of spans rows.
type spanBlock struct {
	block
	tenantID, name, kind, statusCode, serviceName, scopeName, scopeVersion,
	operationName, providerName, agentName, agentVersion, toolName, toolType,
	requestModel, responseModel, errorType *lcStr
	startTime                                                         *proto.ColDateTime64
	traceID, spanID, parentSpanID, traceState, statusMessage, agentID proto.ColStr
	toolCallID, responseID, conversationID, argsSHA, resultSHA        proto.ColStr
	durationNs, inputTokens, outputTokens, cacheRead, cacheCreation   proto.ColUInt64
	reasoning, srcOffset                                              proto.ColUInt64
	flags, droppedAttrs, droppedEvents, droppedLinks, srcIndex        proto.ColUInt32
	srcPartition                                                      proto.ColUInt16
	finishReasons, eventsName                                         *proto.ColArr[string]
	linksTraceID, linksSpanID, linksTraceState                        *proto.ColArr[string]
	resourceAttrs, scopeAttrs, spanAttrs                              *proto.ColMap[string, string]
	eventsTime                                                        *proto.ColArr[time.Time]
	eventsAttrs, linksAttrs                                           *proto.ColArr[map[string]string]
}

func newSpanBlock() *spanBlock {
	b := &spanBlock{}
	for _, p := range []**lcStr{&b.tenantID, &b.name, &b.kind, &b.statusCode, &b.serviceName,
		&b.scopeName, &b.scopeVersion, &b.operationName, &b.providerName, &b.agentName, &b.agentVersion, &b.toolName,
		&b.toolType, &b.requestModel, &b.responseModel, &b.errorType} {
		*p = lowCard()
	}
	b.startTime = dateTime64()
	b.finishReasons = proto.NewArray[string](lowCard())
	b.eventsName = proto.NewArray[string](lowCard())
	b.linksTraceID = proto.NewArray[string](new(proto.ColStr))
	b.linksSpanID = proto.NewArray[string](new(proto.ColStr))
	b.linksTraceState = proto.NewArray[string](new(proto.ColStr))
	b.resourceAttrs, b.scopeAttrs, b.spanAttrs = attrMap(), attrMap(), attrMap()
	b.eventsTime = proto.NewArray[time.Time](dateTime64())
	b.eventsAttrs = proto.NewArray[map[string]string](attrMap())
	b.linksAttrs = proto.NewArray[map[string]string](attrMap())

	b.add("tenant_id", b.tenantID)
	b.add("start_time", b.startTime)
	b.add("duration_ns", &b.durationNs)
	b.add("trace_id", &b.traceID)
	b.add("span_id", &b.spanID)
	b.add("parent_span_id", &b.parentSpanID)
	b.add("trace_state", &b.traceState)
	b.add("flags", &b.flags)
	b.add("name", b.name)
	b.add("kind", b.kind)
	b.add("status_code", b.statusCode)
	b.add("status_message", &b.statusMessage)
	b.add("service_name", b.serviceName)
	b.add("scope_name", b.scopeName)
	b.add("scope_version", b.scopeVersion)
	b.add("operation_name", b.operationName)
	b.add("provider_name", b.providerName)
	b.add("agent_id", &b.agentID)
	b.add("agent_name", b.agentName)
	b.add("agent_version", b.agentVersion)
	b.add("tool_name", b.toolName)
	b.add("tool_call_id", &b.toolCallID)
	b.add("tool_type", b.toolType)
	b.add("request_model", b.requestModel)
	b.add("response_model", b.responseModel)
	b.add("response_id", &b.responseID)
	b.add("conversation_id", &b.conversationID)
	b.add("finish_reasons", b.finishReasons)
	b.add("input_tokens", &b.inputTokens)
	b.add("output_tokens", &b.outputTokens)
	b.add("cache_read_input_tokens", &b.cacheRead)
	b.add("cache_creation_input_tokens", &b.cacheCreation)
	b.add("reasoning_output_tokens", &b.reasoning)
	b.add("error_type", b.errorType)
	b.add("tool_call_arguments_sha256", &b.argsSHA)
	b.add("tool_call_result_sha256", &b.resultSHA)
	b.add("resource_attributes", b.resourceAttrs)
	b.add("scope_attributes", b.scopeAttrs)
	b.add("span_attributes", b.spanAttrs)
	b.add("events_time", b.eventsTime)
	b.add("events_name", b.eventsName)
	b.add("events_attributes", b.eventsAttrs)
	b.add("links_trace_id", b.linksTraceID)
	b.add("links_span_id", b.linksSpanID)
	b.add("links_trace_state", b.linksTraceState)
	b.add("links_attributes", b.linksAttrs)
	b.add("dropped_attributes_count", &b.droppedAttrs)
	b.add("dropped_events_count", &b.droppedEvents)
	b.add("dropped_links_count", &b.droppedLinks)
	b.add("src_partition", &b.srcPartition)
	b.add("src_offset", &b.srcOffset)
	b.add("src_index", &b.srcIndex)
	return b
}

// append adds one span row.
func (b *spanBlock) append(s *event.Span) {
	b.tenantID.Append(s.TenantID)
	b.startTime.Append(s.StartTime)
	b.durationNs.Append(s.DurationNs)
	b.traceID.Append(s.TraceID)
	b.spanID.Append(s.SpanID)
	b.parentSpanID.Append(s.ParentSpanID)
	b.traceState.Append(s.TraceState)
	b.flags.Append(s.Flags)
	b.name.Append(s.Name)
	b.kind.Append(s.Kind)
	b.statusCode.Append(s.StatusCode)
	b.statusMessage.Append(s.StatusMessage)
	b.serviceName.Append(s.ServiceName)
	b.scopeName.Append(s.ScopeName)
	b.scopeVersion.Append(s.ScopeVersion)
	b.operationName.Append(s.OperationName)
	b.providerName.Append(s.ProviderName)
	b.agentID.Append(s.AgentID)
	b.agentName.Append(s.AgentName)
	b.agentVersion.Append(s.AgentVersion)
	b.toolName.Append(s.ToolName)
	b.toolCallID.Append(s.ToolCallID)
	b.toolType.Append(s.ToolType)
	b.requestModel.Append(s.RequestModel)
	b.responseModel.Append(s.ResponseModel)
	b.responseID.Append(s.ResponseID)
	b.conversationID.Append(s.ConversationID)
	b.finishReasons.Append(s.FinishReasons)
	b.inputTokens.Append(s.InputTokens)
	b.outputTokens.Append(s.OutputTokens)
	b.cacheRead.Append(s.CacheReadInputTokens)
	b.cacheCreation.Append(s.CacheCreationInputTokens)
	b.reasoning.Append(s.ReasoningOutputTokens)
	b.errorType.Append(s.ErrorType)
	b.argsSHA.Append(s.ToolCallArgumentsSHA256)
	b.resultSHA.Append(s.ToolCallResultSHA256)
	appendSorted(b.resourceAttrs, s.ResourceAttributes, &b.keys)
	appendSorted(b.scopeAttrs, s.ScopeAttributes, &b.keys)
	appendSorted(b.spanAttrs, s.SpanAttributes, &b.keys)
	b.eventsTime.Append(s.EventsTime)
	b.eventsName.Append(s.EventsName)
	appendMaps(b.eventsAttrs, s.EventsAttributes, &b.keys)
	b.linksTraceID.Append(s.LinksTraceID)
	b.linksSpanID.Append(s.LinksSpanID)
	b.linksTraceState.Append(s.LinksTraceState)
	appendMaps(b.linksAttrs, s.LinksAttributes, &b.keys)
	b.droppedAttrs.Append(s.DroppedAttributes)
	b.droppedEvents.Append(s.DroppedEvents)
	b.droppedLinks.Append(s.DroppedLinks)
	b.srcPartition.Append(s.SrcPartition)
	b.srcOffset.Append(s.SrcOffset)
	b.srcIndex.Append(s.SrcIndex)
}

// eventBlock is a batch of audit_events rows.
type eventBlock struct {
	block
	eventID                                                   proto.ColUUID
	ts                                                        *proto.ColDateTime64
	tenantID, tokenType, toolName, resourceTenantID, decision *lcStr
	schemaVersion                                             *lcStr
	agentID, parentIdentity, tokenID, paramsHash, resource    proto.ColStr
	traceID, spanID                                           proto.ColStr
	delegationScope, requiredScopes                           *proto.ColArr[string]
	attributes                                                *proto.ColMap[string, string]
	srcPartition                                              proto.ColUInt16
	srcOffset                                                 proto.ColUInt64
	srcIndex                                                  proto.ColUInt32
}

func newEventBlock() *eventBlock {
	b := &eventBlock{ts: dateTime64(), attributes: attrMap()}
	for _, p := range []**lcStr{&b.tenantID, &b.tokenType, &b.toolName, &b.resourceTenantID, &b.decision, &b.schemaVersion} {
		*p = lowCard()
	}
	b.delegationScope = proto.NewArray[string](lowCard())
	b.requiredScopes = proto.NewArray[string](lowCard())
	b.add("event_id", &b.eventID)
	b.add("ts", b.ts)
	b.add("tenant_id", b.tenantID)
	b.add("agent_id", &b.agentID)
	b.add("parent_identity", &b.parentIdentity)
	b.add("token_id", &b.tokenID)
	b.add("token_type", b.tokenType)
	b.add("delegation_scope", b.delegationScope)
	b.add("required_scopes", b.requiredScopes)
	b.add("tool_name", b.toolName)
	b.add("tool_params_hash", &b.paramsHash)
	b.add("resource", &b.resource)
	b.add("resource_tenant_id", b.resourceTenantID)
	b.add("policy_decision", b.decision)
	b.add("trace_id", &b.traceID)
	b.add("span_id", &b.spanID)
	b.add("attributes", b.attributes)
	b.add("schema_version", b.schemaVersion)
	b.add("src_partition", &b.srcPartition)
	b.add("src_offset", &b.srcOffset)
	b.add("src_index", &b.srcIndex)
	return b
}

// append adds one audit event row.
func (b *eventBlock) append(e *event.AuditEvent) {
	b.eventID.Append(e.EventID)
	b.ts.Append(e.TS)
	b.tenantID.Append(e.TenantID)
	b.agentID.Append(e.AgentID)
	b.parentIdentity.Append(e.ParentIdentity)
	b.tokenID.Append(e.TokenID)
	b.tokenType.Append(e.TokenType)
	b.delegationScope.Append(e.DelegationScope)
	b.requiredScopes.Append(e.RequiredScopes)
	b.toolName.Append(e.ToolName)
	b.paramsHash.Append(e.ToolParamsHash)
	b.resource.Append(e.Resource)
	b.resourceTenantID.Append(e.ResourceTenantID)
	b.decision.Append(e.PolicyDecision)
	b.traceID.Append(e.TraceID)
	b.spanID.Append(e.SpanID)
	appendSorted(b.attributes, e.Attributes, &b.keys)
	b.schemaVersion.Append(e.SchemaVersion)
	b.srcPartition.Append(e.SrcPartition)
	b.srcOffset.Append(e.SrcOffset)
	b.srcIndex.Append(e.SrcIndex)
}
