package detect

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/event/eventtest"
	"github.com/agentaudit/agentaudit/internal/sim"
)

// tokenFields is what the rate rule reads of a span.
type tokenFields struct {
	Trace, Agent, Tenant, Op string
	Start                    time.Time
	In, Out                  uint64
}

func project(spans []event.Span) []tokenFields {
	out := make([]tokenFields, len(spans))
	for i, s := range spans {
		out[i] = tokenFields{s.TraceID, s.AgentID, s.TenantID, s.OperationName, s.StartTime, s.InputTokens, s.OutputTokens}
	}
	return out
}

func simTraces(t testing.TB, n int) [][]byte {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Tenants, cfg.AgentsPerTenant = 5, 10
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for m := range s.All() {
		if m.IsTrace() {
			out = append(out, m.Value)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

func scanOpts() event.SpanOptions {
	o := event.DefaultSpanOptions()
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	o.Now = func() time.Time { return now }
	return o
}

// On simulator traffic the scanner reads every message itself (no
// fallback) and agrees with event.DecodeSpans on every field it fills.
func TestSpanScannerAgreesOnSimulatorTraffic(t *testing.T) {
	opts := scanOpts()
	sc := newSpanScanner(opts)
	chat := 0
	for i, msg := range simTraces(t, 3000) {
		full, _, err := event.DecodeSpans(msg, event.EncodingProto, opts, nil)
		if err != nil {
			t.Fatalf("message %d: full decoder: %v", i, err)
		}
		lean, err := sc.scan(msg, nil)
		if err != nil {
			t.Fatalf("message %d: the scanner fell back on simulator traffic: %v", i, err)
		}
		if got, want := project(lean), project(full); !slices.Equal(got, want) {
			t.Fatalf("message %d:\nscanner %+v\nfull    %+v", i, got, want)
		}
		for _, s := range full {
			if s.OperationName == "chat" && s.InputTokens+s.OutputTokens > 0 {
				chat++
			}
		}
	}
	if chat == 0 {
		t.Fatal("no chat span with tokens in the sample: the comparison proves nothing")
	}
}

// Hand-built messages cover the forms the simulator does not write: key
// priorities, repeated keys, token counts as strings and doubles, invalid
// counts, agent and tenant on the resource, values the scanner leaves to
// the full decoder. decode (scanner with fallback) must agree with the
// full decoder on each, and the scanner must decide the cases it claims.
func TestSpanScannerAgreesOnEdgeCases(t *testing.T) {
	opts := scanOpts()
	start := pcommon.Timestamp(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	type attrs func(span, res pcommon.Map)
	cases := []struct {
		name     string
		set      attrs
		fallback bool // the scanner leaves it to the full decoder
	}{
		{"input over prompt", func(s, _ pcommon.Map) {
			s.PutStr("gen_ai.operation.name", "chat")
			s.PutInt("gen_ai.usage.prompt_tokens", 7)
			s.PutInt("gen_ai.usage.input_tokens", 11)
			s.PutInt("gen_ai.usage.completion_tokens", 3)
		}, false},
		{"prompt only, output as string and double", func(s, _ pcommon.Map) {
			s.PutStr("gen_ai.operation.name", "chat")
			s.PutInt("gen_ai.usage.prompt_tokens", 7)
			s.PutStr("gen_ai.usage.output_tokens", "42")
			s.PutDouble("gen_ai.usage.completion_tokens", 5)
		}, false},
		{"invalid counts ignored", func(s, _ pcommon.Map) {
			s.PutStr("gen_ai.operation.name", "chat")
			s.PutStr("gen_ai.usage.input_tokens", "many")
			s.PutInt("gen_ai.usage.prompt_tokens", 9)
			s.PutInt("gen_ai.usage.output_tokens", -4)
			s.PutDouble("gen_ai.usage.completion_tokens", 2.5)
			s.PutBool("gen_ai.usage.output_tokens.x", true)
		}, false},
		{"agent and tenant from the resource", func(s, r pcommon.Map) {
			s.PutStr("gen_ai.operation.name", "chat")
			s.PutInt("gen_ai.usage.input_tokens", 1)
			r.PutStr("gen_ai.agent.id", "agt-res")
			r.PutStr("org.id", "org-res")
		}, false},
		{"span tenant key before resource, by key order", func(s, r pcommon.Map) {
			s.PutStr("org.id", "org-span")
			r.PutStr("tenant.id", "tenant-res")
			s.PutStr("gen_ai.agent.id", "agt-span")
			r.PutStr("gen_ai.agent.id", "agt-res")
		}, false},
		{"no tenant", func(s, _ pcommon.Map) { s.PutStr("gen_ai.operation.name", "embeddings") }, false},
		{"empty span agent falls to the resource", func(s, r pcommon.Map) {
			s.PutStr("gen_ai.agent.id", "")
			r.PutStr("gen_ai.agent.id", "agt-res")
		}, false},
		{"numeric agent id", func(s, _ pcommon.Map) { s.PutInt("gen_ai.agent.id", 12) }, true},
		{"array tenant", func(s, _ pcommon.Map) { s.PutEmptySlice("tenant.id").AppendEmpty().SetStr("x") }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			td := ptrace.NewTraces()
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", "svc")
			ss := rs.ScopeSpans().AppendEmpty()
			for i := range 2 {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, byte(i + 1)})
				sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i + 1)})
				sp.SetName("s")
				sp.SetStartTimestamp(start)
				sp.SetEndTimestamp(start + 1000)
				c.set(sp.Attributes(), rs.Resource().Attributes())
			}
			msg, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
			if err != nil {
				t.Fatal(err)
			}
			full, _, err := event.DecodeSpans(msg, event.EncodingProto, opts, nil)
			if err != nil {
				t.Fatalf("full decoder: %v", err)
			}
			sc := newSpanScanner(opts)
			if _, err := sc.scan(msg, nil); (err != nil) != c.fallback {
				t.Fatalf("scanner error %v, want fallback %v", err, c.fallback)
			}
			got, err := sc.decode(msg, event.EncodingProto, nil)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := project(got), project(full); !slices.Equal(g, w) {
				t.Fatalf("\ndecode %+v\nfull   %+v", g, w)
			}
		})
	}
}

