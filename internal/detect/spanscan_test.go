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
