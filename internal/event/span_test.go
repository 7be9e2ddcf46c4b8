package event

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/schema"
)

// ddlColumns returns the column names of the CREATE TABLE in migration file,
// in order.
func ddlColumns(t *testing.T, file string) []string {
	t.Helper()
	b, err := schema.Migrations.ReadFile("migrations/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	in := false
	col := regexp.MustCompile(`^\s+([a-z_][a-z0-9_]*)\s+[A-Z]`)
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "CREATE TABLE"):
			in = true
		case in && strings.HasPrefix(line, ")"):
			return cols
		case in:
			if m := col.FindStringSubmatch(line); m != nil && m[1] != "INDEX" {
				cols = append(cols, m[1])
			}
		}
	}
	t.Fatalf("%s: no CREATE TABLE", file)
	return nil
}

func chTags(v any) []string {
	rt := reflect.TypeOf(v)
	var tags []string
	for i := range rt.NumField() {
		tags = append(tags, rt.Field(i).Tag.Get("ch"))
	}
	return tags
}

func TestRowTypesHaveOneFieldPerColumnInTableOrder(t *testing.T) {
	for _, tc := range []struct {
		file string
		row  any
	}{
		{"0001_spans.sql", Span{}},
		{"0002_audit_events.sql", AuditEvent{}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cols := ddlColumns(t, tc.file)
			// ingested_at is filled by ClickHouse.
			if cols[len(cols)-1] != "ingested_at" {
				t.Fatalf("last column is %q, want ingested_at", cols[len(cols)-1])
			}
			cols = cols[:len(cols)-1]
			if got := chTags(tc.row); !reflect.DeepEqual(got, cols) {
				t.Errorf("fields (ch tags) differ from the table's columns\n got: %v\nwant: %v", got, cols)
			}
		})
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// fullTrace is a span exercising every column: GenAI attributes with new
// and deprecated keys, events, links, resource and scope attributes.
func fullTrace() ptrace.Traces {
	td, rs, ss := newTraces()
	rs.Resource().Attributes().PutStr("tenant.id", "acme")
	rs.Resource().Attributes().PutStr("gen_ai.agent.version", "resource-version")
	ss.Scope().Attributes().PutStr("scope.attr", "s")
	sp := addSpan(ss, 0)
	sp.SetParentSpanID(testParent)
	sp.TraceState().FromRaw("vendor=abc")
	sp.SetFlags(0x101)
	sp.SetName("execute_tool get_weather")
	sp.SetKind(ptrace.SpanKindClient)
	sp.Status().SetCode(ptrace.StatusCodeError)
	sp.Status().SetMessage("upstream timeout")
	sp.SetDroppedAttributesCount(1)
	sp.SetDroppedEventsCount(2)
	sp.SetDroppedLinksCount(3)
	a := sp.Attributes()
	a.PutStr("gen_ai.system", "openai") // deprecated, before the new key: stays an attribute
	a.PutStr("gen_ai.operation.name", "execute_tool")
	a.PutStr("gen_ai.provider.name", "azure.ai.openai")
	a.PutStr("gen_ai.agent.id", "asst_1")
	a.PutStr("gen_ai.agent.name", "Math Tutor")
	a.PutStr("gen_ai.tool.name", "get_weather")
	a.PutStr("gen_ai.tool.call.id", "call_1")
	a.PutStr("gen_ai.tool.type", "function")
	a.PutStr("gen_ai.request.model", "gpt-4")
	a.PutStr("gen_ai.response.model", "gpt-4-0613")
	a.PutStr("gen_ai.response.id", "chatcmpl-123")
	a.PutStr("gen_ai.conversation.id", "conv_1")
	fr := a.PutEmptySlice("gen_ai.response.finish_reasons")
	fr.AppendEmpty().SetStr("stop")
	fr.AppendEmpty().SetStr("length")
	a.PutInt("gen_ai.usage.prompt_tokens", 100) // deprecated only: used
	a.PutInt("gen_ai.usage.output_tokens", 180)
	a.PutInt("gen_ai.usage.completion_tokens", 999) // deprecated, new key present: kept
	a.PutInt("gen_ai.usage.cache_read.input_tokens", 50)
	a.PutInt("gen_ai.usage.cache_creation_input_tokens", 25) // underscore variant
	a.PutDouble("gen_ai.usage.reasoning.output_tokens", 12)
	a.PutStr("error.type", "timeout")
	a.PutStr("gen_ai.tool.call.arguments", `{"location":"Paris"}`)
	a.PutStr("gen_ai.tool.call.result", "rainy, 57°F")
	a.PutStr("custom.key", "custom value")
	a.PutInt("server.port", 443)
	ev := sp.Events().AppendEmpty()
	ev.SetTimestamp(ts(-time.Minute + time.Second))
	ev.SetName("gen_ai.choice")
	ev.Attributes().PutStr("gen_ai.tool.call.arguments", "secret")
	ev.Attributes().PutBool("final", true)
	sp.Events().AppendEmpty().SetTimestamp(ts(-time.Minute + 2*time.Second))
	l := sp.Links().AppendEmpty()
	l.SetTraceID(pcommon.TraceID{15: 1})
	l.SetSpanID(pcommon.SpanID{7: 2})
	l.TraceState().FromRaw("k=v")
	l.Attributes().PutStr("link.kind", "follows_from")
	return td
}

func TestDecodeSpansRoundTripsEveryColumn(t *testing.T) {
	start := testNow.Add(-time.Minute)
	want := Span{
		TenantID:                 "acme",
		StartTime:                start,
		EndTime:                  start.Add(1500 * time.Millisecond),
		DurationNs:               uint64(1500 * time.Millisecond),
		TraceID:                  "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:                   "00f067aa0ba902b7",
		ParentSpanID:             "53995c3f42cd8ad8",
		TraceState:               "vendor=abc",
		Flags:                    0x101,
		Name:                     "execute_tool get_weather",
		Kind:                     "client",
		StatusCode:               "error",
		StatusMessage:            "upstream timeout",
		ServiceName:              "agent-svc",
		ScopeName:                "github.com/acme/agent",
		ScopeVersion:             "1.2.3",
		OperationName:            "execute_tool",
		ProviderName:             "azure.ai.openai",
		AgentID:                  "asst_1",
		AgentName:                "Math Tutor",
		AgentVersion:             "resource-version",
		ToolName:                 "get_weather",
		ToolCallID:               "call_1",
		ToolType:                 "function",
		RequestModel:             "gpt-4",
		ResponseModel:            "gpt-4-0613",
		ResponseID:               "chatcmpl-123",
		ConversationID:           "conv_1",
		FinishReasons:            []string{"stop", "length"},
		InputTokens:              100,
		OutputTokens:             180,
		CacheReadInputTokens:     50,
		CacheCreationInputTokens: 25,
		ReasoningOutputTokens:    12,
		ErrorType:                "timeout",
		ToolCallArgumentsSHA256:  sha(`{"location":"Paris"}`),
		ToolCallResultSHA256:     sha("rainy, 57°F"),
		ResourceAttributes: map[string]string{
			"service.name": "agent-svc", "tenant.id": "acme", "gen_ai.agent.version": "resource-version",
		},
		ScopeAttributes: map[string]string{"scope.attr": "s"},
		SpanAttributes: map[string]string{
			"gen_ai.system":                  "openai",
			"gen_ai.usage.completion_tokens": "999",
			"custom.key":                     "custom value",
			"server.port":                    "443",
		},
		EventsTime: []time.Time{start.Add(time.Second), start.Add(2 * time.Second)},
		EventsName: []string{"gen_ai.choice", ""},
		EventsAttributes: []map[string]string{
			{"gen_ai.tool.call.arguments.sha256": sha("secret"), "final": "true"},
			nil,
		},
		LinksTraceID:      []string{"00000000000000000000000000000001"},
		LinksSpanID:       []string{"0000000000000002"},
		LinksTraceState:   []string{"k=v"},
		LinksAttributes:   []map[string]string{{"link.kind": "follows_from"}},
		DroppedAttributes: 1,
		DroppedEvents:     2,
		DroppedLinks:      3,
	}
	for _, enc := range []Encoding{EncodingProto, EncodingJSON} {
		t.Run(string(enc), func(t *testing.T) {
			rows, st, err := DecodeSpans(marshal(t, fullTrace(), enc), enc, testSpanOptions(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 {
				t.Fatalf("got %d rows", len(rows))
			}
			got := rows[0]
			if !reflect.DeepEqual(got, want) {
				gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
				for i := range gv.NumField() {
					if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
						t.Errorf("%s = %#v, want %#v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
					}
				}
			}
			if want := (Stats{Spans: 1}); st != want {
				t.Errorf("stats = %+v, want %+v", st, want)
			}
			if got.Key() != want.TraceID+want.SpanID {
				t.Errorf("Key() = %q", got.Key())
			}
		})
	}
}

func TestDecodeSpansPrefersCurrentGenAIKeysWhateverTheirOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		attrs     func(pcommon.Map)
		check     func(Span) bool
		remaining map[string]string
	}{
		{
			name:      "deprecated gen_ai.system alone",
			attrs:     func(m pcommon.Map) { m.PutStr("gen_ai.system", "openai") },
			check:     func(s Span) bool { return s.ProviderName == "openai" },
			remaining: nil,
		},
		{
			name: "new provider key first",
			attrs: func(m pcommon.Map) {
				m.PutStr("gen_ai.provider.name", "anthropic")
				m.PutStr("gen_ai.system", "openai")
			},
			check:     func(s Span) bool { return s.ProviderName == "anthropic" },
			remaining: map[string]string{"gen_ai.system": "openai"},
		},
		{
			name: "prompt_tokens then input_tokens",
			attrs: func(m pcommon.Map) {
				m.PutInt("gen_ai.usage.prompt_tokens", 1)
				m.PutInt("gen_ai.usage.input_tokens", 2)
			},
			check:     func(s Span) bool { return s.InputTokens == 2 },
			remaining: map[string]string{"gen_ai.usage.prompt_tokens": "1"},
		},
		{
			name: "reasoning variants",
			attrs: func(m pcommon.Map) {
				m.PutInt("gen_ai.usage.reasoning_tokens", 1)
				m.PutInt("gen_ai.usage.reasoning_output_tokens", 2)
			},
			check:     func(s Span) bool { return s.ReasoningOutputTokens == 2 },
			remaining: map[string]string{"gen_ai.usage.reasoning_tokens": "1"},
		},
		{
			name: "cache variants",
			attrs: func(m pcommon.Map) {
				m.PutInt("gen_ai.usage.cache_read_input_tokens", 1)
				m.PutInt("gen_ai.usage.cache_read.input_tokens", 2)
				m.PutInt("gen_ai.usage.cache_creation.input_tokens", 3)
			},
			check: func(s Span) bool {
				return s.CacheReadInputTokens == 2 && s.CacheCreationInputTokens == 3
			},
			remaining: map[string]string{"gen_ai.usage.cache_read_input_tokens": "1"},
		},
		{
			name: "invalid new key lets the deprecated one fill the column",
			attrs: func(m pcommon.Map) {
				m.PutStr("gen_ai.usage.output_tokens", "many")
				m.PutInt("gen_ai.usage.completion_tokens", 7)
			},
			check:     func(s Span) bool { return s.OutputTokens == 7 },
			remaining: map[string]string{"gen_ai.usage.output_tokens": "many"},
		},
		{
			name:      "finish_reasons that is not an array of strings stays an attribute",
			attrs:     func(m pcommon.Map) { m.PutStr("gen_ai.response.finish_reasons", "stop") },
			check:     func(s Span) bool { return s.FinishReasons == nil },
			remaining: map[string]string{"gen_ai.response.finish_reasons": "stop"},
		},
		{
			name:      "non-string typed value is flattened into its column",
			attrs:     func(m pcommon.Map) { m.PutInt("gen_ai.agent.id", 42) },
			check:     func(s Span) bool { return s.AgentID == "42" },
			remaining: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td, _, ss := newTraces()
			tc.attrs(addSpan(ss, 0).Attributes())
			s, _ := decodeOne(t, td, testSpanOptions())
			if !tc.check(s) {
				t.Errorf("columns wrong: %+v", s)
			}
			if !reflect.DeepEqual(s.SpanAttributes, tc.remaining) {
				t.Errorf("span_attributes = %v, want %v", s.SpanAttributes, tc.remaining)
			}
		})
	}
}

func TestDecodeSpansTokenCounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		put     func(pcommon.Map)
		want    uint64
		kept    string // value left in span_attributes, "" if none
		invalid int
	}{
		{"int", func(m pcommon.Map) { m.PutInt(KeyInputTokens, 12) }, 12, "", 0},
		{"zero", func(m pcommon.Map) { m.PutInt(KeyInputTokens, 0) }, 0, "", 0},
		{"integral double", func(m pcommon.Map) { m.PutDouble(KeyInputTokens, 12) }, 12, "", 0},
		{"numeric string", func(m pcommon.Map) { m.PutStr(KeyInputTokens, "12") }, 12, "", 0},
		{"negative int", func(m pcommon.Map) { m.PutInt(KeyInputTokens, -1) }, 0, "-1", 1},
		{"fractional double", func(m pcommon.Map) { m.PutDouble(KeyInputTokens, 1.5) }, 0, "1.5", 1},
		{"negative double", func(m pcommon.Map) { m.PutDouble(KeyInputTokens, -3) }, 0, "-3", 1},
		{"text", func(m pcommon.Map) { m.PutStr(KeyInputTokens, "twelve") }, 0, "twelve", 1},
		{"signed string", func(m pcommon.Map) { m.PutStr(KeyInputTokens, "+12") }, 0, "+12", 1},
		{"bool", func(m pcommon.Map) { m.PutBool(KeyInputTokens, true) }, 0, "true", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td, _, ss := newTraces()
			tc.put(addSpan(ss, 0).Attributes())
			s, st := decodeOne(t, td, testSpanOptions())
			if s.InputTokens != tc.want {
				t.Errorf("input_tokens = %d, want %d", s.InputTokens, tc.want)
			}
			if got := s.SpanAttributes[KeyInputTokens]; got != tc.kept {
				t.Errorf("span_attributes[%s] = %q, want %q", KeyInputTokens, got, tc.kept)
			}
			if st.InvalidTokenCounts != tc.invalid {
				t.Errorf("InvalidTokenCounts = %d, want %d", st.InvalidTokenCounts, tc.invalid)
			}
		})
	}
}

