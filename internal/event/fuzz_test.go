package event

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The fuzz invariant: never panic; either an *Error with a known reason
// and a short, valid UTF-8 text, or rows that hold only valid UTF-8, a
// tenant, ids of the right length and timestamps in the window — and, for
// spans, the same outcome as the pdata-based reference.

func FuzzDecodeSpans(f *testing.F) {
	seeds := []ptrace.Traces{agentTrace(), fullTrace()}
	for seed := range uint64(8) {
		g := &traceGen{rand.New(rand.NewPCG(seed, 3))}
		seeds = append(seeds, g.traces())
	}
	for _, td := range seeds {
		f.Add(marshal(f, td, EncodingProto), false)
		f.Add(marshal(f, td, EncodingJSON), true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte("{}"), true)
	f.Add([]byte{0xff, 0xff, 0xff}, false)
	f.Add(rawSpanMessage(protoField(1, make([]byte, 15))), false)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e47","spanId":"00f067aa0ba902b7"}]}]}]}`), true)

	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		enc := EncodingProto
		if isJSON {
			enc = EncodingJSON
		}
		opts := testSpanOptions()
		opts.Limits.MaxAttributeValueBytes = 256 // reachable by the fuzzer
		rows, _, err := DecodeSpans(data, enc, opts, nil)
		if err != nil {
			checkDecodeError(t, err)
			if len(rows) != 0 {
				t.Fatalf("%d rows returned with an error", len(rows))
			}
		} else {
			checkSpanRows(t, rows, opts)
		}
		if enc == EncodingJSON || !usesDeprecatedScopeSpans(data) {
			compareDecoders(t, data, enc, opts)
		}
	})
}

// usesDeprecatedScopeSpans reports whether a resource of the message holds
// spans only under the deprecated field 1000, which DecodeSpans reads (as
// pdata's otlp.MigrateTraces would) and pdata's ProtoUnmarshaler ignores.
func usesDeprecatedScopeSpans(data []byte) bool {
	for pos := 0; pos < len(data); {
		f, next, err := readField(data, pos, len(data))
		if err != nil {
			return false
		}
		pos = next
		if f.num != 1 || f.wt != wtLen {
			continue
		}
		has2, has1000 := false, false
		for p := f.s; p < f.e; {
			g, n, err := readField(data, p, f.e)
			if err != nil {
				break
			}
			p = n
			has2 = has2 || g.num == 2
			has1000 = has1000 || g.num == 1000
		}
		if has1000 && !has2 {
			return true
		}
	}
	return false
}

func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	r, ok := ReasonOf(err)
	if !ok || !slices.Contains(Reasons(), r) {
		t.Fatalf("error without a known reason: %v", err)
	}
	if msg := err.Error(); !utf8.ValidString(msg) || len(msg) > 400 {
		t.Fatalf("error text %q", msg)
	}
}

func isLowerHexString(s string, n int) bool {
	return len(s) == n && isLowerHex([]byte(s))
}

// stringsValid reports whether every string reachable in v is valid UTF-8.
func stringsValid(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return utf8.ValidString(v.String())
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if !stringsValid(v.Index(i)) {
				return false
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if !stringsValid(it.Key()) || !stringsValid(it.Value()) {
				return false
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if !stringsValid(v.Field(i)) {
				return false
			}
		}
	}
	return true
}

