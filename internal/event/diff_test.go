package event

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The production decoder (own wire reader) against the reference (pdata):
// same rows, same stats, same error reasons, on generated traces encoded
// in several field orders.

// traceGen generates traces that exercise every rule of the decoder,
// valid and invalid.
type traceGen struct{ r *rand.Rand }

func (g *traceGen) pick(n int) int { return g.r.IntN(n) }
func (g *traceGen) chance(p float64) bool {
	return g.r.Float64() < p
}

var genKeys = []string{
	KeyOperationName, KeyProviderName, KeySystem, KeyAgentID, KeyAgentName, KeyAgentVersion,
	KeyToolName, KeyToolCallID, KeyToolType, KeyToolCallArguments, KeyToolCallResult,
	KeyRequestModel, KeyResponseModel, KeyResponseID, KeyConversationID, KeyFinishReasons, KeyErrorType,
	KeyInputTokens, KeyPromptTokens, KeyOutputTokens, KeyCompletionTokens,
	KeyCacheReadInputTokens, KeyCacheReadInputTokensAlt, KeyCacheCreationInputTokens, KeyCacheCreationInputTokensAlt,
	KeyReasoningOutputTokens, KeyReasoningOutputTokensAlt, KeyReasoningTokens,
	"tenant.id", "org.id", "service.name", "k1", "k2", "custom.attribute.with.a.long.name", "",
}

var genStrings = []string{"", "x", "openai", "12", "-3", "1.5", "héllo wörld", "a\"b\n\\c\x01", "tool_calls", "0"}

func (g *traceGen) key() string {
	switch {
	case g.chance(0.01):
		return badUTF8
	case g.chance(0.01):
		return strings.Repeat("k", 40)
	}
	return genKeys[g.pick(len(genKeys))]
}

func (g *traceGen) str() string {
	switch {
	case g.chance(0.01):
		return badUTF8
	case g.chance(0.02):
		return strings.Repeat("v", 40)
	}
	return genStrings[g.pick(len(genStrings))]
}

func (g *traceGen) value(v pcommon.Value, depth int) {
	kinds := 8
	if depth > 2 {
		kinds = 6
	}
	switch g.pick(kinds) {
	case 0, 1:
		v.SetStr(g.str())
	case 2:
		ints := []int64{0, 1, 42, 443, -1, 1 << 40, math.MinInt64}
		v.SetInt(ints[g.pick(len(ints))])
	case 3:
		fs := []float64{0, 1.5, 12, -3, math.NaN(), math.Inf(1), math.Inf(-1), 1e21, 1e-7, 1 << 63, 1e300}
		v.SetDouble(fs[g.pick(len(fs))])
	case 4:
		v.SetBool(g.chance(0.5))
	case 5:
		if g.chance(0.5) {
			v.SetEmptyBytes().FromRaw([]byte{0xff, byte(g.pick(256)), 0})
		} // else empty
	case 6:
		s := v.SetEmptySlice()
		strs := g.chance(0.5)
		for range g.pick(4) {
			if strs {
				s.AppendEmpty().SetStr(g.str())
			} else {
				g.value(s.AppendEmpty(), depth+1)
			}
		}
	case 7:
		m := v.SetEmptyMap()
		for range g.pick(4) {
			g.value(m.PutEmpty(g.key()), depth+1)
		}
	}
}

func (g *traceGen) attrs(m pcommon.Map, max int) {
	for range g.pick(max + 1) {
		g.value(m.PutEmpty(g.key()), 0)
	}
}

func (g *traceGen) id(n int) []byte {
	b := make([]byte, n)
	if !g.chance(0.02) {
		for i := range b {
			b[i] = byte(1 + g.pick(3))
		}
	}
	return b
}

func (g *traceGen) ts() pcommon.Timestamp {
	switch {
	case g.chance(0.01):
		return 0
	case g.chance(0.01):
		return ts(-500 * 24 * time.Hour)
	case g.chance(0.01):
		return ts(2 * time.Hour)
	}
	return ts(-time.Duration(g.pick(3600)) * time.Second)
}

