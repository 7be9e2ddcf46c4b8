// Package eventtest is test material shared by the packages that must
// decide alike on the same messages: the corpus of span messages that
// event.DecodeSpans rejects (at least one per rejection reason), used by
// event's own tests, by ingest's dead-letter test and by the detector's
// span scanner test, which checks that the detector counts nothing ingest
// dead-letters. It is imported by tests only.
package eventtest

import (
	"encoding/binary"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/event"
)

// SpanCase is one span message and what DecodeSpans says of it.
type SpanCase struct {
	Name     string
	Encoding event.Encoding
	Msg      []byte
	// Opts, when set, changes Options(now) for this case (a limit an
	// operator lowered); nil: the defaults.
	Opts func(*event.SpanOptions)
	// Reason is why DecodeSpans rejects Msg; "" for a valid message.
	Reason event.Reason
}

// Options are the options the corpus is built for: the defaults, with the
// clock fixed at now (timestamps in the corpus are relative to it).
func Options(now time.Time) event.SpanOptions {
	o := event.DefaultSpanOptions()
	o.Now = func() time.Time { return now }
	return o
}

// BadUTF8 is a string that is not valid UTF-8.
const BadUTF8 = "bad\xff\xfeutf8"

var (
	traceID = pcommon.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	spanID  = pcommon.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

type builder struct{ now time.Time }

func (b builder) ts(d time.Duration) pcommon.Timestamp {
	return pcommon.NewTimestampFromTime(b.now.Add(d))
}

// traces is one resource (service "agent-svc", tenant "acme") with one
// scope.
func (b builder) traces() (ptrace.Traces, ptrace.ResourceSpans, ptrace.ScopeSpans) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "agent-svc")
	rs.Resource().Attributes().PutStr("tenant.id", "acme")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("github.com/acme/agent")
	ss.Scope().SetVersion("1.2.3")
	return td, rs, ss
}

// span appends a valid chat span with token counts (what the detector's
// token rule reads) and fresh ids to ss.
func (b builder) span(ss ptrace.ScopeSpans, seq byte) ptrace.Span {
	sp := ss.Spans().AppendEmpty()
	sp.SetTraceID(traceID)
	sid := spanID
	sid[7] += seq
	sp.SetSpanID(sid)
	sp.SetName("chat gpt-4.1")
	sp.SetStartTimestamp(b.ts(-time.Minute))
	sp.SetEndTimestamp(b.ts(-time.Minute + 1500*time.Millisecond))
	a := sp.Attributes()
	a.PutStr(event.KeyOperationName, "chat")
	a.PutStr(event.KeyAgentID, "agent-7")
	a.PutInt(event.KeyInputTokens, 1200+int64(seq))
	a.PutInt(event.KeyOutputTokens, 80)
	a.PutEmptySlice(event.KeyFinishReasons).AppendEmpty().SetStr("stop")
	return sp
}

// mod builds a one-span message changed by f.
func (b builder) mod(f func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span)) ptrace.Traces {
	td, rs, ss := b.traces()
	f(rs, ss, b.span(ss, 0))
	return td
}

// fourSpans is a valid message of four spans.
func (b builder) fourSpans() ptrace.Traces {
	td, _, ss := b.traces()
	for i := range 4 {
		b.span(ss, byte(i))
	}
	return td
}

