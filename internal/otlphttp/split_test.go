package otlphttp

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestSplitByTrace(t *testing.T) {
	td := ptrace.NewTraces()
	add := func(ss ptrace.ScopeSpans, trace byte, id byte) {
		s := ss.Spans().AppendEmpty()
		if trace != 0 {
			s.SetTraceID(traceID(trace))
		}
		s.SetSpanID(spanID(trace, id))
		s.SetName("span")
	}
	// Resource a: scopes a1 (traces 1, 2, 1) and a2 (trace 1); an empty
	// scope. Resource b: scope b1 (traces 2 and the empty trace id).
	// Resource c: no scopes.
	ra := td.ResourceSpans().AppendEmpty()
	ra.SetSchemaUrl("schema-a")
	ra.Resource().Attributes().PutStr("service.name", "a")
	a1 := ra.ScopeSpans().AppendEmpty()
	a1.Scope().SetName("a1")
	a1.SetSchemaUrl("schema-a1")
	add(a1, 1, 1)
	add(a1, 2, 1)
	add(a1, 1, 2)
	ra.ScopeSpans().AppendEmpty().Scope().SetName("empty")
	a2 := ra.ScopeSpans().AppendEmpty()
	a2.Scope().SetName("a2")
	add(a2, 1, 3)
	rb := td.ResourceSpans().AppendEmpty()
	rb.Resource().Attributes().PutStr("service.name", "b")
	b1 := rb.ScopeSpans().AppendEmpty()
	b1.Scope().SetName("b1")
	add(b1, 2, 2)
	add(b1, 0, 1)
	td.ResourceSpans().AppendEmpty().Resource().Attributes().PutStr("service.name", "c")

	want := map[pcommon.TraceID]ptrace.Traces{}
	for _, id := range []pcommon.TraceID{traceID(1), traceID(2), {}} {
		want[id] = only(td, id)
	}
	got := splitByTrace(td)
	if len(got) != 3 {
		t.Fatalf("%d traces, want 3", len(got))
	}
	for i, id := range []pcommon.TraceID{traceID(1), traceID(2), {}} {
		g := got[i]
		if g.id != id {
			t.Errorf("trace %d: id %x, want %x (order of first appearance)", i, g.id, id)
		}
		if g.spans != g.td.SpanCount() || g.spans != want[id].SpanCount() {
			t.Errorf("trace %x: spans %d, SpanCount %d, want %d", id, g.spans, g.td.SpanCount(), want[id].SpanCount())
		}
		if gs, ws := string(marshalJSON(t, g.td)), string(marshalJSON(t, want[id])); gs != ws {
			t.Errorf("trace %x:\n%s\nwant\n%s", id, gs, ws)
		}
	}
	// Trace 1: one resource with two scopes, schema URLs kept.
	rs := got[0].td.ResourceSpans()
	if rs.Len() != 1 || rs.At(0).ScopeSpans().Len() != 2 || rs.At(0).SchemaUrl() != "schema-a" ||
		rs.At(0).ScopeSpans().At(0).SchemaUrl() != "schema-a1" {
		t.Errorf("trace 1 structure: %s", marshalJSON(t, got[0].td))
	}
	if td.SpanCount() != 6 {
		t.Errorf("the source still has %d spans, the split moved them", td.SpanCount())
	}
}

func TestSplitByTraceEmpty(t *testing.T) {
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	if got := splitByTrace(td); len(got) != 0 {
		t.Errorf("%d traces from a request without spans", len(got))
	}
}