func (g *traceGen) traces() ptrace.Traces {
	td := ptrace.NewTraces()
	for range 1 + g.pick(2) {
		rs := td.ResourceSpans().AppendEmpty()
		g.attrs(rs.Resource().Attributes(), 4)
		for range 1 + g.pick(2) {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(g.str())
			ss.Scope().SetVersion(g.str())
			g.attrs(ss.Scope().Attributes(), 2)
			for range g.pick(4) {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(pcommon.TraceID(g.id(16)))
				sp.SetSpanID(pcommon.SpanID(g.id(8)))
				if g.chance(0.5) {
					sp.SetParentSpanID(pcommon.SpanID(g.id(8)))
				}
				sp.TraceState().FromRaw(g.str())
				sp.SetFlags(uint32(g.pick(1024)))
				sp.SetName(g.str())
				sp.SetKind(ptrace.SpanKind(g.pick(8)))
				start := g.ts()
				sp.SetStartTimestamp(start)
				end := start + pcommon.Timestamp(g.pick(5e9))
				if g.chance(0.02) {
					end = start - 1
				}
				sp.SetEndTimestamp(end)
				sp.Status().SetCode(ptrace.StatusCode(g.pick(4)))
				sp.Status().SetMessage(g.str())
				sp.SetDroppedAttributesCount(uint32(g.pick(3)))
				sp.SetDroppedEventsCount(uint32(g.pick(3)))
				sp.SetDroppedLinksCount(uint32(g.pick(3)))
				g.attrs(sp.Attributes(), 10)
				for range g.pick(3) {
					ev := sp.Events().AppendEmpty()
					ev.SetTimestamp(g.ts())
					ev.SetName(g.str())
					g.attrs(ev.Attributes(), 3)
				}
				for range g.pick(3) {
					l := sp.Links().AppendEmpty()
					l.SetTraceID(pcommon.TraceID(g.id(16)))
					l.SetSpanID(pcommon.SpanID(g.id(8)))
					l.TraceState().FromRaw(g.str())
					g.attrs(l.Attributes(), 3)
				}
			}
		}
	}
	return td
}

func (g *traceGen) options() SpanOptions {
	o := testSpanOptions()
	o.HashToolCallContent = g.chance(0.7)
	if g.chance(0.3) {
		o.TenantAttributes = []string{"org.id", "tenant.id"}
	}
	if g.chance(0.2) {
		o.Limits.MaxAttributeValueBytes = 32
		o.Limits.MaxAttributeKeyBytes = 24
	}
	if g.chance(0.1) {
		o.Limits.MaxAttributesPerSpan = 8
		o.Limits.MaxEventsPerSpan = 1
		o.Limits.MaxLinksPerSpan = 1
	}
	if g.chance(0.05) {
		o.Limits.MaxSpansPerMessage = 2
	}
	return o
}

// OTLP message types, for re-encoding in other field orders.
type pbType int

const (
	pbRequest pbType = iota
	pbResourceSpans
	pbResource
	pbScopeSpans
	pbScope
	pbSpan
	pbEvent
	pbLink
	pbStatus
	pbKeyValue
	pbAnyValue
	pbList // ArrayValue
	pbKVList
	pbEntityRef
	pbOpaque
)

var pbChildren = map[pbType]map[int32]pbType{
	pbRequest:       {1: pbResourceSpans},
	pbResourceSpans: {1: pbResource, 2: pbScopeSpans, 1000: pbScopeSpans},
	pbResource:      {1: pbKeyValue, 3: pbEntityRef},
	pbScopeSpans:    {1: pbScope, 2: pbSpan},
	pbScope:         {3: pbKeyValue},
	pbSpan:          {9: pbKeyValue, 11: pbEvent, 13: pbLink, 15: pbStatus},
	pbEvent:         {3: pbKeyValue},
	pbLink:          {4: pbKeyValue},
	pbKeyValue:      {2: pbAnyValue},
	pbAnyValue:      {5: pbList, 6: pbKVList},
	pbList:          {1: pbAnyValue},
	pbKVList:        {1: pbKeyValue},
}

type rawField struct {
	num int32
	enc []byte // the whole field, tag included
}

// reorder re-encodes a valid message of type t with its fields reordered by
// order, recursively; order must keep fields of one number in their
// relative order (repeated fields and last-wins semantics).
func reorder(data []byte, t pbType, order func([]rawField) []rawField) []byte {
	var fields []rawField
	for pos := 0; pos < len(data); {
		f, next, err := readField(data, pos, len(data))
		if err != nil {
			panic(err)
		}
		enc := data[pos:next]
		if child, ok := pbChildren[t][f.num]; ok && f.wt == wtLen {
			payload := reorder(data[f.s:f.e], child, order)
			enc = binary.AppendUvarint(binary.AppendUvarint(nil, uint64(f.num)<<3|wtLen), uint64(len(payload)))
			enc = append(enc, payload...)
		}
		fields = append(fields, rawField{f.num, enc})
		pos = next
	}
	var out []byte
	for _, f := range order(fields) {
		out = append(out, f.enc...)
	}
	return out
}

func ascending(fs []rawField) []rawField {
	slices.SortStableFunc(fs, func(a, b rawField) int { return int(a.num) - int(b.num) })
	return fs
}

