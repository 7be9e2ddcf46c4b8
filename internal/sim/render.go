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
	keyOutputType    = "gen_ai.output.type"
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

const schemaURL = "https://opentelemetry.io/schemas/1.37.0"

// Span names as the GenAI conventions build them.
func spanName(ts *traceSpec, s *spanSpec) string {
	switch s.op {
	case opInvoke:
		return "invoke_agent " + ts.a.name
	case opChat:
		return "chat " + ts.a.model.request
	default:
		return "execute_tool " + tools[s.tool].name
	}
}

// buildTraces turns a trace spec into an OTLP export request.
func buildTraces(ts *traceSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.SetSchemaUrl(schemaURL)
	ra := rs.Resource().Attributes()
	ra.EnsureCapacity(len(ts.res.attrs))
	for _, a := range ts.res.attrs {
		ra.PutStr(a.k, a.v)
	}
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName(ts.res.scope)
	ss.Scope().SetVersion(ts.res.ver)
	spans := ss.Spans()
	spans.EnsureCapacity(len(ts.spans))
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
		sp := spans.AppendEmpty()
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
		at.EnsureCapacity(16)
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
			at.PutStr(keyOutputType, "text")
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
			at.PutEmptySlice(keyFinish).AppendEmpty().SetStr(s.finish)
			at.PutInt(keyMaxTokens, s.maxTokens)
			at.PutDouble(keyTemperature, s.temperature)
			at.PutStr(keyConversation, ts.conversation)
			at.PutStr(keyOutputType, "text")
			at.PutStr(keyServerAddress, m.server)
			at.PutInt(keyServerPort, 443)
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
	return td
}

// renderTrace encodes a trace spec as kafkaexporter would.
func renderTrace(ts *traceSpec, encoding string) []byte {
	td := buildTraces(ts)
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
