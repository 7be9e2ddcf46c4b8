package sim_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/sim"
	"github.com/agentaudit/agentaudit/schema"
)

func TestDeterminism(t *testing.T) {
	for _, enc := range []string{sim.EncodingProto, sim.EncodingJSON} {
		t.Run(enc, func(t *testing.T) {
			cfg := allAttacks()
			cfg.SpanEncoding = enc
			n := scale(20000)
			a := take(t, newSim(t, cfg), n)
			b := take(t, newSim(t, cfg), n)
			for i := range a {
				if a[i].Topic != b[i].Topic || !bytes.Equal(a[i].Key, b[i].Key) ||
					!bytes.Equal(a[i].Value, b[i].Value) || !a[i].Time.Equal(b[i].Time) {
					t.Fatalf("message %d differs between two sims with seed %d", i, cfg.Seed)
				}
			}
			cfg.Seed++
			c := take(t, newSim(t, cfg), n)
			same := 0
			for i := range a {
				if bytes.Equal(a[i].Value, c[i].Value) {
					same++
				}
			}
			if same > 0 {
				t.Errorf("%d of %d messages identical across seeds %d and %d", same, n, cfg.Seed-1, cfg.Seed)
			}
		})
	}
}

func TestWorkloadDeterministicAndExact(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cfg            sim.Config
		traces, events int
	}{
		{"benign", sim.DefaultConfig(), 2000, 1600},
		{"attacks", slowAttacks(), 5000, 4000},
		{"more events than tool spans", sim.DefaultConfig(), 100, 450},
		{"no events", sim.DefaultConfig(), 300, 0},
		{"no traces", sim.DefaultConfig(), 0, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w1, err := sim.NewWorkload(tc.cfg, tc.traces, tc.events)
			if err != nil {
				t.Fatal(err)
			}
			w2, err := sim.NewWorkload(tc.cfg, tc.traces, tc.events)
			if err != nil {
				t.Fatal(err)
			}
			if len(w1.Messages) != tc.traces+tc.events {
				t.Fatalf("got %d messages, want %d", len(w1.Messages), tc.traces+tc.events)
			}
			if w1.Stats.Traces != int64(tc.traces) || w1.Stats.Events != int64(tc.events) {
				t.Errorf("stats %v, want %d traces and %d events", w1.Stats, tc.traces, tc.events)
			}
			for i := range w1.Messages {
				if !bytes.Equal(w1.Messages[i].Value, w2.Messages[i].Value) {
					t.Fatalf("message %d differs between two workloads", i)
				}
				if i > 0 && w1.Messages[i].Time.Before(w1.Messages[i-1].Time) {
					t.Fatalf("message %d at %v precedes message %d at %v", i, w1.Messages[i].Time, i-1, w1.Messages[i-1].Time)
				}
			}
			if len(tc.cfg.Attacks.Kinds) > 0 {
				for _, k := range tc.cfg.Attacks.Kinds {
					if w1.Stats.Attacks[k] == 0 {
						t.Errorf("no %s attack in the workload", k)
					}
				}
				checkAttacks(t, tc.cfg, w1.Messages, w1.Truth, w1.Limits)
			}
			t.Logf("%v", w1.Stats)
		})
	}
}

