package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Attribute keys (OpenTelemetry GenAI semantic conventions and friends).
const (
	keyOperation     = "gen_ai.operation.name"
	keyProvider      = "gen_ai.provider.name"
	keySystem        = "gen_ai.system" // deprecated form of gen_ai.provider.name
	keyAgentID       = "gen_ai.agent.id"
	keyAgentName     = "gen_ai.agent.name"
	keyAgentVersion  = "gen_ai.agent.version"
	keyAgentDesc     = "gen_ai.agent.description"
	keyConversation  = "gen_ai.conversation.id"
	keyRequestModel  = "gen_ai.request.model"
	keyResponseModel = "gen_ai.response.model"
	keyResponseID    = "gen_ai.response.id"
	keyFinish        = "gen_ai.response.finish_reasons"
	keyInputTokens   = "gen_ai.usage.input_tokens"
	keyOutputTokens  = "gen_ai.usage.output_tokens"
	keyPromptTokens  = "gen_ai.usage.prompt_tokens"     // deprecated form of input_tokens
	keyComplTokens   = "gen_ai.usage.completion_tokens" // deprecated form of output_tokens
	keyCacheRead     = "gen_ai.usage.cache_read.input_tokens"
	keyMaxTokens     = "gen_ai.request.max_tokens"
	keyTemperature   = "gen_ai.request.temperature"
	keyToolName      = "gen_ai.tool.name"
	keyToolCallID    = "gen_ai.tool.call.id"
	keyToolType      = "gen_ai.tool.type"
	keyToolDesc      = "gen_ai.tool.description"
	keyToolArgs      = "gen_ai.tool.call.arguments"
	keyServerAddress = "server.address"
	keyServerPort    = "server.port"
	keyErrorType     = "error.type"
	keyMCPMethod     = "mcp.method.name"
	keyMCPSession    = "mcp.session.id"
	keyHTTPMethod    = "http.request.method"
	keyHTTPStatus    = "http.response.status_code"
)

// Span names as the GenAI conventions build them.
func spanName(ts *traceSpec, s *spanSpec) string {
	switch s.op {
	case opInvoke:
		return ts.a.invokeName
	case opChat:
		return ts.a.model.chatName
	default:
		return tools[s.tool].spanName
	}
}

// encoder renders specs into messages. It keeps one pdata Traces per trace
// shape (span operations and optional attributes) and overwrites its values
// in place for the next trace of that shape: the keys, their order and so
// the encoded bytes are exactly those of a freshly built Traces, without
// allocating every attribute again. Not safe for concurrent use.
type encoder struct {
	cfg    Config
	shapes map[uint64]ptrace.Traces
}

func newEncoder(cfg Config) *encoder {
	return &encoder{cfg: cfg, shapes: map[uint64]ptrace.Traces{}}
}

// shape identifies the attribute layout of a trace.
func shape(ts *traceSpec) uint64 {
	sig := uint64(len(ts.spans))
	if ts.deprecated {
		sig |= 1 << 3
	}
	for i := range ts.spans {
		s := &ts.spans[i]
		b := uint64(s.op)
		if s.cacheRead > 0 {
			b |= 1 << 2
		}
		if s.errType != "" {
			b |= 1 << 3
		}
		if s.op == opTool && tools[s.tool].mcp {
			b |= 1 << 4
		}
		sig |= b << (4 + 5*i)
	}
	return sig
}

// traces returns ts as an OTLP export request (valid until the next call).
func (e *encoder) traces(ts *traceSpec) ptrace.Traces {
	key := shape(ts)
	td, ok := e.shapes[key]
	if !ok {
		td = ptrace.NewTraces()
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
		ss.Spans().EnsureCapacity(len(ts.spans))
		for range ts.spans {
			ss.Spans().AppendEmpty()
		}
		e.shapes[key] = td
	}
	fillTraces(td, ts)
	return td
}