// agree checks the detector's decision on msg against ingest's. Ingest
// stores a span message when event.DecodeSpans accepts it and
// dead-letters it whole otherwise (internal/ingest/spans.go: there is no
// per-span rejection), so DecodeSpans with the same options is ingest's
// decision. The detector must reject the same messages (a rejected message
// contributes nothing to its rules) and read the same fields from the
// others; the scanner itself must never accept a message DecodeSpans
// rejects. It reports whether the scanner read msg itself.
func agree(t *testing.T, name string, msg []byte, enc event.Encoding, opts event.SpanOptions) (scanned, accepted bool) {
	t.Helper()
	full, _, ferr := event.DecodeSpans(msg, enc, opts, nil)
	sc := newSpanScanner(opts)
	if enc == event.EncodingProto {
		if _, err := sc.scan(msg, nil); err == nil {
			scanned = true
			if ferr != nil {
				t.Fatalf("%s: the scanner read a message ingest rejects (%v)", name, ferr)
			}
		}
	}
	got, derr := sc.decode(msg, enc, nil)
	if (derr == nil) != (ferr == nil) {
		t.Fatalf("%s: detector error %v, ingest error %v", name, derr, ferr)
	}
	if ferr != nil {
		if dr, _ := event.ReasonOf(derr); dr != reasonOf(ferr) {
			t.Fatalf("%s: detector rejects for %v, ingest for %v", name, derr, ferr)
		}
		return scanned, false
	}
	if g, w := project(got), project(full); !slices.Equal(g, w) {
		t.Fatalf("%s:\ndecode %+v\nfull   %+v", name, g, w)
	}
	return scanned, true
}

func reasonOf(err error) event.Reason {
	r, _ := event.ReasonOf(err)
	return r
}

// The corpus of messages ingest's tests dead-letter (eventtest, one or
// more per reason, in both encodings, each under the limits it is meant
// for) and the valid messages it is built from: the detector decides on
// each as ingest does. Before the scanner checked what it does not read,
// it counted the tokens of most of these rejected messages.
func TestSpanScannerRejectsWhatIngestRejects(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	rejected := eventtest.RejectedSpans(now)
	valid := eventtest.ValidSpans(now)
	encs := map[event.Encoding]int{}
	for _, c := range append(rejected, valid...) {
		opts := eventtest.Options(now)
		if c.Opts != nil {
			c.Opts(&opts)
		}
		scanned, accepted := agree(t, c.Name, c.Msg, c.Encoding, opts)
		if accepted != (c.Reason == "") {
			t.Fatalf("%s: accepted %v, the corpus says %q", c.Name, accepted, c.Reason)
		}
		if accepted && c.Encoding == event.EncodingProto && !scanned {
			t.Errorf("%s: a valid message left to the full decoder: the fast path lost it", c.Name)
		}
		encs[c.Encoding]++
	}
	if encs[event.EncodingProto] < 40 || encs[event.EncodingJSON] < 30 {
		t.Fatalf("corpus too small: %v", encs)
	}
}