// slowAttacks is allAttacks at 5 traces per simulated second: every kind
// within 5,000 traces.
func slowAttacks() sim.Config {
	cfg := allAttacks()
	cfg.TraceRate = 5
	return cfg
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*sim.Config)
		field string // "" = valid
	}{
		{"default", func(*sim.Config) {}, ""},
		{"all attacks", func(c *sim.Config) { c.Attacks.Kinds = sim.AllAttackKinds }, ""},
		{"no tenants", func(c *sim.Config) { c.Tenants = 0 }, "tenants"},
		{"no agents", func(c *sim.Config) { c.AgentsPerTenant = 0 }, "agents_per_tenant"},
		{"no start", func(c *sim.Config) { c.Start = time.Time{} }, "start"},
		{"no rate", func(c *sim.Config) { c.TraceRate = 0 }, "trace_rate"},
		{"bad encoding", func(c *sim.Config) { c.SpanEncoding = "otlp_xml" }, "span_encoding"},
		{"ratio", func(c *sim.Config) { c.DeprecatedKeyRatio = 1.5 }, "deprecated_key_ratio"},
		{"unknown attack", func(c *sim.Config) { c.Attacks.Kinds = []sim.AttackKind{"ddos"} }, "attacks.kinds"},
		{"cross tenant needs two", func(c *sim.Config) {
			c.Tenants = 1
			c.Attacks.Kinds = []sim.AttackKind{sim.AttackCrossTenant}
		}, "attacks.kinds"},
		{"interval", func(c *sim.Config) {
			c.Attacks.Kinds = []sim.AttackKind{sim.AttackRateBurst}
			c.Attacks.Interval = 0
		}, "attacks.interval"},
		{"burst factor", func(c *sim.Config) {
			c.Attacks.Kinds = []sim.AttackKind{sim.AttackRateBurst}
			c.Attacks.BurstFactor = 1
		}, "attacks.burst_factor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sim.DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("valid config rejected: %v", err)
			case tc.field != "" && err == nil:
				t.Fatalf("invalid %s accepted", tc.field)
			case tc.field != "" && !strings.Contains(err.Error(), tc.field+":"):
				t.Errorf("error %q does not name %s", err, tc.field)
			case tc.field != "" && !errors.Is(err, sim.ErrInvalidConfig) && !errors.Is(err, sim.ErrUnknownAttack):
				t.Errorf("error %q is neither ErrInvalidConfig nor ErrUnknownAttack", err)
			}
			if _, err := sim.New(cfg); (err == nil) != (tc.field == "") {
				t.Errorf("New: err = %v", err)
			}
		})
	}
}