// shuffled interleaves the fields randomly, keeping each number's fields in
// order, and sometimes adds an unknown field.
func (g *traceGen) shuffled(fs []rawField) []rawField {
	byNum := map[int32][]rawField{}
	var nums []int32
	for _, f := range fs {
		if _, ok := byNum[f.num]; !ok {
			nums = append(nums, f.num)
		}
		byNum[f.num] = append(byNum[f.num], f)
	}
	var out []rawField
	for len(nums) > 0 {
		i := g.pick(len(nums))
		q := byNum[nums[i]]
		out = append(out, q[0])
		if byNum[nums[i]] = q[1:]; len(q) == 1 {
			nums = slices.Delete(nums, i, i+1)
		}
	}
	if g.chance(0.2) {
		unknown := rawField{99, append(binary.AppendUvarint(nil, 99<<3|wtVarint), 42)}
		at := g.pick(len(out) + 1)
		out = slices.Insert(out, at, unknown)
	}
	return out
}

// compareDecoders decodes msg with both decoders and reports differences.
func compareDecoders(t *testing.T, msg []byte, enc Encoding, opts SpanOptions) {
	t.Helper()
	got, gotStats, gotErr := DecodeSpans(msg, enc, opts, nil)
	want, wantStats, wantErr := decodeSpansReference(msg, enc, opts, nil)
	gr, _ := ReasonOf(gotErr)
	wr, _ := ReasonOf(wantErr)
	if (gotErr == nil) != (wantErr == nil) || gr != wr {
		t.Fatalf("errors differ:\n got  %v\n want %v", gotErr, wantErr)
	}
	if gotStats != wantStats {
		t.Errorf("stats differ: got %+v, want %+v", gotStats, wantStats)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			gv, wv := reflect.ValueOf(got[i]), reflect.ValueOf(want[i])
			for j := range gv.NumField() {
				if !reflect.DeepEqual(gv.Field(j).Interface(), wv.Field(j).Interface()) {
					t.Errorf("row %d: %s = %#v, want %#v", i, gv.Type().Field(j).Name, gv.Field(j).Interface(), wv.Field(j).Interface())
				}
			}
		}
	}
}

func TestFastDecoderAgreesWithPdata(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	outcomes := map[Reason]int{}
	for seed := range uint64(n) {
		g := &traceGen{rand.New(rand.NewPCG(seed, 1))}
		td := g.traces()
		opts := g.options()
		pdataOrder := marshal(t, td, EncodingProto)
		variants := map[string][]byte{
			"pdata order":     pdataOrder,
			"ascending order": reorder(pdataOrder, pbRequest, ascending),
			"shuffled order":  reorder(pdataOrder, pbRequest, g.shuffled),
		}
		for name, msg := range variants {
			t.Run("", func(t *testing.T) {
				defer func() {
					if t.Failed() {
						t.Logf("seed %d, %s", seed, name)
					}
				}()
				compareDecoders(t, msg, EncodingProto, opts)
			})
		}
		t.Run("", func(t *testing.T) {
			compareDecoders(t, marshal(t, td, EncodingJSON), EncodingJSON, opts)
		})
		_, _, err := DecodeSpans(pdataOrder, EncodingProto, opts, nil)
		r, _ := ReasonOf(err)
		outcomes[r]++
	}
	// The generator must reach the interesting cases, not only errors.
	t.Logf("outcomes: %v", outcomes)
	if outcomes[""] < n/5 {
		t.Errorf("only %d of %d generated messages decoded", outcomes[""], n)
	}
}

