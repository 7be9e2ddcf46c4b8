package retention

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	policyfiles "github.com/agentaudit/agentaudit/retention"
)

// Class is a data class; each is one ClickHouse table of the same name.
type Class string

// The data classes.
const (
	Spans             Class = "spans"
	AuditEvents       Class = "audit_events"
	Detections        Class = "detections"
	WebhookDeliveries Class = "webhook_deliveries"
	QueryAudit        Class = "query_audit"
)

// Classes lists the data classes in a fixed order.
func Classes() []Class {
	return []Class{Spans, AuditEvents, Detections, WebhookDeliveries, QueryAudit}
}

// TraceIndex is trace_index (migrations 0010 and 0040): in which hours a
// trace has spans or audit events. It is not a class of the policy file:
// it holds no data of its own, and its TTL is derived from the spans and
// audit_events rules and holds (see RenderTTL) so that an index row lives
// as long as the rows it points to. Apply, Enforce and Status manage it
// after the classes.
const TraceIndex Class = "trace_index"

// managedTables lists the tables whose TTL the Manager sets: the classes,
// then the tables derived from them.
func managedTables() []Class { return append(Classes(), TraceIndex) }

// timeColumn is the column a class's ages are measured from.
func (c Class) timeColumn() string {
	switch c {
	case Spans:
		return "start_time"
	case TraceIndex:
		return "hour"
	}
	return "ts"
}

func (c Class) missingColumnsNote() string {
	if c == TraceIndex {
		return "table has no hour or source column (migration 0040 not applied)"
	}
	return "table has no " + c.timeColumn() + " column"
}

// requiredColumns are the columns a table needs for its TTL: the time
// column, and trace_index's source (added by migration 0040).
func (c Class) requiredColumns() []string {
	if c == TraceIndex {
		return []string{"hour", "source"}
	}
	return []string{c.timeColumn()}
}

func (c Class) valid() bool { return slices.Contains(Classes(), c) }

// Day is the unit of the policy file.
const Day = 24 * time.Hour

// Rule is the retention of one class (or one tenant's override of it).
// Durations are whole days in a policy file; tests may use seconds.
type Rule struct {
	// ColdAfter is the age at which rows move to the cold volume; 0: never.
	ColdAfter time.Duration `json:"cold_after_ns"`
	// DeleteAfter is the age at which rows are deleted; 0: never.
	DeleteAfter time.Duration `json:"delete_after_ns"`
}

// Policy is a retention policy: a rule per class and per-tenant overrides
// (complete rules: unset fields of an override are filled in from the class
// when the file is parsed).
type Policy struct {
	Classes map[Class]Rule            `json:"classes"`
	Tenants map[string]map[Class]Rule `json:"tenants,omitempty"`
}

// Floors are the minimum DeleteAfter per class.
type Floors map[Class]time.Duration

// DefaultFloors are the floors a policy cannot go under without an explicit,
// recorded override. Why each one: see retention/default.yaml.
func DefaultFloors() Floors {
	return Floors{
		Spans:             30 * Day,
		AuditEvents:       183 * Day,
		Detections:        183 * Day,
		WebhookDeliveries: 183 * Day,
		QueryAudit:        365 * Day,
	}
}

// Errors callers can test for with errors.Is.
var (
	ErrInvalidPolicy = errors.New("invalid retention policy")
	ErrBelowFloor    = errors.New("retention below the floor of its class")
)

// FloorViolation is one rule under its class floor.
type FloorViolation struct {
	Class       Class
	Tenant      string // "" for the class default
	DeleteAfter time.Duration
	Floor       time.Duration
}

func (v FloorViolation) String() string {
	who := "class default"
	if v.Tenant != "" {
		who = "tenant " + v.Tenant
	}
	return fmt.Sprintf("%s (%s): delete after %s is under the floor of %s", v.Class, who, fmtDur(v.DeleteAfter), fmtDur(v.Floor))
}

func fmtDur(d time.Duration) string {
	if d%Day == 0 {
		return fmt.Sprintf("%d days", d/Day)
	}
	return d.String()
}

// tenantRE bounds what a tenant or agent id may contain to be written into
// a TTL expression (DDL cannot take bound parameters): no whitespace, no
// control characters, no quotes or backslashes.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,255}$`)

func validID(kind, s string) error {
	if !tenantRE.MatchString(s) {
		return fmt.Errorf("%w: %s %q: must match %s", ErrInvalidPolicy, kind, s, tenantRE)
	}
	return nil
}

