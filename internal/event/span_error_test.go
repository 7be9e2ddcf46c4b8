package event

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// protoField encodes a length-delimited protobuf field.
func protoField(num int, payload []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(num)<<3|wtLen)
	n := len(payload)
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	b = append(b, byte(n))
	return append(b, payload...)
}

// rawSpanMessage wraps encoded Span fields into an ExportTraceServiceRequest.
func rawSpanMessage(spanFields ...[]byte) []byte {
	var span []byte
	for _, f := range spanFields {
		span = append(span, f...)
	}
	scopeSpans := protoField(2, span)
	resourceSpans := protoField(2, scopeSpans)
	return protoField(1, resourceSpans)
}

const badUTF8 = "bad\xff\xfeutf8"

func TestDecodeSpansRejects(t *testing.T) {
	type tc struct {
		name   string
		enc    Encoding // default proto
		msg    func(t *testing.T) []byte
		opts   func(*SpanOptions)
		reason Reason
	}
	// traces builds a message from a span modifier.
	traces := func(mod func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			td, rs, ss := newTraces()
			mod(rs, ss, addSpan(ss, 0))
			return marshal(t, td, EncodingProto)
		}
	}
	bytesOf := func(s string) func(*testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }
	valid := traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, _ ptrace.Span) {})
	agent := func(t *testing.T) []byte { return marshal(t, agentTrace(), EncodingProto) }

	for _, c := range []tc{
		{name: "message over the byte limit", msg: agent, opts: func(o *SpanOptions) { o.Limits.MaxMessageBytes = 100 }, reason: ReasonMessageTooLarge},
		{name: "garbage protobuf", msg: bytesOf("\xff\xff\xff\xff"), reason: ReasonDecodeFailed},
		{name: "truncated protobuf", msg: func(t *testing.T) []byte { b := agent(t); return b[:len(b)-7] }, reason: ReasonDecodeFailed},
		{name: "JSON that is not OTLP", enc: EncodingJSON, msg: bytesOf(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":`), reason: ReasonDecodeFailed},
		{name: "JSON fed to the protobuf decoder", msg: func(t *testing.T) []byte { return marshal(t, agentTrace(), EncodingJSON) }, reason: ReasonDecodeFailed},
		{name: "attribute nested too deeply", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			s := sp.Attributes().PutEmptySlice("deep")
			for range 60 {
				s = s.AppendEmpty().SetEmptySlice()
			}
		}), reason: ReasonDecodeFailed},

		{name: "invalid UTF-8 in span name", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { sp.SetName(badUTF8) }), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in attribute value", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutStr("k", badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in attribute key", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutStr(badUTF8, "v")
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in typed column", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutStr(KeyAgentID, badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in tenant", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutStr("tenant.id", badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in finish reason", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutEmptySlice(KeyFinishReasons).AppendEmpty().SetStr(badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 nested in array", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutEmptySlice("k").AppendEmpty().SetStr(badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in map key", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutEmptyMap("k").PutStr(badUTF8, "v")
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in resource attribute", msg: traces(func(rs ptrace.ResourceSpans, _ ptrace.ScopeSpans, _ ptrace.Span) {
			rs.Resource().Attributes().PutStr("k", badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in scope name", msg: traces(func(_ ptrace.ResourceSpans, ss ptrace.ScopeSpans, _ ptrace.Span) { ss.Scope().SetName(badUTF8) }), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in status message", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { sp.Status().SetMessage(badUTF8) }), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in trace state", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { sp.TraceState().FromRaw(badUTF8) }), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in event name", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			ev := sp.Events().AppendEmpty()
			ev.SetTimestamp(ts(0))
			ev.SetName(badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in link attribute", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			l := sp.Links().AppendEmpty()
			l.SetTraceID(testTraceID)
			l.SetSpanID(testSpanID)
			l.Attributes().PutStr("k", badUTF8)
		}), reason: ReasonInvalidUTF8},
		{name: "invalid UTF-8 in raw tool content kept unhashed", opts: func(o *SpanOptions) { o.HashToolCallContent = false },
			msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
				sp.Attributes().PutStr(KeyToolCallArguments, badUTF8)
			}), reason: ReasonInvalidUTF8},

		{name: "too many spans", msg: agent, opts: func(o *SpanOptions) { o.Limits.MaxSpansPerMessage = 3 }, reason: ReasonTooManySpans},
		{name: "too many attributes counting resource and scope", msg: traces(func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, sp ptrace.Span) {
			rs.Resource().Attributes().PutStr("r", "1") // plus service.name
			ss.Scope().Attributes().PutStr("s", "1")
			sp.Attributes().PutStr("a", "1")
			sp.Attributes().PutStr("b", "1")
		}), opts: func(o *SpanOptions) { o.Limits.MaxAttributesPerSpan = 4 }, reason: ReasonTooManyAttributes},
		{name: "too many event attributes", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			ev := sp.Events().AppendEmpty()
			ev.SetTimestamp(ts(0))
			for _, k := range []string{"a", "b", "c"} {
				ev.Attributes().PutStr(k, "1")
			}
		}), opts: func(o *SpanOptions) { o.Limits.MaxAttributesPerSpan = 2 }, reason: ReasonTooManyAttributes},
		{name: "too many events", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			for range 3 {
				sp.Events().AppendEmpty().SetTimestamp(ts(0))
			}
		}), opts: func(o *SpanOptions) { o.Limits.MaxEventsPerSpan = 2 }, reason: ReasonTooManyEvents},
		{name: "too many links", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			for range 3 {
				l := sp.Links().AppendEmpty()
				l.SetTraceID(testTraceID)
				l.SetSpanID(testSpanID)
			}
		}), opts: func(o *SpanOptions) { o.Limits.MaxLinksPerSpan = 2 }, reason: ReasonTooManyLinks},

		{name: "attribute value too long", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutStr("k", strings.Repeat("x", 65))
		}), opts: func(o *SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: ReasonValueTooLong},
		{name: "flattened array too long", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			s := sp.Attributes().PutEmptySlice("k")
			for range 40 {
				s.AppendEmpty().SetInt(1)
			}
		}), opts: func(o *SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: ReasonValueTooLong},
		{name: "attribute key too long", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutStr(strings.Repeat("k", 33), "v")
		}), opts: func(o *SpanOptions) { o.Limits.MaxAttributeKeyBytes = 32 }, reason: ReasonValueTooLong},
		{name: "span name too long", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.SetName(strings.Repeat("n", 65))
		}), opts: func(o *SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: ReasonValueTooLong},
		{name: "bytes value too long once base64", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Attributes().PutEmptyBytes("k").FromRaw(make([]byte, 60))
		}), opts: func(o *SpanOptions) { o.Limits.MaxAttributeValueBytes = 64 }, reason: ReasonValueTooLong},

		{name: "all-zero trace id", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { sp.SetTraceID(pcommon.TraceID{}) }), reason: ReasonInvalidID},
		{name: "all-zero span id", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { sp.SetSpanID(pcommon.SpanID{}) }), reason: ReasonInvalidID},
		{name: "all-zero link trace id", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Links().AppendEmpty().SetSpanID(testSpanID)
		}), reason: ReasonInvalidID},
		{name: "trace id of 15 bytes", msg: bytesOf(string(rawSpanMessage(protoField(1, make([]byte, 15))))), reason: ReasonInvalidID},
		{name: "span id of 9 bytes", msg: bytesOf(string(rawSpanMessage(protoField(1, testTraceID[:]), protoField(2, make([]byte, 9))))), reason: ReasonInvalidID},
		{name: "JSON trace id of 30 hex digits", enc: EncodingJSON, msg: bytesOf(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e47","spanId":"00f067aa0ba902b7"}]}]}]}`), reason: ReasonInvalidID},
		{name: "JSON span id not hex", enc: EncodingJSON, msg: bytesOf(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902bx"}]}]}]}`), reason: ReasonInvalidID},

		{name: "start time too old", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.SetStartTimestamp(ts(-401 * 24 * time.Hour))
		}), reason: ReasonTimestampOutOfRange},
		{name: "start time in the future", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.SetStartTimestamp(ts(61 * time.Minute))
			sp.SetEndTimestamp(ts(62 * time.Minute))
		}), reason: ReasonTimestampOutOfRange},
		{name: "start time beyond int64 nanoseconds", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.SetStartTimestamp(pcommon.Timestamp(^uint64(0)))
		}), reason: ReasonTimestampOutOfRange},
		{name: "end before start", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.SetEndTimestamp(ts(-2 * time.Minute))
		}), reason: ReasonTimestampOutOfRange},
		{name: "event time out of window", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) {
			sp.Events().AppendEmpty().SetTimestamp(1)
		}), reason: ReasonTimestampOutOfRange},
		{name: "configured window", msg: valid, opts: func(o *SpanOptions) { o.Limits.MaxAge = 30 * time.Second }, reason: ReasonTimestampOutOfRange},

		{name: "no start time", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { sp.SetStartTimestamp(0) }), reason: ReasonMissingField},
		{name: "no end time", msg: traces(func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, sp ptrace.Span) { sp.SetEndTimestamp(0) }), reason: ReasonMissingField},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := testSpanOptions()
			if c.opts != nil {
				c.opts(&opts)
			}
			enc := c.enc
			if enc == "" {
				enc = EncodingProto
			}
			dst := make([]Span, 1, 8)
			dst[0].Name = "already there"
			rows, st, err := DecodeSpans(c.msg(t), enc, opts, dst)
			r, ok := ReasonOf(err)
			if !ok || r != c.reason {
				t.Fatalf("err = %v, want reason %s", err, c.reason)
			}
			if len(rows) != 1 || rows[0].Name != "already there" || st != (Stats{}) {
				t.Errorf("rows were appended on error: %d rows, stats %+v", len(rows), st)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, string(c.reason)+": ") || !utf8.ValidString(msg) || len(msg) > 300 {
				t.Errorf("error text %q", msg)
			}
			t.Log(err)
		})
	}
}

