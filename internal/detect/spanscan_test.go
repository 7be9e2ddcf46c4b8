package detect

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/event"
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

func simTraces(t *testing.T, n int) [][]byte {
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

// Randomly damaged simulator messages: whenever the full decoder accepts
// one, decode must give the same fields (the scanner either reads it alike
// or falls back); it never panics on any.
func TestSpanScannerDamagedMessages(t *testing.T) {
	opts := scanOpts()
	sc := newSpanScanner(opts)
	r := rand.New(rand.NewPCG(1, 2))
	accepted, scanned := 0, 0
	for i, orig := range simTraces(t, 400) {
		for k := range 10 {
			msg := slices.Clone(orig)
			for range 1 + r.IntN(3) {
				msg[r.IntN(len(msg))] ^= byte(1 << r.IntN(8))
			}
			if k%3 == 0 {
				msg = msg[:r.IntN(len(msg))]
			}
			full, _, ferr := event.DecodeSpans(msg, event.EncodingProto, opts, nil)
			if _, err := sc.scan(msg, nil); err == nil {
				scanned++
			}
			got, err := sc.decode(msg, event.EncodingProto, nil)
			if ferr != nil {
				continue
			}
			accepted++
			if err != nil {
				t.Fatalf("message %d/%d: decode failed where the full decoder accepted: %v", i, k, err)
			}
			if g, w := project(got), project(full); !slices.Equal(g, w) {
				t.Fatalf("message %d/%d:\ndecode %+v\nfull   %+v", i, k, g, w)
			}
		}
	}
	t.Logf("%d damaged messages accepted by the full decoder, %d read by the scanner itself", accepted, scanned)
	if accepted == 0 {
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