// Randomly damaged simulator and corpus messages: the detector decides on
// each as ingest does, and never panics.
func TestSpanScannerDamagedMessages(t *testing.T) {
	opts := scanOpts()
	r := rand.New(rand.NewPCG(1, 2))
	msgs := simTraces(t, 400)
	now := time.Date(2026, 1, 1, 23, 0, 0, 0, time.UTC) // an hour before scanOpts' clock
	for _, c := range append(eventtest.RejectedSpans(now), eventtest.ValidSpans(now)...) {
		if c.Encoding == event.EncodingProto && c.Opts == nil {
			msgs = append(msgs, c.Msg)
		}
	}
	accepted, scanned := 0, 0
	for i, orig := range msgs {
		for k := range 10 {
			msg := slices.Clone(orig)
			for range 1 + r.IntN(3) {
				msg[r.IntN(len(msg))] ^= byte(1 << r.IntN(8))
			}
			if k%3 == 0 {
				msg = msg[:r.IntN(len(msg))]
			}
			s, a := agree(t, fmt.Sprintf("message %d/%d", i, k), msg, event.EncodingProto, opts)
			if s {
				scanned++
			}
			if a {
				accepted++
			}
		}
	}
	t.Logf("%d of %d damaged messages accepted by ingest's decoder, %d read by the scanner itself", accepted, 10*len(msgs), scanned)
	if accepted == 0 || scanned == 0 {
		t.Fatal("no damaged message was accepted: the comparison proves nothing")
	}
}

func BenchmarkSpanDecode(b *testing.B) {
	cfg := sim.DefaultConfig()
	cfg.Tenants, cfg.AgentsPerTenant = 5, 10
	s, err := sim.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var msgs [][]byte
	for m := range s.All() {
		if m.IsTrace() {
			if msgs = append(msgs, m.Value); len(msgs) == 2000 {
				break
			}
		}
	}
	opts := scanOpts()
	for _, name := range []string{"full", "scanner"} {
		b.Run(name, func(b *testing.B) {
			sc := newSpanScanner(opts)
			var dst []event.Span
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var err error
				if name == "full" {
					dst, _, err = event.DecodeSpans(msgs[i%len(msgs)], event.EncodingProto, opts, dst[:0])
				} else {
					dst, err = sc.decode(msgs[i%len(msgs)], event.EncodingProto, dst[:0])
				}
				if err != nil {
					b.Fatal(fmt.Errorf("message %d: %w", i%len(msgs), err))
				}
				clear(dst)
			}
		})
	}
}

// pb is a protobuf field as the structure test parses, damages and
// re-encodes messages: a varint or fixed value, a length-delimited leaf
// (bytes) or a length-delimited message (sub).
type pb struct {
	num  uint64
	typ  int
	v    uint64
	b    []byte
	sub  []pb
	msg  bool
	long bool // tag and varint or length written one byte longer than needed
}

// otlpChild names the message type of field num of an OTLP trace message
// of type kind, "" when the field is not a message.
func otlpChild(kind string, num uint64) string {
	switch kind + "." + strconv.FormatUint(num, 10) {
	case "request.1":
		return "resourceSpans"
	case "resourceSpans.1":
		return "resource"
	case "resourceSpans.2":
		return "scopeSpans"
	case "resource.1", "scope.3", "span.9", "event.3", "link.4", "kvList.1":
		return "keyValue"
	case "resource.3":
		return "entityRef"
	case "scopeSpans.1":
		return "scope"
	case "scopeSpans.2":
		return "span"
	case "span.11":
		return "event"
	case "span.13":
		return "link"
	case "span.15":
		return "status"
	case "keyValue.2", "arrayValue.1":
		return "anyValue"
	case "anyValue.5":
		return "arrayValue"
	case "anyValue.6":
		return "kvList"
	}
	return ""
}

