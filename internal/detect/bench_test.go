package detect

import (
	"testing"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/sim"
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