func TestParseAttackKinds(t *testing.T) {
	for in, want := range map[string][]sim.AttackKind{
		"":                                nil,
		"none":                            nil,
		"all":                             sim.AllAttackKinds,
		"rate_burst":                      {sim.AttackRateBurst},
		" cross_tenant, stale_binding ":   {sim.AttackCrossTenant, sim.AttackStaleBinding},
		"scope_growth,scope_growth":       {sim.AttackScopeGrowth},
		"scope_probing,scope_escalation ": {sim.AttackScopeProbing, sim.AttackScopeEscalation},
	} {
		got, err := sim.ParseAttackKinds(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseAttackKinds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := sim.ParseAttackKinds("rate_burst,ddos"); !errors.Is(err, sim.ErrUnknownAttack) {
		t.Errorf("unknown kind: err = %v, want ErrUnknownAttack", err)
	}
}

// toolSpan is what the tests learn from one execute_tool span.
type toolSpan struct {
	traceID, spanID, tool, args string
	start                       time.Time
}

func TestTraceShape(t *testing.T) {
	for _, enc := range []string{sim.EncodingProto, sim.EncodingJSON} {
		t.Run(enc, func(t *testing.T) {
			cfg := allAttacks()
			cfg.SpanEncoding = enc
			s := newSim(t, cfg)
			msgs := take(t, s, scale(30000))
			var (
				spans, bytesTotal, deprecated, traces int
				ops                                   = map[string]int{}
				minAttrs, maxAttrs                    = 99, 0
				tenants                               = map[string]bool{}
			)
			for _, m := range msgs {
				if m.Topic != cfg.SpansTopic {
					continue
				}
				traces++
				td := decodeTraces(t, m, enc)
				if td.ResourceSpans().Len() != 1 || td.ResourceSpans().At(0).ScopeSpans().Len() != 1 {
					t.Fatalf("message holds %d resource spans, want one trace in one resource and scope", td.ResourceSpans().Len())
				}
				rs := td.ResourceSpans().At(0)
				tenant, ok := rs.Resource().Attributes().Get("tenant.id")
				if !ok || tenant.Str() == "" {
					t.Fatal("resource has no tenant.id")
				}
				tenants[tenant.Str()] = true
				for _, k := range []string{"service.name", "service.version", "deployment.environment.name", "host.name", "cloud.region"} {
					if _, ok := rs.Resource().Attributes().Get(k); !ok {
						t.Fatalf("resource has no %s", k)
					}
				}
				ss := rs.ScopeSpans().At(0).Spans()
				if n := ss.Len(); n < 3 || n > 5 {
					t.Fatalf("trace has %d spans, want 3–5", n)
				}
				if m.Spans != ss.Len() {
					t.Errorf("Message.Spans = %d, trace has %d", m.Spans, ss.Len())
				}
				root := ss.At(0)
				if string(m.Key) != root.TraceID().String() {
					t.Fatalf("key %s, trace id %s", m.Key, root.TraceID())
				}
				if !root.ParentSpanID().IsEmpty() {
					t.Fatal("root span has a parent")
				}
				for i := range ss.Len() {
					sp := ss.At(i)
					if sp.TraceID() != root.TraceID() {
						t.Fatal("two traces in one message")
					}
					if i > 0 && sp.ParentSpanID() != root.SpanID() {
						t.Fatal("child span's parent is not the root")
					}
					if sp.EndTimestamp() < sp.StartTimestamp() || sp.StartTimestamp() < root.StartTimestamp() || sp.EndTimestamp() > root.EndTimestamp() {
						t.Fatalf("span %s times outside its root", sp.Name())
					}
					attrs := sp.Attributes()
					n := attrs.Len()
					minAttrs, maxAttrs = min(minAttrs, n), max(maxAttrs, n)
					if n < 11 || n > 17 {
						t.Fatalf("span %s has %d attributes, want 11–17", sp.Name(), n)
					}
					op, _ := attrs.Get("gen_ai.operation.name")
					ops[op.Str()]++
					if _, ok := attrs.Get("gen_ai.system"); ok && i == 0 {
						deprecated++
					}
					switch op.Str() {
					case "invoke_agent":
						name, _ := attrs.Get("gen_ai.agent.name")
						mustAttrs(t, sp, "gen_ai.agent.id", "gen_ai.agent.version", "gen_ai.conversation.id")
						if i != 0 || sp.Name() != "invoke_agent "+name.Str() {
							t.Fatalf("invoke_agent span %d named %q", i, sp.Name())
						}
					case "chat":
						mustAttrs(t, sp, "gen_ai.request.model", "gen_ai.response.model", "gen_ai.response.id", "gen_ai.response.finish_reasons")
						if !hasAny(sp, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens") {
							t.Fatal("chat span without input tokens")
						}
					case "execute_tool":
						mustAttrs(t, sp, "gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.tool.type", "gen_ai.tool.call.arguments")
					default:
						t.Fatalf("span %q: operation %q", sp.Name(), op.Str())
					}
					if i > 0 && !hasAny(sp, "gen_ai.provider.name", "gen_ai.system") && op.Str() == "chat" {
						t.Fatal("chat span without a provider")
					}
				}
				spans += ss.Len()
				if enc == sim.EncodingProto {
					bytesTotal += len(m.Value)
				}
			}
			st := s.Stats()
			t.Logf("%d traces, %d spans (%.2f spans/trace), ops %v, attributes per span %d–%d, deprecated keys in %.1f%% of traces, %d tenants, %.0f bytes/span",
				traces, spans, float64(spans)/float64(traces), ops, minAttrs, maxAttrs, 100*float64(deprecated)/float64(traces), len(tenants), st.BytesPerSpan())
			if enc == sim.EncodingProto {
				if b := float64(bytesTotal) / float64(spans); b < 600 || b > 800 {
					t.Errorf("%.0f protobuf bytes per span, want 600–800", b)
				}
			}
			if d := float64(deprecated) / float64(traces); d < 0.02 || d > 0.1 {
				t.Errorf("deprecated keys in %.1f%% of traces, want about %.0f%%", 100*d, 100*cfg.DeprecatedKeyRatio)
			}
			if len(tenants) != cfg.Tenants {
				t.Errorf("spans of %d tenants, want %d", len(tenants), cfg.Tenants)
			}
		})
	}
}

func mustAttrs(t *testing.T, sp ptrace.Span, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := sp.Attributes().Get(k); !ok || v.AsString() == "" {
			t.Fatalf("span %q has no %s", sp.Name(), k)
		}
	}
}

func hasAny(sp ptrace.Span, keys ...string) bool {
	for _, k := range keys {
		if _, ok := sp.Attributes().Get(k); ok {
			return true
		}
	}
	return false
}

func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.AuditEventV1))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schema.AuditEventV1ID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schema.AuditEventV1ID)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// TestEventsMatchSchemaAndSpans: every event validates against the JSON
// Schema; every execute_tool span has exactly one event with its ids,
// start time, tool and argument hash; every traced event has its span.
func TestEventsMatchSchemaAndSpans(t *testing.T) {
	sch := compileSchema(t)
	cfg := allAttacks()
	s := newSim(t, cfg)
	msgs := take(t, s, scale(40000))
	msgs = append(msgs, s.Drain()...) // every trace of every event
	toolSpans := map[string]toolSpan{}
	var events []auditEvent
	seenIDs := map[string]bool{}
	for _, m := range msgs {
		if m.Topic == cfg.EventsTopic {
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Value))
			if err != nil {
				t.Fatalf("event is not JSON: %v", err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Fatalf("event does not validate: %v\n%s", err, m.Value)
			}
			e := decodeEvent(t, m)
			if want := e.TenantID + "/" + e.AgentID; string(m.Key) != want {
				t.Fatalf("event key %q, want %q", m.Key, want)
			}
			if seenIDs[e.EventID] {
				t.Fatalf("event id %s twice", e.EventID)
			}
			seenIDs[e.EventID] = true
			if !m.Time.Equal(e.TS) {
				t.Fatalf("message time %v, event ts %v", m.Time, e.TS)
			}
			events = append(events, e)
			continue
		}
		td := decodeTraces(t, m, cfg.SpanEncoding)
		ss := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
		for i := range ss.Len() {
			sp := ss.At(i)
			if op, _ := sp.Attributes().Get("gen_ai.operation.name"); op.Str() != "execute_tool" {
				continue
			}
			tool, _ := sp.Attributes().Get("gen_ai.tool.name")
			args, _ := sp.Attributes().Get("gen_ai.tool.call.arguments")
			ts := toolSpan{traceID: sp.TraceID().String(), spanID: sp.SpanID().String(), tool: tool.Str(), args: args.Str(), start: sp.StartTimestamp().AsTime()}
			toolSpans[ts.traceID+"/"+ts.spanID] = ts
		}
	}
	matched := 0
	for _, e := range events {
		ts, ok := toolSpans[e.TraceID+"/"+e.SpanID]
		if !ok {
			t.Fatalf("event %s: no execute_tool span %s/%s", e.EventID, e.TraceID, e.SpanID)
		}
		delete(toolSpans, e.TraceID+"/"+e.SpanID)
		sum := sha256.Sum256([]byte(ts.args))
		switch {
		case ts.tool != e.ToolName:
			t.Fatalf("event %s: tool %s, span tool %s", e.EventID, e.ToolName, ts.tool)
		case hex.EncodeToString(sum[:]) != e.ToolParamsHash:
			t.Fatalf("event %s: tool_params_hash is not the SHA-256 of the span's arguments", e.EventID)
		case !ts.start.Equal(e.TS):
			t.Fatalf("event %s: ts %v, span start %v", e.EventID, e.TS, ts.start)
		}
		matched++
	}
	if len(toolSpans) > 0 {
		t.Fatalf("%d execute_tool spans without an event", len(toolSpans))
	}
	t.Logf("%d events validated and matched to their execute_tool spans", matched)
}