// Marshal encodes td in enc (otlp_proto or otlp_json).
func Marshal(td ptrace.Traces, enc event.Encoding) []byte {
	var (
		out []byte
		err error
	)
	switch enc {
	case event.EncodingJSON:
		out, err = (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	default:
		out, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	}
	if err != nil {
		panic("eventtest: marshal: " + err.Error()) // pdata marshals any Traces it built
	}
	return out
}

// protoField encodes a length-delimited protobuf field.
func protoField(num int, payload []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(num)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// rawSpanMessage wraps encoded Span fields into an ExportTraceServiceRequest.
func rawSpanMessage(spanFields ...[]byte) []byte {
	var span []byte
	for _, f := range spanFields {
		span = append(span, f...)
	}
	return protoField(1, protoField(2, protoField(2, span)))
}

// ValidSpans are messages DecodeSpans accepts under Options(now), in both
// encodings: the base message every rejected case is a variant of, and a
// four-span one.
func ValidSpans(now time.Time) []SpanCase {
	b := builder{now}
	var out []SpanCase
	for _, enc := range []event.Encoding{event.EncodingProto, event.EncodingJSON} {
		out = append(out,
			SpanCase{Name: "one chat span " + string(enc), Encoding: enc, Msg: Marshal(b.mod(func(ptrace.ResourceSpans, ptrace.ScopeSpans, ptrace.Span) {}), enc)},
			SpanCase{Name: "four chat spans " + string(enc), Encoding: enc, Msg: Marshal(b.fourSpans(), enc)},
		)
	}
	return out
}

// RejectedSpans is the corpus of span messages DecodeSpans rejects under
// Options(now) changed by each case's Opts, with the reason it gives. Most
// are the valid one-span message with one thing wrong; the ones built from
// pdata Traces come in both encodings (the JSON form carries the same fault
// and DecodeSpans gives the same reason), the others in one.
func RejectedSpans(now time.Time) []SpanCase {
	b := builder{now}
	type tc struct {
		name   string
		td     func() ptrace.Traces // built with pdata: both encodings
		raw    []byte               // or exact bytes in enc
		enc    event.Encoding
		opts   func(*event.SpanOptions)
		reason event.Reason
	}
	span := func(f func(sp ptrace.Span)) func() ptrace.Traces {
		return func() ptrace.Traces {
			return b.mod(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { f(sp) })
		}
	}
	four := Marshal(b.fourSpans(), event.EncodingProto)
	cases := []tc{
		{name: "message over the byte limit", td: b.fourSpans, opts: func(o *event.SpanOptions) { o.Limits.MaxMessageBytes = 100 }, reason: event.ReasonMessageTooLarge},
		{name: "garbage protobuf", raw: []byte("\xff\xff\xff\xff"), reason: event.ReasonDecodeFailed},
		{name: "random bytes", raw: []byte("\x00\xff\x13garbage\x99\x98"), reason: event.ReasonDecodeFailed},
		{name: "truncated protobuf", raw: four[:len(four)-7], reason: event.ReasonDecodeFailed},
		{name: "JSON that is not OTLP", enc: event.EncodingJSON, raw: []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":`), reason: event.ReasonDecodeFailed},
		{name: "JSON fed to the protobuf decoder", raw: Marshal(b.fourSpans(), event.EncodingJSON), reason: event.ReasonDecodeFailed},
		{name: "attribute nested too deeply", td: span(func(sp ptrace.Span) {
			s := sp.Attributes().PutEmptySlice("deep")
			for range 60 {
				s = s.AppendEmpty().SetEmptySlice()
			}
		}), reason: event.ReasonDecodeFailed},

		{name: "invalid UTF-8 in span name", td: span(func(sp ptrace.Span) { sp.SetName(BadUTF8) }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in attribute value", td: span(func(sp ptrace.Span) { sp.Attributes().PutStr("k", BadUTF8) }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in attribute key", td: span(func(sp ptrace.Span) { sp.Attributes().PutStr(BadUTF8, "v") }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in typed column", td: span(func(sp ptrace.Span) { sp.Attributes().PutStr(event.KeyAgentID, BadUTF8) }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in tenant", td: span(func(sp ptrace.Span) { sp.Attributes().PutStr("tenant.id", BadUTF8) }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in finish reason", td: span(func(sp ptrace.Span) {
			sp.Attributes().PutEmptySlice(event.KeyFinishReasons).AppendEmpty().SetStr(BadUTF8)
		}), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 nested in array", td: span(func(sp ptrace.Span) { sp.Attributes().PutEmptySlice("k").AppendEmpty().SetStr(BadUTF8) }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in map key", td: span(func(sp ptrace.Span) { sp.Attributes().PutEmptyMap("k").PutStr(BadUTF8, "v") }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in resource attribute", td: func() ptrace.Traces {
			return b.mod(func(rs ptrace.ResourceSpans, _ ptrace.ScopeSpans, _ ptrace.Span) {
				rs.Resource().Attributes().PutStr("k", BadUTF8)
			})
		}, reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in the resource of a resource without spans", td: func() ptrace.Traces {
			td := b.mod(func(ptrace.ResourceSpans, ptrace.ScopeSpans, ptrace.Span) {})
			td.ResourceSpans().AppendEmpty().Resource().Attributes().PutStr("k", BadUTF8)
			return td
		}, reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in the scope of a scope without spans", td: func() ptrace.Traces {
			return b.mod(func(rs ptrace.ResourceSpans, _ ptrace.ScopeSpans, _ ptrace.Span) {
				rs.ScopeSpans().AppendEmpty().Scope().SetVersion(BadUTF8)
			})
		}, reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in scope name", td: func() ptrace.Traces {
			return b.mod(func(_ ptrace.ResourceSpans, ss ptrace.ScopeSpans, _ ptrace.Span) { ss.Scope().SetName(BadUTF8) })
		}, reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in status message", td: span(func(sp ptrace.Span) { sp.Status().SetMessage(BadUTF8) }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in trace state", td: span(func(sp ptrace.Span) { sp.TraceState().FromRaw(BadUTF8) }), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in event name", td: span(func(sp ptrace.Span) {
			ev := sp.Events().AppendEmpty()
			ev.SetTimestamp(b.ts(0))
			ev.SetName(BadUTF8)
		}), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in link attribute", td: span(func(sp ptrace.Span) {
			l := sp.Links().AppendEmpty()
			l.SetTraceID(traceID)
			l.SetSpanID(spanID)
			l.Attributes().PutStr("k", BadUTF8)
		}), reason: event.ReasonInvalidUTF8},
		{name: "invalid UTF-8 in raw tool content kept unhashed", opts: func(o *event.SpanOptions) { o.HashToolCallContent = false },
			td: span(func(sp ptrace.Span) { sp.Attributes().PutStr(event.KeyToolCallArguments, BadUTF8) }), reason: event.ReasonInvalidUTF8},

		{name: "too many spans", td: b.fourSpans, opts: func(o *event.SpanOptions) { o.Limits.MaxSpansPerMessage = 3 }, reason: event.ReasonTooManySpans},
		{name: "too many attributes counting resource and scope", td: func() ptrace.Traces {
			return b.mod(func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) {
				rs.Resource().Attributes().PutStr("r", "1")
				ss.Scope().Attributes().PutStr("s", "1")
			})
		}, opts: func(o *event.SpanOptions) { o.Limits.MaxAttributesPerSpan = 8 }, reason: event.ReasonTooManyAttributes},
		{name: "too many event attributes", td: span(func(sp ptrace.Span) {
			ev := sp.Events().AppendEmpty()
			ev.SetTimestamp(b.ts(0))
			for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"} {
				ev.Attributes().PutStr(k, "1")
			}
		}), opts: func(o *event.SpanOptions) { o.Limits.MaxAttributesPerSpan = 10 }, reason: event.ReasonTooManyAttributes},
		{name: "too many events", td: span(func(sp ptrace.Span) {
			for range 3 {
				sp.Events().AppendEmpty().SetTimestamp(b.ts(0))
			}
		}), opts: func(o *event.SpanOptions) { o.Limits.MaxEventsPerSpan = 2 }, reason: event.ReasonTooManyEvents},
		{name: "too many links", td: span(func(sp ptrace.Span) {
			for range 3 {
				l := sp.Links().AppendEmpty()
				l.SetTraceID(traceID)
				l.SetSpanID(spanID)
			}
		}), opts: func(o *event.SpanOptions) { o.Limits.MaxLinksPerSpan = 2 }, reason: event.ReasonTooManyLinks},

		{name: "attribute value too long", td: span(func(sp ptrace.Span) { sp.Attributes().PutStr("k", strings.Repeat("x", 65)) }),
			opts: func(o *event.SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: event.ReasonValueTooLong},
		{name: "flattened array too long", td: span(func(sp ptrace.Span) {
			s := sp.Attributes().PutEmptySlice("k")
			for range 40 {
				s.AppendEmpty().SetInt(1)
			}
		}), opts: func(o *event.SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: event.ReasonValueTooLong},
		{name: "attribute key too long", td: span(func(sp ptrace.Span) { sp.Attributes().PutStr(strings.Repeat("k", 33), "v") }),
			opts: func(o *event.SpanOptions) { o.Limits.MaxAttributeKeyBytes = 32 }, reason: event.ReasonValueTooLong},
		{name: "span name too long", td: span(func(sp ptrace.Span) { sp.SetName(strings.Repeat("n", 65)) }),
			opts: func(o *event.SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: event.ReasonValueTooLong},
		{name: "bytes value too long once base64", td: span(func(sp ptrace.Span) { sp.Attributes().PutEmptyBytes("k").FromRaw(make([]byte, 60)) }),
			opts: func(o *event.SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: event.ReasonValueTooLong},
		{name: "attribute value over the default limit", td: span(func(sp ptrace.Span) {
			sp.Attributes().PutStr("k", strings.Repeat("x", event.DefaultLimits().MaxAttributeValueBytes+1))
		}), reason: event.ReasonValueTooLong},

		{name: "all-zero trace id", td: span(func(sp ptrace.Span) { sp.SetTraceID(pcommon.TraceID{}) }), reason: event.ReasonInvalidID},
		{name: "all-zero span id", td: span(func(sp ptrace.Span) { sp.SetSpanID(pcommon.SpanID{}) }), reason: event.ReasonInvalidID},
		{name: "all-zero link trace id", td: span(func(sp ptrace.Span) { sp.Links().AppendEmpty().SetSpanID(spanID) }), reason: event.ReasonInvalidID},
		{name: "trace id of 15 bytes", raw: rawSpanMessage(protoField(1, make([]byte, 15))), reason: event.ReasonInvalidID},
		{name: "span id of 9 bytes", raw: rawSpanMessage(protoField(1, traceID[:]), protoField(2, make([]byte, 9))), reason: event.ReasonInvalidID},
		{name: "JSON trace id of 30 hex digits", enc: event.EncodingJSON, raw: []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e47","spanId":"00f067aa0ba902b7"}]}]}]}`), reason: event.ReasonInvalidID},
		{name: "JSON span id not hex", enc: event.EncodingJSON, raw: []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902bx"}]}]}]}`), reason: event.ReasonInvalidID},

		{name: "start time too old", td: span(func(sp ptrace.Span) { sp.SetStartTimestamp(b.ts(-401 * 24 * time.Hour)) }), reason: event.ReasonTimestampOutOfRange},
		{name: "start time in the future", td: span(func(sp ptrace.Span) {
			sp.SetStartTimestamp(b.ts(61 * time.Minute))
			sp.SetEndTimestamp(b.ts(62 * time.Minute))
		}), reason: event.ReasonTimestampOutOfRange},
		{name: "start time beyond int64 nanoseconds", td: span(func(sp ptrace.Span) { sp.SetStartTimestamp(pcommon.Timestamp(^uint64(0))) }), reason: event.ReasonTimestampOutOfRange},
		{name: "end time out of window", td: span(func(sp ptrace.Span) { sp.SetEndTimestamp(b.ts(2 * time.Hour)) }), reason: event.ReasonTimestampOutOfRange},
		{name: "end before start", td: span(func(sp ptrace.Span) { sp.SetEndTimestamp(b.ts(-2 * time.Minute)) }), reason: event.ReasonTimestampOutOfRange},
		{name: "event time out of window", td: span(func(sp ptrace.Span) { sp.Events().AppendEmpty().SetTimestamp(1) }), reason: event.ReasonTimestampOutOfRange},
		{name: "configured window", td: span(func(ptrace.Span) {}), opts: func(o *event.SpanOptions) { o.Limits.MaxAge = 30 * time.Second }, reason: event.ReasonTimestampOutOfRange},

		{name: "no start time", td: span(func(sp ptrace.Span) { sp.SetStartTimestamp(0) }), reason: event.ReasonMissingField},
		{name: "no end time", td: span(func(sp ptrace.Span) { sp.SetEndTimestamp(0) }), reason: event.ReasonMissingField},
	}
	var out []SpanCase
	for _, c := range cases {
		if c.td == nil {
			enc := c.enc
			if enc == "" {
				enc = event.EncodingProto
			}
			out = append(out, SpanCase{Name: c.name, Encoding: enc, Msg: c.raw, Opts: c.opts, Reason: c.reason})
			continue
		}
		td := c.td()
		out = append(out, SpanCase{Name: c.name, Encoding: event.EncodingProto, Msg: Marshal(td, event.EncodingProto), Opts: c.opts, Reason: c.reason})
		out = append(out, SpanCase{Name: c.name + " (JSON)", Encoding: event.EncodingJSON, Msg: Marshal(td, event.EncodingJSON), Opts: c.opts, Reason: c.reason})
	}
	return out
}
