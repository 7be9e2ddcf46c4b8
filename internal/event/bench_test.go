package event

import (
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/procstat"
	"github.com/agentaudit/agentaudit/internal/sim"
)

// BenchmarkDecodeSpansProto decodes agentTrace (one trace: invoke_agent with
// three execute_tool/chat children, 14-17 attributes each) and reports
// ns/span and allocs/span alongside the per-message numbers.
func BenchmarkDecodeSpansProto(b *testing.B) { benchmarkDecodeSpans(b, EncodingProto) }

func BenchmarkDecodeSpansJSON(b *testing.B) { benchmarkDecodeSpans(b, EncodingJSON) }

func benchmarkDecodeSpans(b *testing.B, enc Encoding) {
	msg := marshal(b, agentTrace(), enc)
	opts := testSpanOptions()
	var dst []Span
	dst, _, err := DecodeSpans(msg, enc, opts, dst)
	if err != nil {
		b.Fatal(err)
	}
	spans := len(dst)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	cpu, mallocs := procstat.SelfCPU(), mallocCount()
	for b.Loop() {
		clear(dst)
		dst, _, err = DecodeSpans(msg, enc, opts, dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	reportPerSpan(b, spans, procstat.SelfCPU()-cpu, mallocCount()-mallocs)
	b.ReportMetric(float64(len(msg))/float64(spans), "bytes/span")
}

// BenchmarkPdataUnmarshalProto is the floor: pdata's unmarshal alone.
func BenchmarkPdataUnmarshalProto(b *testing.B) {
	msg := marshal(b, agentTrace(), EncodingProto)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSpansReferenceProto is the same conversion on pdata's
// object model (reference_test.go): what DecodeSpans would cost on pdata.
func BenchmarkDecodeSpansReferenceProto(b *testing.B) {
	msg := marshal(b, agentTrace(), EncodingProto)
	opts := testSpanOptions()
	var dst []Span
	b.ReportAllocs()
	cpu, mallocs := procstat.SelfCPU(), mallocCount()
	for b.Loop() {
		clear(dst)
		var err error
		if dst, _, err = decodeSpansReference(msg, EncodingProto, opts, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
	reportPerSpan(b, len(dst), procstat.SelfCPU()-cpu, mallocCount()-mallocs)
}

func mallocCount() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// reportPerSpan reports wall and process CPU time (GC included) and
// allocations per span.
func reportPerSpan(b *testing.B, spans int, cpu time.Duration, mallocs uint64) {
	n := float64(b.N * spans)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/span")
	}
	b.ReportMetric(float64(mallocs)/n, "allocs/span")
}

// BenchmarkDecodeAuditEvent decodes a realistic audit event with the
// built-in validator, through an AuditDecoder as ingest and the detector do.
func BenchmarkDecodeAuditEvent(b *testing.B) {
	msg := []byte(fullEvent)
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	cpu := procstat.SelfCPU()
	for b.Loop() {
		if _, err := dec.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
	reportPerEvent(b, procstat.SelfCPU()-cpu)
}

// BenchmarkDecodeAuditEventSim decodes the simulator's audit events (as
// the detector benchmark's load generator sends them: compact JSON, about
// 930 bytes, six attributes, no escapes), cycling through 2,000 of them;
// fullEvent above is pretty-printed and exercises escapes instead.
func BenchmarkDecodeAuditEventSim(b *testing.B) {
	msgs := simAuditEvents(b, 2000)
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		b.Fatal(err)
	}
	size := 0
	for _, m := range msgs {
		if _, err := dec.Decode(m); err != nil {
			b.Fatal(err)
		}
		size += len(m)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size / len(msgs)))
	cpu := procstat.SelfCPU()
	for i := 0; b.Loop(); i++ {
		if _, err := dec.Decode(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
	}
	reportPerEvent(b, procstat.SelfCPU()-cpu)
}

// BenchmarkDecodeAuditEventSimShared is BenchmarkDecodeAuditEventSim
// through DecodeShared: the strings without escapes are not copied.
func BenchmarkDecodeAuditEventSimShared(b *testing.B) {
	msgs := simAuditEvents(b, 2000)
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msgs[0])))
	cpu := procstat.SelfCPU()
	for i := 0; b.Loop(); i++ {
		if _, err := dec.DecodeShared(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
	}
	reportPerEvent(b, procstat.SelfCPU()-cpu)
}

// simAuditEvents returns the first n audit event messages of the
// simulator (1,000 agents, timestamps just before testNow).
func simAuditEvents(tb testing.TB, n int) [][]byte {
	tb.Helper()
	cfg := sim.DefaultConfig()
	cfg.Seed = 42
	cfg.Tenants, cfg.AgentsPerTenant = 20, 50
	cfg.Start = testNow.Add(-time.Hour)
	s, err := sim.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	var msgs [][]byte
	for m := range s.All() {
		if m.IsTrace() {
			continue
		}
		if msgs = append(msgs, m.Value); len(msgs) == n {
			break
		}
	}
	if len(msgs) < n {
		tb.Fatalf("the simulator produced %d audit events, want %d", len(msgs), n)
	}
	return msgs
}

// BenchmarkDecodeAuditEventWithSchema adds the JSON Schema library's
// validation (EventOptions.ValidateWithSchema): the cost the built-in
// validator avoids.
func BenchmarkDecodeAuditEventWithSchema(b *testing.B) {
	msg := []byte(fullEvent)
	opts := testEventOptions()
	opts.ValidateWithSchema = true
	dec, err := NewAuditDecoder(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	cpu := procstat.SelfCPU()
	for b.Loop() {
		if _, err := dec.Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
	reportPerEvent(b, procstat.SelfCPU()-cpu)
}

func reportPerEvent(b *testing.B, cpu time.Duration) {
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
	}
}