// parsePB parses a well-formed message of type kind.
func parsePB(t testing.TB, b []byte, kind string) []pb {
	t.Helper()
	var out []pb
	for pos := 0; pos < len(b); {
		tag, n := binary.Uvarint(b[pos:])
		if n <= 0 {
			t.Fatalf("%s: bad tag at %d", kind, pos)
		}
		pos += n
		f := pb{num: tag >> 3, typ: int(tag & 7)}
		switch f.typ {
		case 0:
			f.v, n = binary.Uvarint(b[pos:])
			pos += n
		case 1:
			f.v = binary.LittleEndian.Uint64(b[pos:])
			pos += 8
		case 5:
			f.v = uint64(binary.LittleEndian.Uint32(b[pos:]))
			pos += 4
		case 2:
			l, n := binary.Uvarint(b[pos:])
			pos += n
			payload := b[pos : pos+int(l)]
			pos += int(l)
			if child := otlpChild(kind, f.num); child != "" {
				f.msg, f.sub = true, parsePB(t, payload, child)
			} else {
				f.b = slices.Clone(payload)
			}
		default:
			t.Fatalf("%s: wire type %d", kind, f.typ)
		}
		out = append(out, f)
	}
	return out
}

func appendVarint(b []byte, v uint64, long bool) []byte {
	if !long {
		return binary.AppendUvarint(b, v)
	}
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v)|0x80, 0) // one redundant byte: still the same value
}

func encodePB(fields []pb) []byte {
	var b []byte
	for _, f := range fields {
		b = appendVarint(b, f.num<<3|uint64(f.typ), f.long)
		switch f.typ {
		case 0:
			b = appendVarint(b, f.v, f.long)
		case 1:
			b = binary.LittleEndian.AppendUint64(b, f.v)
		case 5:
			b = binary.LittleEndian.AppendUint32(b, uint32(f.v))
		case 2:
			payload := f.b
			if f.msg {
				payload = encodePB(f.sub)
			}
			b = appendVarint(b, uint64(len(payload)), f.long)
			b = append(b, payload...)
		}
	}
	return b
}

func clonePB(fields []pb) []pb {
	out := slices.Clone(fields)
	for i := range out {
		out[i].b = slices.Clone(out[i].b)
		out[i].sub = clonePB(out[i].sub)
	}
	return out
}

// pbMutation changes the field at i of its message, which it may grow or
// shrink.
type pbMutation struct {
	name string
	do   func(fields []pb, i int) []pb
}

func pbMutations() []pbMutation {
	set := func(name string, f func(*pb)) pbMutation {
		return pbMutation{name, func(fs []pb, i int) []pb { f(&fs[i]); return fs }}
	}
	retype := func(typ int, v uint64, b []byte) func(*pb) {
		return func(f *pb) { *f = pb{num: f.num, typ: typ, v: v, b: b} }
	}
	ms := []pbMutation{
		set("as varint", retype(0, 1, nil)),
		set("as fixed64", retype(1, 1<<62, nil)),
		set("as fixed32", retype(5, 1, nil)),
		set("as empty bytes", retype(2, 0, nil)),
		set("as one byte", retype(2, 0, []byte{'x'})),
		set("as eight bytes", retype(2, 0, []byte("abcdefgh"))),
		set("as sixteen bytes", retype(2, 0, []byte("abcdefghijklmnop"))),
		set("as a start group", retype(3, 0, nil)),
		set("as an end group", retype(4, 0, nil)),
		set("as wire type 7", retype(7, 0, nil)),
		set("number aliased beyond int32", func(f *pb) { f.num += 1 << 32 }),
		set("number beyond int32", func(f *pb) { f.num |= 1 << 31 }),
		set("written long", func(f *pb) { f.long = true }),
		set("bytes cut short", func(f *pb) {
			if len(f.b) > 0 {
				f.b = f.b[:len(f.b)-1]
			}
		}),
		set("bytes with 0xff", func(f *pb) {
			if f.typ == 2 && !f.msg {
				f.b = append(f.b, 0xff)
			}
		}),
		set("all zeros", func(f *pb) { clear(f.b) }),
		{"dropped", func(fs []pb, i int) []pb { return slices.Delete(fs, i, i+1) }},
		{"twice", func(fs []pb, i int) []pb { return slices.Insert(fs, i+1, clonePB(fs[i:i+1])...) }},
	}
	for _, u := range []pb{{num: 99, typ: 0, v: 300}, {num: 99, typ: 1}, {num: 99, typ: 2, b: []byte("u")}, {num: 99, typ: 5}} {
		ms = append(ms, pbMutation{"then unknown field of wire type " + strconv.Itoa(u.typ),
			func(fs []pb, i int) []pb { return slices.Insert(fs, i+1, u) }})
	}
	return ms
}

