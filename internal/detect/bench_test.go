package detect

import (
	"time"

	"testing"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/sim"

	"github.com/agentaudit/agentaudit/internal/procstat"
)

// BenchmarkEngine measures the rule engine alone (decoded simulator
// traffic: audit events and their traces), in messages per second.
func BenchmarkEngine(b *testing.B) {
	cfg := sim.DefaultConfig()
	cfg.Tenants, cfg.AgentsPerTenant = 20, 50
	s, err := sim.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	dec, err := event.NewAuditDecoder(event.DefaultEventOptions())
	if err != nil {
		b.Fatal(err)
	}
	type msg struct {
		ev    *event.AuditEvent
		spans []event.Span
	}
	var msgs []msg
	for m := range s.All() {
		if m.IsTrace() {
			spans, _, err := event.DecodeSpans(m.Value, event.EncodingProto, event.DefaultSpanOptions(), nil)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, msg{spans: spans})
		} else {
			ev, err := dec.Decode(m.Value)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, msg{ev: &ev})
		}
		if len(msgs) == 50_000 {
			break
		}
	}
	rules, _ := ParseRules(nil)
	caps := StateCaps{Agents: 100_000, Tokens: 100_000, Parents: 100_000, Traces: 100_000, Suppressions: 100_000, Revoked: 100_000}
	e := newEngine(rules, caps, nil, nil)
	var outs []Outcome
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m := &msgs[i%len(msgs)]
		if m.ev != nil {
			outs = e.Event(m.ev, outs[:0])
		} else {
			outs = e.Spans(m.spans, outs[:0])
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkMessages measures what a worker does per message, Kafka aside:
// decode (the audit decoder, the span scanner) and the rules, on the
// simulator's traffic as the benchmark's load generator sends it (1,000
// agents, audit events and their trace messages interleaved). It reports
// the time per audit event with its share of trace messages (us/event)
// and the process's CPU time for it (cpu-us/event: steadier on a shared
// machine).
func BenchmarkMessages(b *testing.B) {
	cfg := sim.DefaultConfig()
	cfg.Seed = 42
	cfg.Tenants, cfg.AgentsPerTenant = 20, 50
	cfg.Start = time.Now().UTC().Add(-time.Minute)
	s, err := sim.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	type msg struct {
		trace bool
		value []byte
	}
	var msgs []msg
	events := 0
	for m := range s.All() {
		msgs = append(msgs, msg{trace: m.IsTrace(), value: m.Value})
		if !m.IsTrace() {
			events++
		}
		if len(msgs) == 60_000 {
			break
		}
	}
	dec, err := event.NewAuditDecoder(event.DefaultEventOptions())
	if err != nil {
		b.Fatal(err)
	}
	sc := newSpanScanner(event.DefaultSpanOptions())
	rules, _ := ParseRules(nil)
	caps := StateCaps{Agents: 200_000, Tokens: 500_000, Parents: 100_000, Traces: 200_000, Suppressions: 100_000, Revoked: 1_000_000}
	e := newEngine(rules, caps, nil, nil)
	var (
		outs    []Outcome
		scratch []event.Span
	)
	b.ReportAllocs()
	cpu := procstat.SelfCPU()
	for i := 0; b.Loop(); i++ {
		m := &msgs[i%len(msgs)]
		outs = outs[:0]
		if m.trace {
			scratch, err = sc.decode(m.value, event.EncodingProto, scratch[:0])
			if err != nil {
				b.Fatal(err)
			}
			outs = e.Spans(scratch, outs)
			clear(scratch)
			continue
		}
		ev, err := dec.Decode(m.value)
		if err != nil {
			b.Fatal(err)
		}
		outs = e.Event(&ev, outs)
	}
	cpu = procstat.SelfCPU() - cpu
	n := float64(b.N) * float64(events) / float64(len(msgs))
	b.ReportMetric(b.Elapsed().Seconds()/n*1e6, "us/event")
	if cpu > 0 {
		b.ReportMetric(cpu.Seconds()/n*1e6, "cpu-us/event")
	}
}
