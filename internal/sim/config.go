package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Span encodings, as the Collector's kafkaexporter names them.
const (
	EncodingProto = "otlp_proto"
	EncodingJSON  = "otlp_json"
)

// Default topics (the pipeline's defaults).
const (
	DefaultSpansTopic  = "otlp_spans"
	DefaultEventsTopic = "agent_audit_events"
)

// Validation errors (wrapped with the offending field).
var (
	ErrInvalidConfig = errors.New("invalid sim config")
	ErrUnknownAttack = errors.New("unknown attack kind")
)

// Config describes the simulated world and its traffic. Start from
// DefaultConfig; the zero value is not valid.
type Config struct {
	// Seed makes the output deterministic: the same Seed and Config produce
	// byte-identical messages.
	Seed uint64 `yaml:"seed"`
	// Tenants and AgentsPerTenant size the world.
	Tenants         int `yaml:"tenants"`
	AgentsPerTenant int `yaml:"agents_per_tenant"`
	// Start is the simulated time of the first trace; simulated time then
	// advances with the traffic (never read from the clock).
	Start time.Time `yaml:"start"`
	// TraceRate is the mean number of agent invocations (traces) per
	// simulated second, over all agents.
	TraceRate float64 `yaml:"trace_rate"`
	// SpanEncoding is EncodingProto or EncodingJSON.
	SpanEncoding string `yaml:"span_encoding"`
	// SpansTopic and EventsTopic name the topics Messages are addressed to.
	SpansTopic  string `yaml:"spans_topic"`
	EventsTopic string `yaml:"events_topic"`
	// DeprecatedKeyRatio is the fraction of traces written with deprecated
	// GenAI keys (gen_ai.system, gen_ai.usage.prompt_tokens and
	// completion_tokens), as older instrumentations do.
	DeprecatedKeyRatio float64 `yaml:"deprecated_key_ratio"`
	// ToolErrorRatio is the fraction of benign tool calls that fail
	// (error.type on the span; the action was still allowed).
	ToolErrorRatio float64 `yaml:"tool_error_ratio"`
	// BenignDenyRatio is the fraction of benign tool calls the policy denies
	// for a reason other than scopes (required ⊆ delegation still holds).
	BenignDenyRatio float64 `yaml:"benign_deny_ratio"`
	// TokenTTL is how long a session, oauth or m2m credential lives before
	// the agent rotates to a new token with the same scopes (api_key tokens
	// never rotate). 0 disables rotation.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// MaxTraces, if positive, ends the stream after exactly this many
	// trace messages (attacks included, all of them complete): Next then
	// reports ok=false. 0 means endless.
	MaxTraces int `yaml:"max_traces"`
	// Attacks configures the injected attack scenarios.
	Attacks AttackConfig `yaml:"attacks"`
}

// AttackConfig switches attack scenarios on and paces them. All times are
// simulated time.
type AttackConfig struct {
	// Kinds lists the enabled scenarios; empty disables attacks.
	Kinds []AttackKind `yaml:"kinds"`
	// Interval between two instances of the same kind. Kinds are staggered
	// evenly inside one interval.
	Interval time.Duration `yaml:"interval"`
	// Warmup: no attack starts before Start+Warmup, so victims have a
	// benign baseline first.
	Warmup time.Duration `yaml:"warmup"`
	// Quiet: a victim agent sends no benign traffic from the start of its
	// attack until Quiet after the attack's last event (then it resumes with
	// a fresh token), so benign traffic never extends or repeats an attack
	// inside a detector window no longer than Quiet.
	Quiet time.Duration `yaml:"quiet"`
	// MaxPerKind caps the instances of each kind; 0 means no cap.
	MaxPerKind int `yaml:"max_per_kind"`
	// ProbeDenials is the number of denied out-of-scope calls of one
	// scope_probing instance.
	ProbeDenials int `yaml:"probe_denials"`
	// BurstFactor: a rate_burst sends, within one minute, this many times
	// the benign per-agent maximum of requests and of tokens (see Limits).
	BurstFactor float64 `yaml:"burst_factor"`
	// RevokeReuseDelay is the time between the revocation-triggering event
	// and the first reuse of the token in revoked_token_reuse.
	RevokeReuseDelay time.Duration `yaml:"revoke_reuse_delay"`
}