// mutatePB applies m to the field at path (indexes from the top) of a copy
// of msg.
func mutatePB(msg []pb, path []int, m pbMutation) []pb {
	msg = clonePB(msg)
	fields := &msg
	for _, i := range path[:len(path)-1] {
		fields = &(*fields)[i].sub
	}
	*fields = m.do(*fields, path[len(path)-1])
	return msg
}

// pbPaths lists the path of every field of msg, depth first.
func pbPaths(msg []pb, prefix []int, out [][]int) [][]int {
	for i, f := range msg {
		p := append(slices.Clone(prefix), i)
		out = append(out, p)
		out = pbPaths(f.sub, p, out)
	}
	return out
}

// structureTrace is a message with every field of every OTLP trace
// message pdata reads set, and each attribute value type the scanner
// reads, all within scanOpts' window: a base for structural damage.
func structureTrace(t testing.TB) []byte {
	t.Helper()
	at := time.Date(2026, 1, 1, 23, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) pcommon.Timestamp { return pcommon.NewTimestampFromTime(at.Add(d)) }
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.30.0")
	r := rs.Resource()
	r.Attributes().PutStr("service.name", "svc")
	r.Attributes().PutStr("org.id", "org-res")
	r.Attributes().PutStr(event.KeyAgentID, "agt-res")
	r.Attributes().PutInt("pid", 4242)
	r.SetDroppedAttributesCount(1)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.SetSchemaUrl("https://opentelemetry.io/schemas/1.30.0")
	ss.Scope().SetName("scope")
	ss.Scope().SetVersion("1.0")
	ss.Scope().Attributes().PutBool("scope.flag", true)
	ss.Scope().SetDroppedAttributesCount(2)
	for i := range 2 {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i + 1)})
		if i > 0 {
			sp.SetParentSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 1})
		}
		sp.TraceState().FromRaw("vendor=1")
		sp.SetName("chat m")
		sp.SetKind(ptrace.SpanKindClient)
		sp.SetFlags(1)
		sp.SetStartTimestamp(ts(time.Duration(i) * time.Second))
		sp.SetEndTimestamp(ts(time.Duration(i)*time.Second + time.Millisecond))
		a := sp.Attributes()
		a.PutStr(event.KeyOperationName, "chat")
		a.PutStr(event.KeyAgentID, "agt-span")
		a.PutStr("tenant.id", "tenant-span")
		a.PutInt(event.KeyInputTokens, 1_000_000)
		a.PutInt(event.KeyPromptTokens, 3)
		a.PutDouble(event.KeyOutputTokens, 12)
		a.PutStr(event.KeyCompletionTokens, "13")
		a.PutDouble("temperature", 0.5)
		a.PutBool("stream", true)
		a.PutEmptySlice(event.KeyFinishReasons).AppendEmpty().SetStr("stop")
		a.PutStr("note", "ünïcode")
		sp.SetDroppedAttributesCount(3)
		ev := sp.Events().AppendEmpty()
		ev.SetTimestamp(ts(time.Millisecond / 2))
		ev.SetName("retry")
		ev.Attributes().PutStr("attempt", "2")
		ev.Attributes().PutInt("backoff_ms", 250)
		ev.SetDroppedAttributesCount(1)
		sp.SetDroppedEventsCount(4)
		l := sp.Links().AppendEmpty()
		l.SetTraceID(pcommon.TraceID{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9})
		l.SetSpanID(pcommon.SpanID{8, 8, 8, 8, 8, 8, 8, 8})
		l.TraceState().FromRaw("k=v")
		l.Attributes().PutDouble("weight", 0.25)
		l.SetDroppedAttributesCount(1)
		l.SetFlags(1)
		sp.SetDroppedLinksCount(5)
		sp.Status().SetCode(ptrace.StatusCodeError)
		sp.Status().SetMessage("boom")
	}
	msg, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	// pdata has no setter for a resource's entity refs: add one.
	tree := parsePB(t, msg, "request")
	res := &tree[0].sub[slices.IndexFunc(tree[0].sub, func(f pb) bool { return f.num == 1 })]
	res.sub = append(res.sub, pb{num: 3, typ: 2, msg: true, sub: []pb{
		{num: 1, typ: 2, b: []byte("https://schema")}, {num: 2, typ: 2, b: []byte("service")},
		{num: 3, typ: 2, b: []byte("service.name")}, {num: 4, typ: 2, b: []byte("service.version")},
	}})
	return encodePB(tree)
}

