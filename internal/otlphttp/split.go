package otlphttp

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// trace is the part of a request that belongs to one trace id: what the
// kafkaexporter with partition_traces_by_id writes as one message.
type trace struct {
	id    pcommon.TraceID
	td    ptrace.Traces
	spans int

	// Source indexes of the ResourceSpans and ScopeSpans that td's last
	// ResourceSpans and ScopeSpans copy, and the spans of that ScopeSpans.
	srcRes, srcScope int
	cur              ptrace.SpanSlice
}

// splitByTrace moves the spans of td into one Traces per trace id, in the
// order the trace ids first appear. Each span keeps its resource and scope
// (copied with their schema URLs); within a trace, resources, scopes and
// spans keep the request's order, and a source resource or scope becomes one
// ResourceSpans or ScopeSpans of the trace. Resources and scopes without
// spans are dropped (empty envelopes, which the OTLP specification lets
// receivers drop). Spans with an empty trace id form a trace of their own,
// which validation then rejects.
//
// Unlike the kafkaexporter, which splits per resource, scope and trace id, a
// trace spread over several resources or scopes of one request stays one
// message, so it is validated, accepted or rejected as a whole.
//
// td is emptied: spans are moved, not copied.
func splitByTrace(td ptrace.Traces) []*trace {
	var (
		out  []*trace
		byID = map[pcommon.TraceID]*trace{}
	)
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j)
			spans := ss.Spans()
			for k := range spans.Len() {
				sp := spans.At(k)
				id := sp.TraceID()
				t := byID[id]
				if t == nil {
					t = &trace{id: id, td: ptrace.NewTraces(), srcRes: -1, srcScope: -1}
					byID[id] = t
					out = append(out, t)
				}
				if t.srcRes != i {
					nrs := t.td.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(nrs.Resource())
					nrs.SetSchemaUrl(rs.SchemaUrl())
					t.srcRes, t.srcScope = i, -1
				}
				if t.srcScope != j {
					nrs := t.td.ResourceSpans().At(t.td.ResourceSpans().Len() - 1)
					nss := nrs.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(nss.Scope())
					nss.SetSchemaUrl(ss.SchemaUrl())
					t.srcScope, t.cur = j, nss.Spans()
				}
				sp.MoveTo(t.cur.AppendEmpty())
				t.spans++
			}
		}
	}
	return out
}