func TestDecodeSpansTenant(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keys     []string
		resource map[string]string
		span     map[string]string
		want     string
		unknown  int
	}{
		{"from span attribute", nil, nil, map[string]string{"tenant.id": "t-span"}, "t-span", 0},
		{"from resource attribute", nil, map[string]string{"tenant.id": "t-res"}, nil, "t-res", 0},
		{"span wins over resource for the same key", nil, map[string]string{"tenant.id": "t-res"}, map[string]string{"tenant.id": "t-span"}, "t-span", 0},
		{"second key when the first is absent", nil, nil, map[string]string{"org.id": "o-span"}, "o-span", 0},
		{"earlier key wins over later key even on the resource", nil, map[string]string{"tenant.id": "t-res"}, map[string]string{"org.id": "o-span"}, "t-res", 0},
		{"empty value counts as absent", nil, map[string]string{"org.id": "o-res"}, map[string]string{"tenant.id": ""}, "o-res", 0},
		{"configured keys in configured order", []string{"org.id", "tenant.id"}, map[string]string{"tenant.id": "t-res"}, map[string]string{"org.id": "o-span"}, "o-span", 0},
		{"unknown", nil, map[string]string{"other": "x"}, map[string]string{"also.other": "y"}, "unknown", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td, rs, ss := newTraces()
			for k, v := range tc.resource {
				rs.Resource().Attributes().PutStr(k, v)
			}
			sp := addSpan(ss, 0)
			for k, v := range tc.span {
				sp.Attributes().PutStr(k, v)
			}
			opts := testSpanOptions()
			if tc.keys != nil {
				opts.TenantAttributes = tc.keys
			}
			s, st := decodeOne(t, td, opts)
			if s.TenantID != tc.want {
				t.Errorf("tenant = %q, want %q", s.TenantID, tc.want)
			}
			if st.UnknownTenant != tc.unknown {
				t.Errorf("UnknownTenant = %d, want %d", st.UnknownTenant, tc.unknown)
			}
			for k, v := range tc.span { // tenant attributes are kept
				if s.SpanAttributes[k] != v {
					t.Errorf("span attribute %s lost", k)
				}
			}
		})
	}

	t.Run("configured unknown tenant", func(t *testing.T) {
		td, _, ss := newTraces()
		addSpan(ss, 0)
		opts := testSpanOptions()
		opts.UnknownTenant = "nobody"
		if s, _ := decodeOne(t, td, opts); s.TenantID != "nobody" {
			t.Errorf("tenant = %q", s.TenantID)
		}
	})
}

