package retention

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/chdb"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestDefaultPolicyIsValidAndKeepsAuditEventsSixMonths(t *testing.T) {
	p := DefaultPolicy()
	if _, err := p.Validate(DefaultFloors(), false); err != nil {
		t.Fatalf("shipped policy: %v", err)
	}
	if got := p.Classes[AuditEvents].DeleteAfter; got < 183*Day {
		t.Fatalf("audit events deleted after %s", got)
	}
	if DefaultFloors()[AuditEvents] != 183*Day {
		t.Fatalf("audit events floor %s, want 183 days (EU AI Act Art. 19)", DefaultFloors()[AuditEvents])
	}
	for _, c := range Classes() {
		r := p.Classes[c]
		if r.ColdAfter <= 0 || r.DeleteAfter <= r.ColdAfter {
			t.Errorf("%s: %+v", c, r)
		}
	}
}

func TestColdVolumeIsTheEmbeddedEngines(t *testing.T) {
	if coldVolume != chdb.ColdVolume {
		t.Fatalf("TTL moves to %q, the engine's cold volume is %q", coldVolume, chdb.ColdVolume)
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`
classes:
  spans: {hot_days: 3, delete_after_days: 60}
  audit_events: {cold_after_days: 30, delete_after_days: 400}
  detections: {cold_after_days: 30, delete_after_days: 400}
  webhook_deliveries: {cold_after_days: 30, delete_after_days: 0}
  query_audit: {cold_after_days: 0, delete_after_days: 0}
tenants:
  acme:
    audit_events: {delete_after_days: 3653}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Classes[Spans]; got != (Rule{ColdAfter: 3 * Day, DeleteAfter: 60 * Day}) {
		t.Errorf("spans: %+v", got)
	}
	// An override inherits the fields it does not set.
	if got := p.Tenants["acme"][AuditEvents]; got != (Rule{ColdAfter: 30 * Day, DeleteAfter: 3653 * Day}) {
		t.Errorf("acme audit_events: %+v", got)
	}
	if _, err := p.Validate(DefaultFloors(), false); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func TestParsePolicyRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown key":         "classes:\n  spans: {cold_after_days: 1, delete_after_days: 40, keep: 1}\n",
		"missing delete":      "classes:\n  spans: {cold_after_days: 1}\n",
		"hot and cold differ": "classes:\n  spans: {hot_days: 2, cold_after_days: 1, delete_after_days: 40}\n",
		"not yaml":            "classes: [",
	} {
		if _, err := ParsePolicy([]byte(doc)); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func valid() Policy {
	return Policy{Classes: map[Class]Rule{
		Spans:             {ColdAfter: 7 * Day, DeleteAfter: 90 * Day},
		AuditEvents:       {ColdAfter: 30 * Day, DeleteAfter: 400 * Day},
		Detections:        {ColdAfter: 30 * Day, DeleteAfter: 400 * Day},
		WebhookDeliveries: {ColdAfter: 30 * Day, DeleteAfter: 400 * Day},
		QueryAudit:        {ColdAfter: 30 * Day, DeleteAfter: 400 * Day},
	}}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name  string
		mod   func(p *Policy)
		allow bool
		want  error
	}{
		{"valid", func(p *Policy) {}, false, nil},
		{"audit events under six months", func(p *Policy) { p.Classes[AuditEvents] = Rule{ColdAfter: Day, DeleteAfter: 90 * Day} }, false, ErrBelowFloor},
		{"under the floor, allowed", func(p *Policy) { p.Classes[AuditEvents] = Rule{ColdAfter: Day, DeleteAfter: 90 * Day} }, true, nil},
		{"tenant override under the floor", func(p *Policy) {
			p.Tenants = map[string]map[Class]Rule{"acme": {AuditEvents: {ColdAfter: Day, DeleteAfter: 30 * Day}}}
		}, false, ErrBelowFloor},
		{"keep forever is above every floor", func(p *Policy) { p.Classes[AuditEvents] = Rule{ColdAfter: Day} }, false, nil},
		{"cold after delete", func(p *Policy) { p.Classes[Spans] = Rule{ColdAfter: 90 * Day, DeleteAfter: 60 * Day} }, false, ErrInvalidPolicy},
		{"missing class", func(p *Policy) { delete(p.Classes, QueryAudit) }, false, ErrInvalidPolicy},
		{"unknown class", func(p *Policy) { p.Classes["logs"] = Rule{} }, false, ErrInvalidPolicy},
		{"tenant id with a quote", func(p *Policy) {
			p.Tenants = map[string]map[Class]Rule{"a'b": {Spans: {ColdAfter: Day, DeleteAfter: 90 * Day}}}
		}, false, ErrInvalidPolicy},
		{"tenant stays hot while the class moves", func(p *Policy) {
			p.Tenants = map[string]map[Class]Rule{"acme": {Spans: {DeleteAfter: 90 * Day}}}
		}, false, ErrInvalidPolicy},
		{"fraction of a second", func(p *Policy) { p.Classes[Spans] = Rule{ColdAfter: Day, DeleteAfter: 90*Day + time.Millisecond} }, false, ErrInvalidPolicy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := valid()
			tc.mod(&p)
			_, err := p.Validate(DefaultFloors(), tc.allow)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBelowFloorErrorSaysWhatAndHow(t *testing.T) {
	p := valid()
	p.Classes[AuditEvents] = Rule{ColdAfter: Day, DeleteAfter: 90 * Day}
	below, err := p.Validate(DefaultFloors(), false)
	if len(below) != 1 || below[0].Class != AuditEvents || below[0].Floor != 183*Day {
		t.Fatalf("violations: %+v", below)
	}
	for _, want := range []string{"audit_events", "90 days", "183 days", "-allow-below-floor"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// The TTL clauses for representative policies are pinned by golden files
// (testdata/ttl/*.sql; run with -update after a deliberate change). The
// engine tests prove the clauses do what they say.
func TestRenderTTLGolden(t *testing.T) {
	overrides := valid()
	overrides.Tenants = map[string]map[Class]Rule{
		"acme-bank": {AuditEvents: {ColdAfter: 60 * Day, DeleteAfter: 3653 * Day}},
		"globex":    {AuditEvents: {ColdAfter: 30 * Day, DeleteAfter: 0}},
		"initech":   {AuditEvents: {ColdAfter: 30 * Day, DeleteAfter: 3653 * Day}},
	}
	holds := []Hold{
		{ID: "1", TenantID: "umbrella"},
		{ID: "2", TenantID: "wayne", AgentID: "agent-7"},
		{ID: "3", TenantID: "wayne", AgentID: "agent-2"},
		{ID: "4", TenantID: "old", Released: true},
	}
	// Spans overrides on top: acme-bank keeps spans longer than the class,
	// globex keeps them forever, hooli shorter.
	spanOverrides := valid()
	spanOverrides.Tenants = map[string]map[Class]Rule{
		"acme-bank": {AuditEvents: {ColdAfter: 60 * Day, DeleteAfter: 3653 * Day}, Spans: {ColdAfter: 7 * Day, DeleteAfter: 365 * Day}},
		"globex":    {Spans: {ColdAfter: 7 * Day}},
		"hooli":     {Spans: {ColdAfter: 7 * Day, DeleteAfter: 60 * Day}},
	}
	seconds := valid()
	seconds.Classes[Spans] = Rule{ColdAfter: 30 * time.Second, DeleteAfter: 90 * time.Second}
	cases := []struct {
		name  string
		class Class
		p     Policy
		holds []Hold
		shape TableShape
	}{
		{"plain", AuditEvents, valid(), nil, TableShape{HasAgent: true, HasCold: true}},
		{"spans_seconds", Spans, seconds, nil, TableShape{HasAgent: true, HasCold: true}},
		{"tenant_overrides", AuditEvents, overrides, nil, TableShape{HasAgent: true, HasCold: true}},
		{"holds", AuditEvents, valid(), holds, TableShape{HasAgent: true, HasCold: true}},
		{"holds_without_agent_column", WebhookDeliveries, valid(), holds, TableShape{HasCold: true}},
		{"overrides_and_holds", AuditEvents, overrides, holds, TableShape{HasAgent: true, HasCold: true}},
		{"keep_forever", QueryAudit, Policy{Classes: map[Class]Rule{QueryAudit: {}}}, holds, TableShape{HasCold: true}},
		{"no_cold_volume", AuditEvents, overrides, nil, TableShape{HasAgent: true}},
		{"trace_index", TraceIndex, valid(), nil, TableShape{}},
		{"trace_index_overrides_and_holds", TraceIndex, spanOverrides, holds, TableShape{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := RenderTTL(tc.class, tc.p, tc.holds, tc.shape) + "\n"
			path := filepath.Join("testdata", "ttl", tc.name+".sql")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Fatalf("TTL differs from %s:\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}