// fillTraces writes ts into td, whose layout is ts's shape: either fresh
// (every Put appends) or last used for a trace of the same shape (every Put
// overwrites in place, in the same order).
func fillTraces(td ptrace.Traces, ts *traceSpec) {
	rs := td.ResourceSpans().At(0)
	ra := rs.Resource().Attributes()
	ra.EnsureCapacity(len(ts.res.attrs))
	for _, a := range ts.res.attrs {
		ra.PutStr(a.k, a.v)
	}
	ss := rs.ScopeSpans().At(0)
	ss.Scope().SetName(ts.res.scope)
	ss.Scope().SetVersion(ts.res.ver)
	spans := ss.Spans()
	m := ts.a.model
	provKey, inKey, outKey := keyProvider, keyInputTokens, keyOutputTokens
	prov := m.provider
	if ts.deprecated {
		provKey, inKey, outKey = keySystem, keyPromptTokens, keyComplTokens
		prov = m.system
	}
	root := &ts.spans[0]
	for i := range ts.spans {
		s := &ts.spans[i]
		sp := spans.At(i)
		sp.SetTraceID(pcommon.TraceID(ts.id))
		sp.SetSpanID(pcommon.SpanID(s.id))
		if i > 0 {
			sp.SetParentSpanID(pcommon.SpanID(root.id))
		}
		sp.SetFlags(0x101) // sampled; parent-is-remote known
		sp.SetName(spanName(ts, s))
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(s.start))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(s.end))
		if s.errType != "" {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage(s.errType)
		}
		at := sp.Attributes()
		at.EnsureCapacity(attrCount(s))
		switch s.op {
		case opInvoke:
			sp.SetKind(ptrace.SpanKindInternal)
			at.PutStr(keyOperation, "invoke_agent")
			at.PutStr(provKey, prov)
			at.PutStr(keyAgentID, ts.a.id)
			at.PutStr(keyAgentName, ts.a.name)
			at.PutStr(keyAgentVersion, ts.a.version)
			at.PutStr(keyAgentDesc, ts.a.desc)
			at.PutStr(keyConversation, ts.conversation)
			at.PutStr(keyRequestModel, m.request)
			at.PutInt(inKey, s.inTok)
			at.PutInt(outKey, s.outTok)
			at.PutStr(keyServerAddress, m.server)
		case opChat:
			sp.SetKind(ptrace.SpanKindClient)
			at.PutStr(keyOperation, "chat")
			at.PutStr(provKey, prov)
			at.PutStr(keyRequestModel, m.request)
			at.PutStr(keyResponseModel, m.response)
			at.PutStr(keyResponseID, s.respID)
			at.PutInt(inKey, s.inTok)
			at.PutInt(outKey, s.outTok)
			if s.cacheRead > 0 {
				at.PutInt(keyCacheRead, s.cacheRead)
			}
			if v, ok := at.Get(keyFinish); ok {
				v.Slice().At(0).SetStr(s.finish)
			} else {
				at.PutEmptySlice(keyFinish).AppendEmpty().SetStr(s.finish)
			}
			at.PutInt(keyMaxTokens, s.maxTokens)
			at.PutDouble(keyTemperature, s.temperature)
			at.PutStr(keyConversation, ts.conversation)
			at.PutStr(keyServerAddress, m.server)
			if s.errType != "" {
				at.PutStr(keyErrorType, s.errType)
			}
		case opTool:
			tl := &tools[s.tool]
			sp.SetKind(ptrace.SpanKindInternal)
			at.PutStr(keyOperation, "execute_tool")
			at.PutStr(keyToolName, tl.name)
			at.PutStr(keyToolCallID, s.callID)
			at.PutStr(keyToolType, "function")
			at.PutStr(keyToolDesc, tl.desc)
			at.PutStr(keyToolArgs, s.args)
			at.PutStr(keyConversation, ts.conversation)
			at.PutStr(keyAgentID, ts.a.id)
			at.PutStr(keyAgentName, ts.a.name)
			at.PutStr(keyServerAddress, s.server)
			at.PutInt(keyServerPort, 443)
			if tl.mcp {
				at.PutStr(keyMCPMethod, "tools/call")
				at.PutStr(keyMCPSession, s.mcpSession)
			} else {
				at.PutStr(keyHTTPMethod, "POST")
				at.PutInt(keyHTTPStatus, s.httpStatus)
			}
			if s.errType != "" {
				at.PutStr(keyErrorType, s.errType)
			}
		}
	}
}

// buildTraces builds ts into a fresh Traces (the reference encoder.traces
// must match).
func buildTraces(ts *traceSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	for range ts.spans {
		ss.Spans().AppendEmpty()
	}
	fillTraces(td, ts)
	return td
}