// containsRaw reports whether raw appears anywhere in the row's strings.
func containsRaw(s Span, raw string) bool {
	maps := append([]map[string]string{s.ResourceAttributes, s.ScopeAttributes, s.SpanAttributes}, s.EventsAttributes...)
	maps = append(maps, s.LinksAttributes...)
	for _, m := range maps {
		for k, v := range m {
			if strings.Contains(k, raw) || strings.Contains(v, raw) {
				return true
			}
		}
	}
	return false
}

func TestDecodeSpansHashesToolCallContent(t *testing.T) {
	const args, result = `{"card":"4111-1111"}`, "SECRET-RESULT"
	build := func() ptrace.Traces {
		td, rs, ss := newTraces()
		rs.Resource().Attributes().PutStr(KeyToolCallResult, result)
		sp := addSpan(ss, 0)
		sp.Attributes().PutStr(KeyToolCallArguments, args)
		sp.Attributes().PutStr(KeyToolCallResult, result)
		ev := sp.Events().AppendEmpty()
		ev.SetTimestamp(ts(-time.Minute))
		ev.Attributes().PutStr(KeyToolCallArguments, args)
		l := sp.Links().AppendEmpty()
		l.SetTraceID(testTraceID)
		l.SetSpanID(testParent)
		l.Attributes().PutStr(KeyToolCallResult, result)
		return td
	}

	t.Run("on: raw values stored nowhere", func(t *testing.T) {
		s, _ := decodeOne(t, build(), testSpanOptions())
		if s.ToolCallArgumentsSHA256 != sha(args) || s.ToolCallResultSHA256 != sha(result) {
			t.Errorf("hashes = %q, %q", s.ToolCallArgumentsSHA256, s.ToolCallResultSHA256)
		}
		for _, raw := range []string{args, result, "4111", "SECRET"} {
			if containsRaw(s, raw) {
				t.Errorf("raw content %q stored", raw)
			}
		}
		if s.EventsAttributes[0][KeyToolCallArguments+".sha256"] != sha(args) ||
			s.LinksAttributes[0][KeyToolCallResult+".sha256"] != sha(result) ||
			s.ResourceAttributes[KeyToolCallResult+".sha256"] != sha(result) {
			t.Errorf("hashed keys missing: %v %v %v", s.EventsAttributes, s.LinksAttributes, s.ResourceAttributes)
		}
	})

	t.Run("off: raw values kept as well", func(t *testing.T) {
		opts := testSpanOptions()
		opts.HashToolCallContent = false
		s, _ := decodeOne(t, build(), opts)
		if s.ToolCallArgumentsSHA256 != sha(args) || s.ToolCallResultSHA256 != sha(result) {
			t.Errorf("hashes = %q, %q", s.ToolCallArgumentsSHA256, s.ToolCallResultSHA256)
		}
		if s.SpanAttributes[KeyToolCallArguments] != args || s.SpanAttributes[KeyToolCallResult] != result ||
			s.EventsAttributes[0][KeyToolCallArguments] != args || s.ResourceAttributes[KeyToolCallResult] != result {
			t.Errorf("raw values not kept: %v", s)
		}
	})

	t.Run("structured value hashed as compact JSON with sorted keys", func(t *testing.T) {
		td, _, ss := newTraces()
		m := addSpan(ss, 0).Attributes().PutEmptyMap(KeyToolCallArguments)
		m.PutStr("location", "Paris")
		m.PutStr("date", "2025-10-01")
		s, _ := decodeOne(t, td, testSpanOptions())
		if want := sha(`{"date":"2025-10-01","location":"Paris"}`); s.ToolCallArgumentsSHA256 != want {
			t.Errorf("hash = %s, want %s", s.ToolCallArgumentsSHA256, want)
		}
	})

	t.Run("content longer than the value limit is fine when only hashed", func(t *testing.T) {
		td, _, ss := newTraces()
		big := strings.Repeat("x", 1<<20)
		addSpan(ss, 0).Attributes().PutStr(KeyToolCallResult, big)
		if s, _ := decodeOne(t, td, testSpanOptions()); s.ToolCallResultSHA256 != sha(big) {
			t.Error("wrong hash")
		}
	})
}

