package detect

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/agentaudit/agentaudit/internal/event"
)

// Rule fixtures: testdata/fixtures/*.yaml, each a list of cases of input
// audit events and spans (in consumption order) paired with the expected
// detections (their latest version). Event fields left out take the case's
// or the file's defaults.

type fixtureFile struct {
	Defaults fixtureEvent  `yaml:"defaults"`
	Cases    []fixtureCase `yaml:"cases"`
}

type fixtureCase struct {
	Name     string         `yaml:"name"`
	RuleFile yaml.Node      `yaml:"rule_file"` // a rule-file override
	Negative []string       `yaml:"negative"`  // rules that must not fire
	Defaults fixtureEvent   `yaml:"defaults"`
	Input    []fixtureInput `yaml:"input"`
	Expect   []fixtureWant  `yaml:"expect"`
}

type fixtureInput struct {
	Event *fixtureEvent `yaml:"event"`
	Span  *fixtureSpan  `yaml:"span"`
}

type fixtureEvent struct {
	ID             int      `yaml:"id"`
	TS             string   `yaml:"ts"` // RFC 3339, or "+90s" after the case start
	Tenant         string   `yaml:"tenant"`
	Agent          string   `yaml:"agent"`
	Parent         string   `yaml:"parent"`
	ParentScope    *string  `yaml:"parent_scope"`
	Token          string   `yaml:"token"`
	TokenType      string   `yaml:"token_type"`
	Delegation     []string `yaml:"delegation"`
	Required       []string `yaml:"required"`
	Tool           string   `yaml:"tool"`
	ResourceTenant *string  `yaml:"resource_tenant"`
	Decision       string   `yaml:"decision"`
	Trace          string   `yaml:"trace"`
	Repeat         int      `yaml:"repeat"` // this many events, ids id, id+1, …, 1 s apart
}

type fixtureSpan struct {
	TS     string `yaml:"ts"`
	Trace  string `yaml:"trace"`
	Tenant string `yaml:"tenant"`
	Agent  string `yaml:"agent"` // on the span itself ("" = join by trace)
	Op     string `yaml:"op"`
	Input  uint64 `yaml:"input_tokens"`
	Output uint64 `yaml:"output_tokens"`
}

type fixtureWant struct {
	Rule       string `yaml:"rule"`
	Severity   string `yaml:"severity"`
	Tenant     string `yaml:"tenant"`
	Agent      string `yaml:"agent"`
	Token      string `yaml:"token"`
	Evidence   []int  `yaml:"evidence"` // event ids, in order
	Suppressed uint32 `yaml:"suppressed"`
	Notify     bool   `yaml:"notify"`
	Revoke     bool   `yaml:"revoke"`
}

var fixtureStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fixtureEventID(n int) uuid.UUID {
	return uuid.MustParse(fmt.Sprintf("00000000-0000-4000-8000-%012d", n))
}

func (f fixtureEvent) over(d fixtureEvent) fixtureEvent {
	if f.TS == "" {
		f.TS = d.TS
	}
	str := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	str(&f.Tenant, d.Tenant)
	str(&f.Agent, d.Agent)
	str(&f.Parent, d.Parent)
	str(&f.Token, d.Token)
	str(&f.TokenType, d.TokenType)
	str(&f.Tool, d.Tool)
	str(&f.Decision, d.Decision)
	if f.ParentScope == nil {
		f.ParentScope = d.ParentScope
	}
	if f.ResourceTenant == nil {
		f.ResourceTenant = d.ResourceTenant
	}
	if f.Delegation == nil {
		f.Delegation = d.Delegation
	}
	if f.Required == nil {
		f.Required = d.Required
	}
	return f
}

func fixtureTime(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "" {
		return fixtureStart
	}
	if strings.HasPrefix(s, "+") {
		d, err := time.ParseDuration(s[1:])
		if err != nil {
			t.Fatalf("ts %q: %v", s, err)
		}
		return fixtureStart.Add(d)
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("ts %q: %v", s, err)
	}
	return ts
}

func (f fixtureEvent) events(t *testing.T) []event.AuditEvent {
	n := max(f.Repeat, 1)
	var out []event.AuditEvent
	for i := range n {
		ev := event.AuditEvent{
			EventID: fixtureEventID(f.ID + i), TS: fixtureTime(t, f.TS).Add(time.Duration(i) * time.Second),
			TenantID: f.Tenant, AgentID: f.Agent, ParentIdentity: f.Parent, TokenID: f.Token, TokenType: f.TokenType,
			DelegationScope: f.Delegation, RequiredScopes: f.Required, ToolName: f.Tool,
			PolicyDecision: f.Decision, TraceID: f.Trace, Attributes: map[string]string{},
		}
		if f.ResourceTenant != nil {
			ev.ResourceTenantID = *f.ResourceTenant
		} else {
			ev.ResourceTenantID = f.Tenant
		}
		if f.ParentScope != nil {
			ev.Attributes["delegation.parent_scope"] = *f.ParentScope
		}
		out = append(out, ev)
	}
	return out
}

func testCaps() StateCaps {
	return StateCaps{Agents: 1000, Tokens: 1000, Parents: 1000, Traces: 1000, Suppressions: 1000, Revoked: 1000}
}

func TestRuleFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/fixtures/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	covered := map[string][2]bool{} // rule → positive, negative case seen
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var ff fixtureFile
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&ff); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, c := range ff.Cases {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml")+"/"+c.Name, func(t *testing.T) {
				var over []byte
				if c.RuleFile.Kind != 0 {
					over, _ = yaml.Marshal(&c.RuleFile)
				}
				rules, err := ParseRules(over)
				if err != nil {
					t.Fatal(err)
				}
				e := newEngine(rules, testCaps(), nil, func() time.Time { return fixtureStart })
				var outs []Outcome
				for _, in := range c.Input {
					switch {
					case in.Event != nil:
						for _, ev := range in.Event.over(c.Defaults.over(ff.Defaults)).events(t) {
							outs = e.Event(&ev, outs)
						}
					case in.Span != nil:
						s := in.Span
						outs = e.Spans([]event.Span{{
							TraceID: s.Trace, SpanID: "0000000000000001", TenantID: s.Tenant, AgentID: s.Agent,
							OperationName: s.Op, StartTime: fixtureTime(t, s.TS), InputTokens: s.Input, OutputTokens: s.Output,
						}}, outs)
					}
				}
				got := latest(outs)
				if len(got) != len(c.Expect) {
					t.Fatalf("got %d detections, want %d:\n%s", len(got), len(c.Expect), describe(got))
				}
				for i, w := range c.Expect {
					g := got[i]
					var ev []int
					for _, id := range g.d.EvidenceEventIDs {
						var n int
						fmt.Sscanf(id.String()[24:], "%d", &n)
						ev = append(ev, n)
					}
					gw := fixtureWant{
						Rule: g.d.RuleID, Severity: string(g.d.Severity), Tenant: g.d.TenantID, Agent: g.d.AgentID, Token: g.d.TokenID,
						Evidence: ev, Suppressed: g.d.SuppressedCount, Notify: g.notify, Revoke: g.revoke,
					}
					if w.Evidence == nil {
						gw.Evidence = nil
					}
					if fmt.Sprint(gw) != fmt.Sprint(w) {
						t.Errorf("detection %d:\n got  %+v\n want %+v", i, gw, w)
					}
					if g.d.ID != DetectionID(g.d.RuleID, strings.TrimPrefix(g.d.Attributes[AttrSuppressionKey], g.d.RuleID+"|"), firstEvidence(g.d)) && g.d.RuleID != RuleRateLimit {
						t.Errorf("detection %d: id %s is not the UUIDv5 of rule, actor and first evidence", i, g.d.ID)
					}
				}
				for _, w := range c.Expect {
					p := covered[w.Rule]
					p[0] = true
					covered[w.Rule] = p
				}
				for _, r := range c.Negative {
					for _, g := range got {
						if g.d.RuleID == r {
							t.Errorf("rule %s fired but the case says it must not", r)
						}
					}
					p := covered[r]
					p[1] = true
					covered[r] = p
				}
			})
		}
	}
	for _, id := range RuleIDs {
		if !covered[id][0] || !covered[id][1] {
			t.Errorf("rule %s: fixtures need a positive and a negative case (have %v)", id, covered[id])
		}
	}
}

func firstEvidence(d event.Detection) string {
	if len(d.EvidenceEventIDs) == 0 {
		return ""
	}
	return d.EvidenceEventIDs[0].String()
}

type finalDetection struct {
	d              event.Detection
	notify, revoke bool
}

// latest folds outcomes into the latest version of each detection, in order
// of first appearance, with the actions ever requested.
func latest(outs []Outcome) []finalDetection {
	var order []uuid.UUID
	m := map[uuid.UUID]*finalDetection{}
	for _, o := range outs {
		f, ok := m[o.Detection.ID]
		if !ok {
			if !o.New {
				panic("update before new detection")
			}
			f = &finalDetection{}
			m[o.Detection.ID] = f
			order = append(order, o.Detection.ID)
		}
		if o.Detection.Version <= f.d.Version {
			panic("version did not grow")
		}
		f.d = o.Detection
		f.notify = f.notify || o.Notify
		f.revoke = f.revoke || o.Revoke
	}
	out := make([]finalDetection, 0, len(order))
	for _, id := range order {
		out = append(out, *m[id])
	}
	return out
}

func describe(ds []finalDetection) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "  %s %s tenant=%s agent=%s token=%s suppressed=%d: %s\n", d.d.RuleID, d.d.Severity, d.d.TenantID, d.d.AgentID, d.d.TokenID, d.d.SuppressedCount, d.d.Summary)
	}
	return b.String()
}

func TestRulesValidate(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown rule", "rules: {nope: {enabled: true}}", "unknown rule"},
		{"bad severity", "rules: {rate.limit_exceeded: {severity: urgent}}", "severity \"urgent\""},
		{"unknown field", "rules: {rate.limit_exceeded: {treshold: 3}}", "field treshold not found"},
		{"no ceilings", "rules: {rate.limit_exceeded: {thresholds: {requests: 0, tokens: 0}}}", "set requests and/or tokens"},
		{"probe", "rules: {scope_escalation.out_of_delegation: {thresholds: {probe_denials: 1}}}", "probe_denials: invalid value"},
		{"window too long", "rules: {rate.limit_exceeded: {window: 5m}}", "at most 1m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	rs, err := ParseRules([]byte("rules: {rate.limit_exceeded: {thresholds: {requests: 7}}}"))
	if err != nil {
		t.Fatal(err)
	}
	if r := rs.Rules[RuleRateLimit]; r.Thresholds.Requests != 7 || r.Thresholds.Tokens != 10_000_000 || r.Window != time.Minute || !slices.Equal([]string{}, []string{}) {
		t.Fatalf("override did not keep the other defaults: %+v", r)
	}
}