// TestTraceKeyIsTraceID: a trace message's key is the hex of its trace id.
func TestTraceKeyIsTraceID(t *testing.T) {
	w, err := sim.NewWorkload(sim.DefaultConfig(), 50, 40)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range w.Messages {
		if !m.IsTrace() {
			continue
		}
		td := decodeTraces(t, m, sim.EncodingProto)
		id := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceID()
		if want := hex.EncodeToString(id[:]); string(m.Key) != want || id == pcommon.NewTraceIDEmpty() {
			t.Fatalf("key %s, trace id %s", m.Key, want)
		}
	}
}

func TestMaxTraces(t *testing.T) {
	cfg := allAttacks()
	cfg.MaxTraces = scale(5000)
	s := newSim(t, cfg)
	var traces int
	for m := range s.All() {
		if m.IsTrace() {
			traces++
		}
	}
	if traces != cfg.MaxTraces {
		t.Errorf("got %d traces, want %d", traces, cfg.MaxTraces)
	}
	if _, ok := s.Next(); ok {
		t.Error("Next after the end returned a message")
	}
	st := s.Stats()
	if st.Traces != int64(traces) {
		t.Errorf("stats count %d traces, want %d", st.Traces, traces)
	}
	if len(s.Truth()) == 0 {
		t.Error("no attacks")
	}
	t.Logf("%v", st)
}

