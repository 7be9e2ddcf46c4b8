package event

import (
	"encoding/binary"
	"strings"
	"testing"

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

// TestDecodeSpansRejects (span_reject_test.go) runs the corpus of rejected
// messages shared with ingest and the detector (package eventtest).

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
