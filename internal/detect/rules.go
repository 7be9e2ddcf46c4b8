package detect

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/event"
)

// Rule ids. They are stored in detections.rule_id and used as metric labels.
const (
	RuleOutOfDelegation         = "scope_escalation.out_of_delegation"
	RuleDelegationExceedsParent = "scope_escalation.delegation_exceeds_parent"
	RuleScopeGrowth             = "scope_escalation.scope_growth"
	RuleResourceMismatch        = "cross_tenant.resource_mismatch"
	RuleStaleBinding            = "cross_tenant.stale_binding"
	RuleRevokedReuse            = "credential.revoked_reuse"
	RuleRateLimit               = "rate.limit_exceeded"
)

// RuleIDs lists every rule, in evaluation order.
var RuleIDs = []string{
	RuleRevokedReuse, RuleOutOfDelegation, RuleDelegationExceedsParent, RuleScopeGrowth,
	RuleResourceMismatch, RuleStaleBinding, RuleRateLimit,
}

//go:embed rules.yaml
var defaultRulesYAML []byte

// DefaultRulesYAML returns the embedded default rule file (documented
// example of every setting).
func DefaultRulesYAML() []byte { return bytes.Clone(defaultRulesYAML) }

// Rules is the rule file: per-rule settings and a registry of parent scopes.
type Rules struct {
	Rules map[string]*Rule `yaml:"rules"`
	// Parents is a registry of the scopes each parent identity holds; it
	// takes precedence over scopes learned from events'
	// delegation.parent_scope attribute.
	Parents map[string][]string `yaml:"parents"`
}

// Rule configures one rule. Which thresholds apply is stated per rule in
// rules.yaml.
type Rule struct {
	Enabled bool `yaml:"enabled"`
	// Severity of a detection (for out_of_delegation and resource_mismatch:
	// when the action was allowed, i.e. enforcement failed).
	Severity event.Severity `yaml:"severity"`
	// Window over which the rule counts (probing denials, tenants of one
	// actor, requests and tokens).
	Window time.Duration `yaml:"window"`
	// Suppression: repeats of the same rule on the same actor within this
	// period (event time) after the first match raise the detection's
	// suppressed_count instead of creating a new detection.
	Suppression time.Duration `yaml:"suppression"`
	Thresholds  Thresholds    `yaml:"thresholds"`
	Allow       AllowList     `yaml:"allow"`
	Actions     RuleActions   `yaml:"actions"`
}

// Thresholds of the rules; zero values are "not used" for rules that do
// not read them.
type Thresholds struct {
	// DeniedSeverity: severity when the action was denied
	// (out_of_delegation, resource_mismatch).
	DeniedSeverity event.Severity `yaml:"denied_severity,omitempty"`
	// ProbeDenials denied out-of-scope calls of one credential within
	// Window raise the detection to ProbeSeverity (out_of_delegation).
	ProbeDenials  int            `yaml:"probe_denials,omitempty"`
	ProbeSeverity event.Severity `yaml:"probe_severity,omitempty"`
	// LearningWindow: scopes an agent's credentials carry within this
	// period after the agent is first seen form its baseline (scope_growth).
	LearningWindow time.Duration `yaml:"learning_window,omitempty"`
	// Grace after the revocation request during which use is not yet reuse
	// (revoked_reuse): calls already in flight.
	Grace time.Duration `yaml:"grace,omitempty"`
	// Requests (audit events) and Tokens (GenAI chat input+output tokens)
	// per agent per Window; 0 disables that ceiling (rate.limit_exceeded).
	Requests int   `yaml:"requests,omitempty"`
	Tokens   int64 `yaml:"tokens,omitempty"`
}

// AllowList exempts events from a rule when their tenant, agent or tool is
// listed.
type AllowList struct {
	Tenants []string `yaml:"tenants,omitempty"`
	Agents  []string `yaml:"agents,omitempty"`
	Tools   []string `yaml:"tools,omitempty"`
}

func (a AllowList) allows(tenant, agent, tool string) bool {
	return slices.Contains(a.Tenants, tenant) || slices.Contains(a.Agents, agent) || (tool != "" && slices.Contains(a.Tools, tool))
}

// RuleActions: a detection is handed to the action sink for a notification
// when its severity reaches Notify, and with a revocation request for its
// token when it reaches Revoke. Empty disables the action.
type RuleActions struct {
	Notify event.Severity `yaml:"notify,omitempty"`
	Revoke event.Severity `yaml:"revoke,omitempty"`
}

func (a RuleActions) wants(s event.Severity) (notify, revoke bool) {
	notify = a.Notify != "" && s.Rank() >= a.Notify.Rank()
	revoke = a.Revoke != "" && s.Rank() >= a.Revoke.Rank()
	return notify, revoke
}