// Wire-format corners the generator does not reach: repeated singular
// fields, merged messages, oneof overrides, unknown fields and groups,
// wrong wire types, profile-only string indexes.
func TestFastDecoderAgreesWithPdataOnWireCorners(t *testing.T) {
	varintField := func(num int, v uint64) []byte {
		return binary.AppendUvarint(binary.AppendUvarint(nil, uint64(num)<<3|wtVarint), v)
	}
	fixed64 := func(num int, v uint64) []byte {
		return binary.LittleEndian.AppendUint64(binary.AppendUvarint(nil, uint64(num)<<3|wtI64), v)
	}
	str := func(num int, s string) []byte { return protoField(num, []byte(s)) }
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	kv := func(k string, value ...[]byte) []byte {
		return protoField(9, cat(str(1, k), protoField(2, cat(value...))))
	}
	now := uint64(ts(-time.Minute))
	span := func(extra ...[]byte) []byte {
		return cat(protoField(1, testTraceID[:]), protoField(2, testSpanID[:]),
			fixed64(7, now), fixed64(8, now+1), cat(extra...))
	}
	request := func(resource, scope []byte, spans ...[]byte) []byte {
		ss := scope
		for _, s := range spans {
			ss = cat(ss, protoField(2, s))
		}
		return protoField(1, cat(resource, protoField(2, ss)))
	}
	group := func(num int, inner ...[]byte) []byte {
		return cat(binary.AppendUvarint(nil, uint64(num)<<3|wtStartGroup), cat(inner...),
			binary.AppendUvarint(nil, uint64(num)<<3|wtEndGroup))
	}
	for _, tc := range []struct {
		name   string
		msg    []byte
		reason Reason // "" for a message that decodes
	}{
		{"name twice, last wins", request(nil, nil, span(str(5, "first"), str(5, "second"))), ""},
		{"trace id reset by empty one", request(nil, nil, span(protoField(1, nil))), ReasonInvalidID},
		{"oneof: string then int", request(nil, nil, span(kv("k", str(1, "s"), varintField(3, 7)))), ""},
		{"oneof: array then string", request(nil, nil, span(kv("k", protoField(5, protoField(1, str(1, "a"))), str(1, "s")))), ""},
		{"string_value_strindex", request(nil, nil, span(kv("k", varintField(8, 3)))), ""},
		{"key_strindex only", request(nil, nil, span(protoField(9, cat(varintField(3, 1), protoField(2, str(1, "v")))))), ""},
		{"value field twice, merged", request(nil, nil, span(protoField(9, cat(str(1, "k"),
			protoField(2, str(1, "v")), protoField(2, nil))))), ""},
		{"status twice, merged", request(nil, nil, span(protoField(15, str(2, "msg")), protoField(15, varintField(3, 2)))), ""},
		{"resource twice, merged", request(cat(protoField(1, protoField(1, cat(str(1, "tenant.id"), protoField(2, str(1, "t1"))))),
			protoField(1, protoField(1, cat(str(1, "service.name"), protoField(2, str(1, "svc")))))), nil, span()), ""},
		{"scope twice, merged", request(nil, cat(protoField(1, str(1, "scope")), protoField(1, str(2, "v2"))), span()), ""},
		{"unknown fields everywhere", request(varintField(77, 1), varintField(78, 2),
			span(varintField(99, 5), fixed64(98, 1), protoField(97, []byte("x")), kv("k", str(1, "v"), varintField(96, 0)))), ""},
		{"unknown group", request(nil, nil, span(group(50, varintField(1, 1)), str(5, "after"))), ReasonDecodeFailed},
		{"nested unknown groups", request(nil, nil, span(group(50, group(51)), str(5, "after"))), ""},
		{"end group without start", request(nil, nil, span(binary.AppendUvarint(nil, 50<<3|wtEndGroup))), ReasonDecodeFailed},
		{"illegal wire type", request(nil, nil, span(binary.AppendUvarint(nil, 50<<3|6))), ReasonDecodeFailed},
		{"kind as a length-delimited field", request(nil, nil, span(str(6, "client"))), ReasonDecodeFailed},
		{"start time as a varint", request(nil, nil, span(varintField(7, 5))), ReasonDecodeFailed},
		{"attribute value as a varint", request(nil, nil, span(protoField(9, cat(str(1, "k"), varintField(2, 1))))), ReasonDecodeFailed},
		{"field number zero", request(nil, nil, span([]byte{0x02, 0x00})), ReasonDecodeFailed},
		{"varint of eleven bytes", request(nil, nil, span([]byte{6 << 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})), ReasonDecodeFailed},
		{"length beyond the message", request(nil, nil, span([]byte{5<<3 | wtLen, 0x7f, 'x'})), ReasonDecodeFailed},
		{"entity ref with a bad wire type", request(protoField(1, protoField(3, varintField(1, 1))), nil, span()), ReasonDecodeFailed},
		{"entity ref well formed", request(protoField(1, protoField(3, cat(str(1, "u"), str(2, "t"), str(3, "k")))), nil, span()), ""},
		{"status with deprecated code field", request(nil, nil, span(protoField(15, varintField(1, 2)))), ""},
		{"link flags and dropped counts", request(nil, nil, span(protoField(13, cat(protoField(1, testTraceID[:]), protoField(2, testParent[:]), varintField(5, 3), binary.LittleEndian.AppendUint32(binary.AppendUvarint(nil, 6<<3|wtI32), 1))))), ""},
		{"span flags as fixed32", request(nil, nil, span(binary.LittleEndian.AppendUint32(binary.AppendUvarint(nil, 16<<3|wtI32), 0x301))), ""},
		{"kind out of range", request(nil, nil, span(varintField(6, 1<<40|3))), ""},
		{"negative int value", request(nil, nil, span(kv(KeyInputTokens, varintField(3, math.MaxUint64)))), ""},
		{"bool value of 2", request(nil, nil, span(kv("b", varintField(2, 2)))), ""},
		{"empty message", nil, ""},
		{"resource spans without scope spans", protoField(1, protoField(1, nil)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compareDecoders(t, tc.msg, EncodingProto, testSpanOptions())
			_, _, err := DecodeSpans(tc.msg, EncodingProto, testSpanOptions(), nil)
			if r, _ := ReasonOf(err); r != tc.reason {
				t.Errorf("err = %v, want reason %q", err, tc.reason)
			}
		})
	}
}