// Validate checks the policy's shape and its floors. Rules under a floor are
// returned; they make Validate fail with ErrBelowFloor unless allowBelowFloor.
func (p Policy) Validate(floors Floors, allowBelowFloor bool) ([]FloorViolation, error) {
	var errs []error
	var below []FloorViolation
	check := func(c Class, tenant string, r Rule) {
		where := string(c)
		if tenant != "" {
			where = "tenants." + tenant + "." + string(c)
		}
		if r.ColdAfter < 0 || r.DeleteAfter < 0 {
			errs = append(errs, fmt.Errorf("%w: %s: negative age", ErrInvalidPolicy, where))
		}
		if r.ColdAfter > 0 && r.DeleteAfter > 0 && r.ColdAfter >= r.DeleteAfter {
			errs = append(errs, fmt.Errorf("%w: %s: cold after %s is not before delete after %s", ErrInvalidPolicy, where, fmtDur(r.ColdAfter), fmtDur(r.DeleteAfter)))
		}
		if r.ColdAfter%time.Second != 0 || r.DeleteAfter%time.Second != 0 {
			errs = append(errs, fmt.Errorf("%w: %s: ages must be whole seconds", ErrInvalidPolicy, where))
		}
		if f := floors[c]; r.DeleteAfter > 0 && r.DeleteAfter < f {
			below = append(below, FloorViolation{Class: c, Tenant: tenant, DeleteAfter: r.DeleteAfter, Floor: f})
		}
	}
	for _, c := range Classes() {
		r, ok := p.Classes[c]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: class %s has no rule", ErrInvalidPolicy, c))
			continue
		}
		check(c, "", r)
	}
	for c := range p.Classes {
		if !c.valid() {
			errs = append(errs, fmt.Errorf("%w: unknown class %q (want one of %v)", ErrInvalidPolicy, c, Classes()))
		}
	}
	for _, t := range sortedKeys(p.Tenants) {
		if err := validID("tenant", t); err != nil {
			errs = append(errs, err)
			continue
		}
		for c, r := range p.Tenants[t] {
			if !c.valid() {
				errs = append(errs, fmt.Errorf("%w: tenants.%s: unknown class %q", ErrInvalidPolicy, t, c))
				continue
			}
			if r.ColdAfter > 0 && p.Classes[c].ColdAfter == 0 {
				errs = append(errs, fmt.Errorf("%w: tenants.%s.%s: cold_after needs the class to move to cold too (a part moves as a whole)", ErrInvalidPolicy, t, c))
			}
			if r.ColdAfter == 0 && p.Classes[c].ColdAfter > 0 {
				errs = append(errs, fmt.Errorf("%w: tenants.%s.%s: cannot stay hot forever while the class moves to cold (a part moves as a whole)", ErrInvalidPolicy, t, c))
			}
			check(c, t, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return below, err
	}
	if len(below) > 0 && !allowBelowFloor {
		msgs := make([]string, len(below))
		for i, v := range below {
			msgs[i] = v.String()
		}
		return below, fmt.Errorf("%w: %s; pass -allow-below-floor with a reason to apply it anyway (the override is logged and recorded)", ErrBelowFloor, strings.Join(msgs, "; "))
	}
	return below, nil
}

// rule is the effective rule for tenant in class c.
func (p Policy) rule(c Class, tenant string) Rule {
	if r, ok := p.Tenants[tenant][c]; ok {
		return r
	}
	return p.Classes[c]
}

// fileRule is a rule as written in a policy file.
type fileRule struct {
	HotDays         *int `yaml:"hot_days"`
	ColdAfterDays   *int `yaml:"cold_after_days"`
	DeleteAfterDays *int `yaml:"delete_after_days"`
}

type file struct {
	Classes map[Class]fileRule            `yaml:"classes"`
	Tenants map[string]map[Class]fileRule `yaml:"tenants"`
}

func (f fileRule) resolve(base Rule, where string) (Rule, error) {
	r := base
	cold := f.ColdAfterDays
	if f.HotDays != nil {
		if cold != nil && *cold != *f.HotDays {
			return r, fmt.Errorf("%w: %s: hot_days %d and cold_after_days %d differ (they are the same setting)", ErrInvalidPolicy, where, *f.HotDays, *cold)
		}
		cold = f.HotDays
	}
	if cold != nil {
		r.ColdAfter = time.Duration(*cold) * Day
	}
	if f.DeleteAfterDays != nil {
		r.DeleteAfter = time.Duration(*f.DeleteAfterDays) * Day
	}
	return r, nil
}

// ParsePolicy reads a policy file (YAML; unknown keys are errors). It checks
// the file's shape, not the floors: call Validate.
func ParsePolicy(b []byte) (Policy, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrInvalidPolicy, err)
	}
	p := Policy{Classes: map[Class]Rule{}, Tenants: map[string]map[Class]Rule{}}
	var errs []error
	for c, fr := range f.Classes {
		if fr.ColdAfterDays == nil && fr.HotDays == nil || fr.DeleteAfterDays == nil {
			errs = append(errs, fmt.Errorf("%w: classes.%s: cold_after_days and delete_after_days are required (0 = never)", ErrInvalidPolicy, c))
		}
		r, err := fr.resolve(Rule{}, "classes."+string(c))
		if err != nil {
			errs = append(errs, err)
		}
		p.Classes[c] = r
	}
	for t, rules := range f.Tenants {
		p.Tenants[t] = map[Class]Rule{}
		for c, fr := range rules {
			r, err := fr.resolve(p.Classes[c], "tenants."+t+"."+string(c))
			if err != nil {
				errs = append(errs, err)
			}
			p.Tenants[t][c] = r
		}
	}
	return p, errors.Join(errs...)
}

// DefaultPolicy is the shipped policy, retention/default.yaml.
func DefaultPolicy() Policy {
	p, err := ParsePolicy(policyfiles.DefaultPolicy)
	if err != nil {
		// The file is embedded and covered by a test.
		panic(fmt.Sprintf("retention/default.yaml: %v", err))
	}
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