func TestDecodeSpansFlattensAttributeValues(t *testing.T) {
	td, _, ss := newTraces()
	a := addSpan(ss, 0).Attributes()
	a.PutStr("str", "a\"b")
	a.PutInt("int", -42)
	a.PutDouble("double", 0.1)
	a.PutDouble("double.int", 3)
	a.PutDouble("double.big", 1e21)
	a.PutDouble("double.small", 1e-7)
	a.PutBool("bool", false)
	a.PutEmptyBytes("bytes").FromRaw([]byte{0xff, 0x00, 0x01})
	sl := a.PutEmptySlice("slice")
	sl.AppendEmpty().SetStr("x\n")
	sl.AppendEmpty().SetInt(1)
	sl.AppendEmpty().SetDouble(2.5)
	sl.AppendEmpty().SetBool(true)
	sl.AppendEmpty()
	m := a.PutEmptyMap("map")
	m.PutStr("z", "last")
	m.PutEmptyMap("a").PutEmptySlice("nested")
	a.PutEmpty("empty")
	s, _ := decodeOne(t, td, testSpanOptions())
	want := map[string]string{
		"str":          `a"b`,
		"int":          "-42",
		"double":       "0.1",
		"double.int":   "3",
		"double.big":   "1e+21",
		"double.small": "1e-7",
		"bool":         "false",
		"bytes":        "/wAB",
		"slice":        `["x\n",1,2.5,true,null]`,
		"map":          `{"a":{"nested":[]},"z":"last"}`,
		"empty":        "",
	}
	if !reflect.DeepEqual(s.SpanAttributes, want) {
		t.Errorf("got  %v\nwant %v", s.SpanAttributes, want)
	}
}