// attrCount is the number of attributes buildTraces puts on s (allocating
// them at once is a good part of the encoding cost).
func attrCount(s *spanSpec) int {
	n := 0
	switch s.op {
	case opInvoke:
		return 11
	case opChat:
		n = 12
		if s.cacheRead > 0 {
			n++
		}
	case opTool:
		n = 13
	}
	if s.errType != "" {
		n++
	}
	return n
}

// marshal encodes td as kafkaexporter would.
func marshal(td ptrace.Traces, encoding string) []byte {
	var (
		b   []byte
		err error
	)
	if encoding == EncodingJSON {
		b, err = (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	} else {
		b, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	}
	if err != nil {
		// pdata built in memory always marshals; anything else is a bug.
		panic(fmt.Sprintf("sim: marshal traces: %v", err))
	}
	return b
}

// render encodes one spec. It draws nothing from the RNG.
func (e *encoder) render(m msgSpec) Message {
	if ts := m.trace; ts != nil {
		return Message{
			Topic: e.cfg.SpansTopic,
			Key:   hex.AppendEncode(make([]byte, 0, 32), ts.id[:]),
			Value: marshal(e.traces(ts), e.cfg.SpanEncoding),
			Time:  m.time,
			Spans: len(ts.spans),
		}
	}
	ev := m.event
	return Message{
		Topic: e.cfg.EventsTopic,
		Key:   []byte(ev.tenant + "/" + ev.agentID),
		Value: renderEvent(ev, make([]byte, 0, 1024)),
		Time:  m.time,
	}
}

// renderEvent encodes an audit event (schema v1) as JSON. Fields are
// written in a fixed order; attributes in sorted key order.
func renderEvent(ev *eventSpec, buf []byte) []byte {
	sum := sha256.Sum256([]byte(ev.args))
	b := append(buf, `{"schema_version":"1","event_id":"`...)
	b = append(b, uuid.UUID(ev.id).String()...)
	b = append(b, `","ts":"`...)
	b = ev.ts.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "tenant_id", ev.tenant)
	b = appendField(b, "agent_id", ev.agentID)
	b = appendField(b, "parent_identity", ev.parent)
	b = appendField(b, "token_id", ev.token)
	b = appendField(b, "token_type", ev.tokenType)
	b = appendList(b, "delegation_scope", ev.delegation)
	b = appendList(b, "required_scopes", ev.required)
	b = appendField(b, "tool_name", tools[ev.tool].name)
	b = append(b, `,"tool_params_hash":"`...)
	b = hex.AppendEncode(b, sum[:])
	b = append(b, '"')
	b = appendField(b, "resource", ev.resource)
	b = appendField(b, "resource_tenant_id", ev.resourceTenant)
	b = appendField(b, "policy_decision", ev.decision)
	if ev.traced {
		b = append(b, `,"trace_id":"`...)
		b = hex.AppendEncode(b, ev.traceID[:])
		b = append(b, `","span_id":"`...)
		b = hex.AppendEncode(b, ev.spanID[:])
		b = append(b, '"')
	}
	// attributes, keys sorted
	b = append(b, `,"attributes":{"auth.method":`...)
	b = appendJSONString(b, authMethod(ev.tokenType))
	b = append(b, `,"delegation.parent_scope":`...)
	b = appendJSONString(b, ev.parentScope)
	if tools[ev.tool].mcp {
		b = append(b, `,"gateway":"mcp"`...)
	} else {
		b = append(b, `,"gateway":"http"`...)
	}
	if ev.conversation != "" {
		b = append(b, `,"gen_ai.conversation.id":`...)
		b = appendJSONString(b, ev.conversation)
	}
	b = append(b, `,"policy.id":`...)
	b = appendJSONString(b, "pol_"+ev.tenant+"_v3")
	if ev.denyReason != "" {
		b = append(b, `,"policy.reason":`...)
		b = appendJSONString(b, ev.denyReason)
	}
	b = append(b, `,"tool.args_bytes":`...)
	b = strconv.AppendInt(b, int64(len(ev.args)), 10)
	b = append(b, "}}"...)
	return b
}

func authMethod(tokenType string) string {
	switch tokenType {
	case TokenOAuth, TokenSession:
		return "token_exchange"
	case TokenM2M:
		return "client_credentials"
	}
	return "api_key"
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

func appendList(b []byte, name string, vs []string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, `":[`...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string. The sim's strings are
// ASCII; quotes, backslashes and control characters are escaped anyway.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	if !needsEscape(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, hexdigits[c>>4], hexdigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return true
		}
	}
	return false
}