// The scanner checks the structure itself, in the same walk that reads the
// fields (it used to run event.CheckSpansProto first): every field of
// every message type, damaged every way the wire format allows — another
// wire type, an id of another length, a number pdata truncates, groups,
// over-long varints, a field dropped or repeated, unknown fields — must
// get the same decision from the detector as from ingest, and the scanner
// must accept none that pdata's rules or DecodeSpans reject.
func TestSpanScannerAgreesOnDamagedStructure(t *testing.T) {
	opts := scanOpts()
	bases := map[string][]byte{"every field": structureTrace(t), "simulator": simTraces(t, 1)[0]}
	muts := pbMutations()
	var total, scanned, accepted, structural int
	for name, msg := range bases {
		if s, a := agree(t, name, msg, event.EncodingProto, opts); !s || !a {
			t.Fatalf("%s: the undamaged message is not read by the scanner (scanned %v, accepted %v)", name, s, a)
		}
		tree := parsePB(t, msg, "request")
		for _, path := range pbPaths(tree, nil, nil) {
			for _, m := range muts {
				damaged := encodePB(mutatePB(tree, path, m))
				s, a := agree(t, fmt.Sprintf("%s: field %v %s", name, path, m.name), damaged, event.EncodingProto, opts)
				total++
				if s {
					scanned++
				}
				if a {
					accepted++
				}
				if _, err := event.CheckSpansProto(damaged); err != nil {
					structural++
				}
			}
		}
	}
	t.Logf("%d damaged messages: %d rejected by the structure pass, %d accepted by ingest's decoder, %d read by the scanner itself",
		total, structural, accepted, scanned)
	if structural < total/10 || scanned < total/10 || accepted-scanned < total/20 {
		t.Fatal("too few damaged messages of some kind: the comparison proves little")
	}
}

// reversePB reverses the order of the fields of every message of msg, as
// an encoder that writes fields first to first would (pdata writes them
// last to first); repeated fields come out reversed too.
func reversePB(msg []pb) []pb {
	msg = clonePB(msg)
	slices.Reverse(msg)
	for i := range msg {
		msg[i].sub = reversePB(msg[i].sub)
	}
	return msg
}

// staleResource puts before each resource a first occurrence of it with
// every string value "stale": pdata merges the two, later attributes win,
// so no stale value may be read.
func staleResource(msg []pb) []pb {
	msg = clonePB(msg)
	for i := range msg {
		rs := &msg[i]
		j := slices.IndexFunc(rs.sub, func(f pb) bool { return f.num == 1 })
		if j < 0 {
			continue
		}
		stale := clonePB(rs.sub[j : j+1])
		for k := range stale[0].sub {
			for _, v := range stale[0].sub[k].sub {
				for x := range v.sub {
					if v.sub[x].num == 1 {
						v.sub[x].b = []byte("stale")
					}
				}
			}
		}
		rs.sub = slices.Insert(rs.sub, j, stale...)
	}
	return msg
}