func TestDecodeSpansKeepsMessageOrderAndSrcIndex(t *testing.T) {
	td := agentTrace()
	// A second resource with its own tenant.
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "other")
	rs.Resource().Attributes().PutStr("org.id", "org-2")
	sp := addSpan(rs.ScopeSpans().AppendEmpty(), 9)
	sp.SetTraceID(pcommon.TraceID{1})
	dst := make([]Span, 2, 16) // rows already in dst are kept
	rows, st, err := DecodeSpans(marshal(t, td, EncodingProto), EncodingProto, testSpanOptions(), dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 7 || st.Spans != 5 {
		t.Fatalf("rows %d, stats %+v", len(rows), st)
	}
	if &rows[0] != &dst[0] {
		t.Error("dst with room was not reused")
	}
	for i, r := range rows[2:] {
		if r.SrcIndex != uint32(i) {
			t.Errorf("row %d: SrcIndex %d", i, r.SrcIndex)
		}
	}
	if rows[2].TenantID != "tenant-7f3a9c" || rows[6].TenantID != "org-2" || rows[6].ServiceName != "other" {
		t.Errorf("tenants %q %q", rows[2].TenantID, rows[6].TenantID)
	}
	if rows[3].ParentSpanID != rows[2].SpanID || rows[3].TraceID != rows[2].TraceID || rows[2].ParentSpanID != "" {
		t.Error("parent/child ids wrong")
	}
	if rows[6].TraceID != "01000000000000000000000000000000" {
		t.Errorf("trace id %s", rows[6].TraceID)
	}
}