// ErrUnknownRule is returned for a rule id that is not in RuleIDs.
var ErrUnknownRule = errors.New("unknown rule")

// LoadRules reads the rule file at path over the embedded defaults: a rule
// listed in the file overrides only the settings it names; rules not listed
// keep their defaults. An empty path returns the defaults.
func LoadRules(path string) (*Rules, error) {
	rs, err := ParseRules(nil)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return rs, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return ParseRules(b)
}

// ParseRules parses a rule file over the embedded defaults and validates
// the result.
func ParseRules(b []byte) (*Rules, error) {
	rs := &Rules{}
	if err := decodeStrict(defaultRulesYAML, rs); err != nil {
		return nil, fmt.Errorf("embedded rules: %w", err)
	}
	if len(b) > 0 {
		var over struct {
			Rules   map[string]yaml.Node `yaml:"rules"`
			Parents map[string][]string  `yaml:"parents"`
		}
		if err := decodeStrict(b, &over); err != nil {
			return nil, fmt.Errorf("parse rules: %w", err)
		}
		for id, n := range over.Rules {
			r, ok := rs.Rules[id]
			if !ok {
				return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownRule, id, RuleIDs)
			}
			c := *r
			if err := decodeNodeStrict(&n, &c); err != nil {
				return nil, fmt.Errorf("parse rule %s: %w", id, err)
			}
			rs.Rules[id] = &c
		}
		if over.Parents != nil {
			rs.Parents = over.Parents
		}
	}
	if err := rs.Validate(); err != nil {
		return nil, err
	}
	return rs, nil
}

func decodeStrict(b []byte, v any) error {
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	return d.Decode(v)
}

func decodeNodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	return decodeStrict(b, v)
}

// Validate checks every rule and the thresholds it uses.
func (rs *Rules) Validate() error {
	var errs []error
	ids := make([]string, 0, len(rs.Rules))
	for id := range rs.Rules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if !slices.Contains(RuleIDs, id) {
			errs = append(errs, config.Field("rules."+id, ErrUnknownRule))
			continue
		}
		for _, err := range rs.Rules[id].validate(id) {
			errs = append(errs, config.Field("rules."+id+"."+err.field, err.err))
		}
	}
	for _, id := range RuleIDs {
		if rs.Rules[id] == nil {
			errs = append(errs, config.Field("rules."+id, config.ErrRequired))
		}
	}
	return errors.Join(errs...)
}

type fieldErr struct {
	field string
	err   error
}

func (r *Rule) validate(id string) []fieldErr {
	var errs []fieldErr
	bad := func(f, format string, args ...any) {
		errs = append(errs, fieldErr{f, fmt.Errorf("%w: "+format, append([]any{config.ErrInvalid}, args...)...)})
	}
	sev := func(f string, s event.Severity, required bool) {
		if s == "" && !required {
			return
		}
		if !s.Valid() {
			bad(f, "severity %q, want low, medium, high or critical", s)
		}
	}
	sev("severity", r.Severity, true)
	sev("actions.notify", r.Actions.Notify, false)
	sev("actions.revoke", r.Actions.Revoke, false)
	if r.Suppression < 0 {
		bad("suppression", "must not be negative")
	}
	needWindow := func() {
		if r.Window <= 0 {
			bad("window", "must be > 0")
		}
	}
	t := r.Thresholds
	switch id {
	case RuleOutOfDelegation:
		needWindow()
		sev("thresholds.denied_severity", t.DeniedSeverity, true)
		sev("thresholds.probe_severity", t.ProbeSeverity, true)
		if t.ProbeDenials < 2 {
			bad("thresholds.probe_denials", "must be at least 2")
		}
	case RuleResourceMismatch:
		sev("thresholds.denied_severity", t.DeniedSeverity, true)
	case RuleScopeGrowth:
		if t.LearningWindow < 0 {
			bad("thresholds.learning_window", "must not be negative")
		}
	case RuleStaleBinding:
		needWindow()
	case RuleRevokedReuse:
		if t.Grace < 0 {
			bad("thresholds.grace", "must not be negative")
		}
	case RuleRateLimit:
		needWindow()
		if r.Window > maxRateWindow {
			bad("window", "at most %v", maxRateWindow)
		}
		if t.Requests < 0 || t.Tokens < 0 {
			bad("thresholds", "requests and tokens must not be negative")
		}
		if t.Requests == 0 && t.Tokens == 0 {
			bad("thresholds", "set requests and/or tokens")
		}
	}
	return errs
}