// Encoders differ in field order (pdata writes the resource after the
// spans, a first-to-last encoder before), and a message may hold several
// resources and scopes, and several occurrences of one: the detector reads
// and decides alike in each case, under every attribute limit around the
// message's counts (a span's own, with its scope's, with its resource's).
func TestSpanScannerAgreesOnFieldOrder(t *testing.T) {
	start := pcommon.NewTimestampFromTime(time.Date(2026, 1, 1, 23, 0, 0, 0, time.UTC))
	td := ptrace.NewTraces()
	seq := byte(0)
	addSpan := func(ss ptrace.ScopeSpans, attrs map[string]string, extra int) {
		seq++
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, seq})
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, seq})
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(start + 1000)
		for k, v := range attrs {
			sp.Attributes().PutStr(k, v)
		}
		for i := range extra {
			sp.Attributes().PutInt("x"+strconv.Itoa(i), int64(i))
		}
		sp.Attributes().PutInt(event.KeyInputTokens, int64(seq))
	}
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("tenant.id", "tenant-r1")
	rs.Resource().Attributes().PutStr(event.KeyAgentID, "agt-r1")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().Attributes().PutStr("s1", "v")
	ss.Scope().Attributes().PutStr("s2", "v")
	addSpan(ss, nil, 0)
	addSpan(ss, map[string]string{"org.id": "org-2", event.KeyAgentID: "agt-2"}, 3)
	ss = rs.ScopeSpans().AppendEmpty()
	addSpan(ss, map[string]string{"tenant.id": "tenant-3"}, 6)
	lonely := rs.ScopeSpans().AppendEmpty().Scope().Attributes() // a scope without spans: its attributes count for none
	for i := range 20 {
		lonely.PutInt("lonely"+strconv.Itoa(i), 1)
	}
	rs = td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("org.id", "org-r2")
	addSpan(rs.ScopeSpans().AppendEmpty(), map[string]string{event.KeyAgentID: ""}, 1)
	addSpan(rs.ScopeSpans().AppendEmpty(), map[string]string{"tenant.id": "tenant-5", "org.id": "org-5"}, 2)
	msg, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	tree := parsePB(t, msg, "request")
	layouts := map[string][]byte{
		"as pdata writes it":            msg,
		"fields first to last":          encodePB(reversePB(tree)),
		"stale resource first":          encodePB(staleResource(tree)),
		"stale resource, first to last": encodePB(staleResource(reversePB(tree))),
	}
	tenants := map[string]bool{}
	accepted, limited := 0, 0
	for name, m := range layouts {
		for limit := 1; limit <= 16; limit++ {
			opts := scanOpts()
			opts.Limits.MaxAttributesPerSpan = limit
			s, a := agree(t, fmt.Sprintf("%s, at most %d attributes", name, limit), m, event.EncodingProto, opts)
			if a != s {
				t.Fatalf("%s, at most %d attributes: accepted %v, read by the scanner %v", name, limit, a, s)
			}
			if !a {
				limited++
				continue
			}
			accepted++
			got, err := newSpanScanner(opts).scan(m, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range got {
				tenants[sp.TenantID+"/"+sp.AgentID] = true
			}
		}
	}
	if accepted == 0 || limited == 0 {
		t.Fatalf("accepted %d, over the limit %d: the limits do not cut through the message", accepted, limited)
	}
	// Tenants and agents from the span, its resource, by key order, and the
	// stale first occurrence never.
	for _, want := range []string{"tenant-r1/agt-r1", "tenant-r1/agt-2", "tenant-3/agt-r1", "org-r2/", "tenant-5/"} {
		if !tenants[want] {
			t.Errorf("no span with tenant/agent %s among %v", want, tenants)
		}
	}
	for k := range tenants {
		if strings.Contains(k, "stale") {
			t.Errorf("a stale resource value was read: %s", k)
		}
	}
}

// ascii reads eight bytes at a time with an overlapping last word: every
// length, with a byte of 0x80 or more at every position or none.
func TestASCII(t *testing.T) {
	for n := range 40 {
		b := []byte(strings.Repeat("a~\x00\x7f", 10)[:n])
		if !ascii(b) {
			t.Fatalf("%q: not ASCII, says ascii", b)
		}
		for i := range n {
			for _, c := range []byte{0x80, 0xc3, 0xff} {
				d := slices.Clone(b)
				d[i] = c
				if ascii(d) {
					t.Fatalf("%q: ASCII, says ascii", d)
				}
			}
		}
	}
}

// FuzzSpanScanner: on any bytes the detector decides as ingest does and
// reads the same fields, and the scanner accepts nothing ingest rejects.
// Seeded with the structure test's message, simulator messages and the
// corpus; `go test -fuzz FuzzSpanScanner ./internal/detect` explores.
func FuzzSpanScanner(f *testing.F) {
	f.Add(structureTrace(f))
	for _, m := range simTraces(f, 3) {
		f.Add(m)
	}
	now := time.Date(2026, 1, 1, 23, 0, 0, 0, time.UTC) // an hour before scanOpts' clock
	for _, c := range append(eventtest.RejectedSpans(now), eventtest.ValidSpans(now)...) {
		if c.Encoding == event.EncodingProto && c.Opts == nil {
			f.Add(c.Msg)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		opts := scanOpts()
		opts.Limits.MaxAttributeValueBytes = 64 // reachable by the fuzzer
		opts.Limits.MaxAttributesPerSpan = 16
		agree(t, "fuzzed message", msg, event.EncodingProto, opts)
	})
}