func TestDecodeSpansEmptyMessage(t *testing.T) {
	for _, enc := range []Encoding{EncodingProto, EncodingJSON} {
		rows, st, err := DecodeSpans(marshal(t, ptrace.NewTraces(), enc), enc, testSpanOptions(), nil)
		if err != nil || len(rows) != 0 || st != (Stats{}) {
			t.Errorf("%s: %v %v %v", enc, rows, st, err)
		}
	}
}

func TestDecodeSpansCountsDuplicateKeys(t *testing.T) {
	// pcommon.Map deduplicates on Put, but the wire format does not: build
	// the duplicate by hand, in JSON.
	now := strconv.FormatUint(uint64(ts(-time.Minute)), 10)
	msg := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",` +
		`"startTimeUnixNano":"` + now + `","endTimeUnixNano":"` + now + `",` +
		`"attributes":[{"key":"k","value":{"stringValue":"1"}},{"key":"k","value":{"stringValue":"2"}},` +
		`{"key":"gen_ai.agent.id","value":{"stringValue":"a"}},{"key":"gen_ai.agent.id","value":{"stringValue":"b"}}]}]}]}]}`
	rows, st, err := DecodeSpans([]byte(msg), EncodingJSON, testSpanOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.DuplicateAttributes != 2 || rows[0].SpanAttributes["k"] != "2" || rows[0].AgentID != "b" {
		t.Errorf("stats %+v, row %+v", st, rows[0])
	}
}

func TestEncodingValidate(t *testing.T) {
	for _, e := range []Encoding{EncodingProto, EncodingJSON} {
		if err := e.Validate(); err != nil {
			t.Error(err)
		}
	}
	err := Encoding("otlp_yaml").Validate()
	if !errors.Is(err, ErrUnknownEncoding) {
		t.Errorf("got %v", err)
	}
	if _, _, err := DecodeSpans(nil, "otlp_yaml", testSpanOptions(), nil); !errors.Is(err, ErrUnknownEncoding) {
		t.Errorf("DecodeSpans: %v", err)
	}
}

// OTLP before 1.0 called ScopeSpans InstrumentationLibrarySpans (field
// 1000). pdata's JSON unmarshaler migrates them (otlp.MigrateTraces), its
// protobuf unmarshaler does not; DecodeSpans does for both, so no span is
// lost.
func TestDecodeSpansReadsDeprecatedInstrumentationLibrarySpans(t *testing.T) {
	td, _, ss := newTraces()
	addSpan(ss, 0).SetName("old")
	pb := marshal(t, td, EncodingProto)
	f, _, err := readField(pb, 0, len(pb)) // the ResourceSpans
	if err != nil {
		t.Fatal(err)
	}
	var rs []byte
	for pos := f.s; pos < f.e; {
		g, next, _ := readField(pb, pos, f.e)
		if g.num == 2 {
			rs = append(rs, protoField(1000, pb[g.s:g.e])...)
		} else {
			rs = append(rs, pb[pos:next]...)
		}
		pos = next
	}
	rows, _, err := DecodeSpans(protoField(1, rs), EncodingProto, testSpanOptions(), nil)
	if err != nil || len(rows) != 1 || rows[0].Name != "old" || rows[0].ScopeName != "github.com/acme/agent" {
		t.Fatalf("rows %+v, err %v", rows, err)
	}
}