func checkSpanRows(t *testing.T, rows []Span, opts SpanOptions) {
	t.Helper()
	now := opts.Now()
	min, max := now.Add(-opts.Limits.MaxAge), now.Add(opts.Limits.MaxFuture)
	for i, s := range rows {
		switch {
		case !stringsValid(reflect.ValueOf(s)):
			t.Fatalf("row %d: invalid UTF-8", i)
		case s.TenantID == "":
			t.Fatalf("row %d: no tenant", i)
		case !isLowerHexString(s.TraceID, 32) || s.TraceID == strings.Repeat("0", 32):
			t.Fatalf("row %d: trace id %q", i, s.TraceID)
		case !isLowerHexString(s.SpanID, 16) || s.SpanID == strings.Repeat("0", 16):
			t.Fatalf("row %d: span id %q", i, s.SpanID)
		case s.ParentSpanID != "" && !isLowerHexString(s.ParentSpanID, 16):
			t.Fatalf("row %d: parent span id %q", i, s.ParentSpanID)
		case s.ToolCallArgumentsSHA256 != "" && !isLowerHexString(s.ToolCallArgumentsSHA256, 64),
			s.ToolCallResultSHA256 != "" && !isLowerHexString(s.ToolCallResultSHA256, 64):
			t.Fatalf("row %d: hashes %q %q", i, s.ToolCallArgumentsSHA256, s.ToolCallResultSHA256)
		case s.StartTime.Before(min) || s.EndTime.After(max) || s.EndTime.Before(s.StartTime):
			t.Fatalf("row %d: times %v %v", i, s.StartTime, s.EndTime)
		case uint64(s.EndTime.Sub(s.StartTime)) != s.DurationNs:
			t.Fatalf("row %d: duration %d", i, s.DurationNs)
		case len(s.EventsName) != len(s.EventsTime) || len(s.EventsAttributes) != len(s.EventsTime):
			t.Fatalf("row %d: event arrays differ in length", i)
		case len(s.LinksSpanID) != len(s.LinksTraceID) || len(s.LinksTraceState) != len(s.LinksTraceID) ||
			len(s.LinksAttributes) != len(s.LinksTraceID):
			t.Fatalf("row %d: link arrays differ in length", i)
		case s.SrcIndex != uint32(i):
			t.Fatalf("row %d: src index %d", i, s.SrcIndex)
		}
		for _, et := range s.EventsTime {
			if et.Before(min) || et.After(max) {
				t.Fatalf("row %d: event time %v", i, et)
			}
		}
		for j := range s.LinksTraceID {
			if !isLowerHexString(s.LinksTraceID[j], 32) || !isLowerHexString(s.LinksSpanID[j], 16) {
				t.Fatalf("row %d: link ids %q %q", i, s.LinksTraceID[j], s.LinksSpanID[j])
			}
		}
		if opts.HashToolCallContent {
			for _, m := range append(append([]map[string]string{s.ResourceAttributes, s.ScopeAttributes, s.SpanAttributes}, s.EventsAttributes...), s.LinksAttributes...) {
				if _, ok := m[KeyToolCallArguments]; ok {
					t.Fatalf("row %d: raw tool call arguments stored", i)
				}
				if _, ok := m[KeyToolCallResult]; ok {
					t.Fatalf("row %d: raw tool call result stored", i)
				}
			}
		}
	}
}

func FuzzDecodeAuditEvent(f *testing.F) {
	f.Add([]byte(fullEvent))
	f.Add(event(nil))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"event_id":"0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17","ts":"2026-03-13T23:59:60Z"}`))
	f.Add([]byte(`{"attributes":{"a":"\ud83d\ude00","b":1e400,"c":-0.0}}`))
	f.Add([]byte(`{"tenant_id":"a","tenant_id":"b"}`))
	f.Add([]byte("\xef\xbb\xbf{}"))
	for seed := range uint64(8) {
		g := &eventGen{rand.New(rand.NewPCG(seed, 4))}
		f.Add(g.event())
	}
	dec, err := NewAuditDecoder(agreeOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeAuditEvent(data, testEventOptions())
		if err != nil {
			checkDecodeError(t, err)
		} else {
			now := testNow
			lim := DefaultEventLimits()
			switch {
			case !stringsValid(reflect.ValueOf(ev)):
				t.Fatal("invalid UTF-8 in the event")
			case ev.TenantID == "" || ev.AgentID == "" || ev.TokenID == "" || ev.ToolName == "":
				t.Fatalf("required field empty: %+v", ev)
			case ev.TS.Before(now.Add(-lim.MaxAge)) || ev.TS.After(now.Add(lim.MaxFuture)):
				t.Fatalf("ts %v", ev.TS)
			case ev.SchemaVersion != "1":
				t.Fatalf("schema_version %q", ev.SchemaVersion)
			case ev.TraceID != "" && !isLowerHexString(ev.TraceID, 32),
				ev.SpanID != "" && !isLowerHexString(ev.SpanID, 16),
				ev.ToolParamsHash != "" && !isLowerHexString(ev.ToolParamsHash, 64):
				t.Fatalf("ids %q %q %q", ev.TraceID, ev.SpanID, ev.ToolParamsHash)
			case !slices.Contains([]string{"session", "oauth", "m2m", "api_key"}, ev.TokenType),
				ev.PolicyDecision != "allow" && ev.PolicyDecision != "deny":
				t.Fatalf("enums %q %q", ev.TokenType, ev.PolicyDecision)
			}
		}
		compareValidators(t, dec, data)
	})
}