// pdata does not check UTF-8 on either wire format; DecodeSpans must.
func TestDecodeSpansChecksUTF8ThatPdataLetsThrough(t *testing.T) {
	td, _, ss := newTraces()
	addSpan(ss, 0).Attributes().PutStr("k", badUTF8)
	for _, enc := range []Encoding{EncodingProto, EncodingJSON} {
		t.Run(string(enc), func(t *testing.T) {
			msg := marshal(t, td, enc)
			var err error
			switch enc {
			case EncodingProto:
				_, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(msg)
			case EncodingJSON:
				_, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(msg)
			}
			if err != nil {
				t.Logf("pdata now rejects invalid UTF-8 (%v): the package doc can say so", err)
			}
			_, _, err = DecodeSpans(msg, enc, testSpanOptions(), nil)
			if r, _ := ReasonOf(err); r != ReasonInvalidUTF8 {
				t.Errorf("err = %v, want invalid_utf8", err)
			}
		})
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	if l := DefaultSpanOptions().Limits.withDefaults(); l != DefaultLimits() {
		t.Error("default limits changed by withDefaults")
	}
	if (Limits{}).withDefaults() != DefaultLimits() {
		t.Error("zero limits do not take the defaults")
	}
	l := Limits{MaxAge: -1, MaxSpansPerMessage: -5}
	if err := l.Validate(); err == nil || !strings.Contains(err.Error(), "max_age") || !strings.Contains(err.Error(), "max_spans_per_message") {
		t.Errorf("Validate = %v", err)
	}
	o := SpanOptions{TenantAttributes: []string{"a", ""}}
	if err := o.Validate(); err == nil {
		t.Error("empty tenant key accepted")
	}
	el := EventLimits{MaxAttributes: 200}
	if err := el.Validate(); err == nil {
		t.Error("max_attributes above the schema accepted")
	}
	if (EventLimits{}).withDefaults() != DefaultEventLimits() {
		t.Error("zero event limits do not take the defaults")
	}
}