func TestAgents(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Tenants, cfg.AgentsPerTenant = 15, 3
	s := newSim(t, cfg)
	agents := s.Agents()
	if len(agents) != 45 {
		t.Fatalf("%d agents, want 45", len(agents))
	}
	tenants := map[string]int{}
	ids := map[string]bool{}
	for _, a := range agents {
		tenants[a.TenantID]++
		if ids[a.AgentID] {
			t.Errorf("agent id %s twice", a.AgentID)
		}
		ids[a.AgentID] = true
		if !strings.HasSuffix(a.ParentIdentity, "@"+a.TenantID+".example") {
			t.Errorf("agent %s of %s has parent %s", a.AgentID, a.TenantID, a.ParentIdentity)
		}
		if !isSubset(a.Scopes, a.ParentScopes) || len(a.Scopes) >= len(a.ParentScopes) {
			t.Errorf("agent %s scopes %v are not a strict subset of its parent's %v", a.AgentID, a.Scopes, a.ParentScopes)
		}
		if len(a.Tools) == 0 {
			t.Errorf("agent %s has no tools", a.AgentID)
		}
	}
	if len(tenants) != 15 || tenants["acme"] != 3 || tenants["globex"] != 3 {
		t.Errorf("tenants %v", tenants)
	}
}

func isSubset(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}

func TestGenerationSpeed(t *testing.T) {
	traces, events := scale(50000), scale(40000)
	start := time.Now()
	w, err := sim.NewWorkload(sim.DefaultConfig(), traces, events)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("workload of %d traces (%d spans, %.0f B/span) + %d events in %v: %.0f spans/s, %.0f messages/s",
		traces, w.Stats.Spans, w.Stats.BytesPerSpan(), events, d.Round(time.Millisecond),
		float64(w.Stats.Spans)/d.Seconds(), float64(traces+events)/d.Seconds())
}

// BenchmarkBenchmarkWorkload generates the ingest benchmark's preload:
// ~1,000,000 spans in 250,000 traces and 200,000 audit events.
func BenchmarkBenchmarkWorkload(b *testing.B) {
	for b.Loop() {
		w, err := sim.NewWorkload(sim.DefaultConfig(), 250_000, 200_000)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(w.Stats.Spans), "spans")
		b.ReportMetric(w.Stats.BytesPerSpan(), "B/span")
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/workload")
}
