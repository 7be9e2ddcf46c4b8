package event

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// testNow is "now" for every test: timestamps are relative to it.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

func testSpanOptions() SpanOptions {
	o := DefaultSpanOptions()
	o.Now = func() time.Time { return testNow }
	return o
}

func ts(d time.Duration) pcommon.Timestamp {
	return pcommon.NewTimestampFromTime(testNow.Add(d))
}

var (
	testTraceID = pcommon.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	testSpanID  = pcommon.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	testParent  = pcommon.SpanID{0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8}
)

// newTraces returns traces with one resource (service "agent-svc") and one
// scope; add spans with addSpan.
func newTraces() (ptrace.Traces, ptrace.ResourceSpans, ptrace.ScopeSpans) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "agent-svc")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("github.com/acme/agent")
	ss.Scope().SetVersion("1.2.3")
	return td, rs, ss
}

// addSpan appends a valid span with fresh ids to ss.
func addSpan(ss ptrace.ScopeSpans, seq byte) ptrace.Span {
	sp := ss.Spans().AppendEmpty()
	sp.SetTraceID(testTraceID)
	sid := testSpanID
	sid[7] += seq
	sp.SetSpanID(sid)
	sp.SetName("span")
	sp.SetStartTimestamp(ts(-time.Minute))
	sp.SetEndTimestamp(ts(-time.Minute + 1500*time.Millisecond))
	return sp
}

func marshal(t testing.TB, td ptrace.Traces, enc Encoding) []byte {
	t.Helper()
	var (
		b   []byte
		err error
	)
	switch enc {
	case EncodingProto:
		b, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	case EncodingJSON:
		b, err = (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeOne decodes td (proto) and requires exactly one span.
func decodeOne(t *testing.T, td ptrace.Traces, opts SpanOptions) (Span, Stats) {
	t.Helper()
	rows, st, err := DecodeSpans(marshal(t, td, EncodingProto), EncodingProto, opts, nil)
	if err != nil {
		t.Fatalf("DecodeSpans: %v", err)
	}
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1", len(rows))
	}
	return rows[0], st
}

// agentTrace builds the benchmark's realistic message: one trace, an
// invoke_agent span with three children (execute_tool, chat, execute_tool),
// 13 to 17 attributes each, about 700 bytes per span in protobuf.
func agentTrace() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	ra := rs.Resource().Attributes()
	ra.PutStr("service.name", "support-agent")
	ra.PutStr("service.version", "2.14.1")
	ra.PutStr("deployment.environment.name", "production")
	ra.PutStr("tenant.id", "tenant-7f3a9c")
	ra.PutStr("host.name", "agent-worker-5c9d7b8f6-x2k4p")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("opentelemetry.instrumentation.openai_agents")
	ss.Scope().SetVersion("0.52.0")

	tid := pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}
	root := pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}
	start := testNow.Add(-2 * time.Second)

	sp := ss.Spans().AppendEmpty()
	sp.SetTraceID(tid)
	sp.SetSpanID(root)
	sp.SetName("invoke_agent support-triage")
	sp.SetKind(ptrace.SpanKindInternal)
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(1843 * time.Millisecond)))
	sp.Status().SetCode(ptrace.StatusCodeOk)
	a := sp.Attributes()
	a.PutStr("gen_ai.operation.name", "invoke_agent")
	a.PutStr("gen_ai.provider.name", "openai")
	a.PutStr("gen_ai.agent.id", "asst_5j66UpCpwteGg4YSxUnt7lPY")
	a.PutStr("gen_ai.agent.name", "support-triage")
	a.PutStr("gen_ai.agent.version", "2025-05-01")
	a.PutStr("gen_ai.conversation.id", "conv_5j66UpCpwteGg4YSxUnt7lPY")
	a.PutStr("gen_ai.request.model", "gpt-4.1-2025-04-14")
	a.PutInt("gen_ai.usage.input_tokens", 2381)
	a.PutInt("gen_ai.usage.output_tokens", 412)
	a.PutStr("enduser.id", "user-83d1c0f2")
	a.PutStr("session.id", "sess_0b9a4c1e7d2f4a8b")
	a.PutStr("server.address", "api.openai.com")
	a.PutInt("server.port", 443)

	for i := range 3 {
		c := ss.Spans().AppendEmpty()
		c.SetTraceID(tid)
		c.SetSpanID(pcommon.SpanID{0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, byte(i + 1)})
		c.SetParentSpanID(root)
		cs := start.Add(time.Duration(100+500*i) * time.Millisecond)
		c.SetStartTimestamp(pcommon.NewTimestampFromTime(cs))
		c.SetEndTimestamp(pcommon.NewTimestampFromTime(cs.Add(420 * time.Millisecond)))
		ca := c.Attributes()
		if i == 1 {
			c.SetName("chat gpt-4.1")
			c.SetKind(ptrace.SpanKindClient)
			ca.PutStr("gen_ai.operation.name", "chat")
			ca.PutStr("gen_ai.provider.name", "openai")
			ca.PutStr("gen_ai.request.model", "gpt-4.1")
			ca.PutStr("gen_ai.response.model", "gpt-4.1-2025-04-14")
			ca.PutStr("gen_ai.response.id", "chatcmpl-BcXVwYqz9RcAqLzjL3MmQ9ztVh2kE")
			ca.PutStr("gen_ai.conversation.id", "conv_5j66UpCpwteGg4YSxUnt7lPY")
			ca.PutEmptySlice("gen_ai.response.finish_reasons").AppendEmpty().SetStr("tool_calls")
			ca.PutInt("gen_ai.usage.input_tokens", 1873)
			ca.PutInt("gen_ai.usage.output_tokens", 96)
			ca.PutInt("gen_ai.usage.cache_read.input_tokens", 1024)
			ca.PutInt("gen_ai.usage.reasoning.output_tokens", 64)
			ca.PutDouble("gen_ai.request.temperature", 0.2)
			ca.PutInt("gen_ai.request.max_tokens", 1024)
			ca.PutStr("server.address", "api.openai.com")
			ca.PutInt("server.port", 443)
			ca.PutStr("openai.response.service_tier", "default")
			continue
		}
		c.SetName("execute_tool lookup_customer")
		c.SetKind(ptrace.SpanKindInternal)
		ca.PutStr("gen_ai.operation.name", "execute_tool")
		ca.PutStr("gen_ai.tool.name", "lookup_customer")
		ca.PutStr("gen_ai.tool.type", "function")
		ca.PutStr("gen_ai.tool.call.id", "call_mszuSIzqtI65i1wAUOE8w5H4")
		ca.PutStr("gen_ai.tool.call.arguments", `{"email":"jane.doe@example.com","include":["orders","tickets"]}`)
		ca.PutStr("gen_ai.tool.call.result", `{"customer_id":"cus_9f8e7d6c","tier":"gold","open_tickets":2}`)
		ca.PutStr("gen_ai.agent.id", "asst_5j66UpCpwteGg4YSxUnt7lPY")
		ca.PutStr("gen_ai.agent.name", "support-triage")
		ca.PutStr("gen_ai.conversation.id", "conv_5j66UpCpwteGg4YSxUnt7lPY")
		ca.PutStr("mcp.method.name", "tools/call")
		ca.PutStr("mcp.session.id", "mcp-sess-2f1e0d9c8b7a")
		ca.PutInt("db.response.returned_rows", 1)
	}
	return td
}