// DefaultConfig returns a small world (4 tenants × 5 agents, 20 traces per
// simulated second) with protobuf spans, 5% deprecated keys and no attacks.
func DefaultConfig() Config {
	return Config{
		Seed:               1,
		Tenants:            4,
		AgentsPerTenant:    5,
		Start:              time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		TraceRate:          20,
		SpanEncoding:       EncodingProto,
		SpansTopic:         DefaultSpansTopic,
		EventsTopic:        DefaultEventsTopic,
		DeprecatedKeyRatio: 0.05,
		ToolErrorRatio:     0.03,
		BenignDenyRatio:    0.01,
		TokenTTL:           time.Hour,
		Attacks:            DefaultAttackConfig(),
	}
}

// DefaultAttackConfig has every knob set and no kind enabled.
func DefaultAttackConfig() AttackConfig {
	return AttackConfig{
		Interval:         10 * time.Minute,
		Warmup:           2 * time.Minute,
		Quiet:            10 * time.Minute,
		ProbeDenials:     5,
		BurstFactor:      4,
		RevokeReuseDelay: 2 * time.Minute,
	}
}

// Validate reports every invalid field, each prefixed with its path.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	if c.Tenants < 1 {
		bad("tenants", "must be at least 1, got %d", c.Tenants)
	}
	if c.AgentsPerTenant < 1 {
		bad("agents_per_tenant", "must be at least 1, got %d", c.AgentsPerTenant)
	}
	if c.Start.IsZero() {
		bad("start", "must be set")
	}
	if !(c.TraceRate > 0) {
		bad("trace_rate", "must be positive, got %v", c.TraceRate)
	}
	if c.SpanEncoding != EncodingProto && c.SpanEncoding != EncodingJSON {
		bad("span_encoding", "must be %s or %s, got %q", EncodingProto, EncodingJSON, c.SpanEncoding)
	}
	if c.SpansTopic == "" {
		bad("spans_topic", "must be set")
	}
	if c.EventsTopic == "" {
		bad("events_topic", "must be set")
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"deprecated_key_ratio", c.DeprecatedKeyRatio}, {"tool_error_ratio", c.ToolErrorRatio}, {"benign_deny_ratio", c.BenignDenyRatio}} {
		if !(r.v >= 0 && r.v <= 1) {
			bad(r.name, "must be within [0, 1], got %v", r.v)
		}
	}
	if c.MaxTraces < 0 {
		bad("max_traces", "must not be negative, got %d", c.MaxTraces)
	}
	if c.TokenTTL < 0 {
		bad("token_ttl", "must not be negative, got %v", c.TokenTTL)
	}
	for _, err := range c.Attacks.validate(c) {
		errs = append(errs, fmt.Errorf("attacks.%w", err))
	}
	return errors.Join(errs...)
}

func (a AttackConfig) validate(c Config) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w: %s", field, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	for _, k := range a.Kinds {
		if !slices.Contains(AllAttackKinds, k) {
			errs = append(errs, fmt.Errorf("kinds: %w %q", ErrUnknownAttack, k))
		}
		if (k == AttackCrossTenant || k == AttackStaleBinding) && c.Tenants < 2 {
			bad("kinds", "%s needs at least 2 tenants", k)
		}
	}
	if len(a.Kinds) == 0 {
		return errs
	}
	if a.Interval <= 0 {
		bad("interval", "must be positive, got %v", a.Interval)
	}
	if a.Warmup < 0 {
		bad("warmup", "must not be negative, got %v", a.Warmup)
	}
	if a.Quiet < 0 {
		bad("quiet", "must not be negative, got %v", a.Quiet)
	}
	if a.MaxPerKind < 0 {
		bad("max_per_kind", "must not be negative, got %d", a.MaxPerKind)
	}
	if a.ProbeDenials < 2 {
		bad("probe_denials", "must be at least 2 (repeated denials), got %d", a.ProbeDenials)
	}
	if !(a.BurstFactor > 1) {
		bad("burst_factor", "must be above 1, got %v", a.BurstFactor)
	}
	if a.RevokeReuseDelay <= 0 {
		bad("revoke_reuse_delay", "must be positive, got %v", a.RevokeReuseDelay)
	}
	return errs
}

// ParseAttackKinds parses a comma-separated list of attack kinds; "all"
// means AllAttackKinds and "none" or "" means no attacks.
func ParseAttackKinds(s string) ([]AttackKind, error) {
	switch s = strings.TrimSpace(s); s {
	case "", "none":
		return nil, nil
	case "all":
		return slices.Clone(AllAttackKinds), nil
	}
	var kinds []AttackKind
	for part := range strings.SplitSeq(s, ",") {
		k := AttackKind(strings.TrimSpace(part))
		if !slices.Contains(AllAttackKinds, k) {
			return nil, fmt.Errorf("%w %q (want a comma list of %v, all or none)", ErrUnknownAttack, k, AllAttackKinds)
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	return kinds, nil
}
