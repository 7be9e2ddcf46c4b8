package detect

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/event"
)

// detectionNamespace is the UUIDv5 namespace of detection ids.
var detectionNamespace = uuid.MustParse("6f1d8a52-3c1e-5b7a-9d54-0a6a7e2f3c11")

// DetectionID is the deterministic id of a detection: UUIDv5 of the rule,
// the actor key and the first evidence (an event id, or a trace id when a
// span triggered it).
func DetectionID(rule, actorKey, firstEvidence string) uuid.UUID {
	return uuid.NewSHA1(detectionNamespace, []byte(rule+"\x00"+actorKey+"\x00"+firstEvidence))
}

// Attribute keys the engine writes on detections (and reads back to warm).
const (
	AttrSuppressionKey = "suppression_key"
	AttrNotified       = "action.notify"
	AttrRevoked        = "action.revoke"
	AttrScopes         = "scopes"
	AttrOtherTenant    = "other_tenant_id"
	AttrCount          = "count"
	AttrDecision       = "policy_decision"
)

// maxEvidence bounds the evidence event ids kept on one detection.
const maxEvidence = 32

// Outcome is a change the engine made to a detection: a new detection or a
// newer version of an open one (a suppressed repeat, a raised severity).
// Store it; then, if Notify or Revoke, hand it to the action sink.
type Outcome struct {
	Detection event.Detection
	New       bool
	Notify    bool // act now: notification
	Revoke    bool // act now: also ask for revocation of the token
}

// Act reports whether the outcome must be handed to the action sink.
func (o *Outcome) Act() bool { return o.Notify || o.Revoke }

// StateCaps bound the engine's memory; each map evicts its least recently
// used entry when full (counted in agentaudit_detector_state_evictions_total).
type StateCaps struct {
	Agents       int `yaml:"agents"`
	Tokens       int `yaml:"tokens"`
	Parents      int `yaml:"parents"`
	Traces       int `yaml:"traces"`
	Suppressions int `yaml:"suppressions"`
	Revoked      int `yaml:"revoked"`
}

// State names (metric label values).
var stateNames = []string{"agents", "tokens", "parents", "traces", "suppressions", "revoked"}

// parentScopes are a parent identity's declared scopes, as declared (raw:
// the attribute's text, compared first) and split.
type parentScopes struct {
	raw    string
	fields []string
}

type detectionState struct {
	d                 event.Detection
	notified, revoked bool
}

// State keeps copies of the strings it holds: a decoded event's strings
// share one buffer per message, which a stored substring would keep alive.

// Engine evaluates the rules over audit events and spans with per-actor
// state. It is safe for concurrent use (one lock: the work per event is a
// few map lookups).
type Engine struct {
	mu      sync.Mutex
	rules   *Rules
	now     func() time.Time
	m       *metrics
	agents  *lru[string, *agentState]
	tokens  *lru[string, *tokenState]
	parents *lru[string, parentScopes]
	traces  *lru[traceKey, *traceInfo]
	supp    *lru[string, *suppression]
	revoked *lru[string, revocation]
	version uint64
	// r: the rules the hot path reads, looked up by id once (nil if absent).
	r struct {
		revokedReuse, outOfDelegation, exceedsParent, scopeGrowth, resourceMismatch, staleBinding, rateLimit *Rule
	}
}

// newEngine builds an engine; m may be nil (no metrics), now nil means
// time.Now.
func newEngine(rules *Rules, caps StateCaps, m *metrics, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	evict := func(state string) func() {
		if m == nil {
			return nil
		}
		c := m.evictions.WithLabelValues(state)
		return c.Inc
	}
	e := &Engine{
		rules:   rules,
		now:     now,
		m:       m,
		agents:  newLRU[string, *agentState](caps.Agents, evict("agents")),
		tokens:  newLRU[string, *tokenState](caps.Tokens, evict("tokens")),
		parents: newLRU[string, parentScopes](caps.Parents, evict("parents")),
		traces:  newLRU[traceKey, *traceInfo](caps.Traces, evict("traces")),
		supp:    newLRU[string, *suppression](caps.Suppressions, evict("suppressions")),
		revoked: newLRU[string, revocation](caps.Revoked, evict("revoked")),
	}
	rs := rules.Rules
	e.r.revokedReuse, e.r.outOfDelegation, e.r.exceedsParent = rs[RuleRevokedReuse], rs[RuleOutOfDelegation], rs[RuleDelegationExceedsParent]
	e.r.scopeGrowth, e.r.resourceMismatch, e.r.staleBinding, e.r.rateLimit = rs[RuleScopeGrowth], rs[RuleResourceMismatch], rs[RuleStaleBinding], rs[RuleRateLimit]
	return e
}

// StateSizes returns the number of entries per state (metric gauge).
func (e *Engine) StateSizes() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return map[string]int{
		"agents": e.agents.len(), "tokens": e.tokens.len(), "parents": e.parents.len(),
		"traces": e.traces.len(), "suppressions": e.supp.len(), "revoked": e.revoked.len(),
	}
}

// actor is who a hit is about.
type actor struct {
	tenant, agent, parent, token, tokenType, tool, resourceTenant, traceID string
}

func eventActor(ev *event.AuditEvent) actor {
	return actor{
		tenant: ev.TenantID, agent: ev.AgentID, parent: ev.ParentIdentity, token: ev.TokenID,
		tokenType: ev.TokenType, tool: ev.ToolName, resourceTenant: ev.ResourceTenantID, traceID: ev.TraceID,
	}
}

type hit struct {
	rule     string
	key      string // actor key within the rule (suppression and id)
	sev      event.Severity
	who      actor
	evidence []uuid.UUID
	first    string // first evidence for the id
	at       time.Time
	summary  string
	attrs    map[string]string
	denied   bool // out_of_delegation: a denied call (probing)
}

func (e *Engine) nextVersion() uint64 {
	v := uint64(e.now().UnixNano())
	if v <= e.version {
		v = e.version + 1
	}
	e.version = v
	return v
}

// match records a hit: a new detection, or a suppressed repeat of the open
// one for the same rule and actor.
func (e *Engine) match(h hit, out []Outcome) []Outcome {
	r := e.rules.Rules[h.rule]
	if r.Allow.allows(h.who.tenant, h.who.agent, h.who.tool) {
		return out
	}
	if e.m != nil {
		e.m.ruleMatches.WithLabelValues(h.rule, string(h.sev)).Inc()
	}
	sk := h.rule + "|" + h.key
	if s, ok := e.supp.get(sk); ok && h.at.Before(s.until) {
		ds := s.det
		d := &ds.d
		if len(h.evidence) > 0 && subsetIDs(h.evidence, d.EvidenceEventIDs) {
			// A redelivered event (re-consumed after a restart) that is
			// already evidence of this detection: nothing new.
			return out
		}
		d.SuppressedCount++
		for _, id := range h.evidence {
			if len(d.EvidenceEventIDs) < maxEvidence && !slices.Contains(d.EvidenceEventIDs, id) {
				d.EvidenceEventIDs = append(d.EvidenceEventIDs, id)
			}
		}
		sev := h.sev
		if h.denied {
			s.denials = append(keepWithin(s.denials, h.at, r.Window), h.at)
			if len(s.denials) >= r.Thresholds.ProbeDenials && r.Thresholds.ProbeSeverity.Rank() > sev.Rank() {
				sev = r.Thresholds.ProbeSeverity
				h.summary = fmt.Sprintf("Credential %s of agent %s was denied %d calls needing scopes it does not carry within %v (probing).",
					h.who.token, h.who.agent, len(s.denials), r.Window)
			}
		}
		if sev.Rank() > d.Severity.Rank() {
			d.Severity, d.Summary = sev, h.summary
		}
		d.Attributes[AttrCount] = fmt.Sprint(d.SuppressedCount + 1)
		if e.m != nil {
			e.m.suppressed.WithLabelValues(h.rule).Inc()
		}
		o := e.decide(ds, r)
		d.Version = e.nextVersion()
		o.Detection = cloneDetection(d)
		return append(out, o)
	}
	attrs := h.attrs
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs[AttrSuppressionKey] = sk
	attrs[AttrCount] = "1"
	ds := &detectionState{d: event.Detection{
		ID:               DetectionID(h.rule, h.key, h.first),
		Time:             e.now().UTC().Truncate(time.Millisecond),
		EventTime:        h.at.UTC(),
		RuleID:           h.rule,
		Severity:         h.sev,
		TenantID:         h.who.tenant,
		AgentID:          h.who.agent,
		ParentIdentity:   h.who.parent,
		TokenID:          h.who.token,
		TokenType:        h.who.tokenType,
		ToolName:         h.who.tool,
		ResourceTenantID: h.who.resourceTenant,
		EvidenceEventIDs: slices.Clone(h.evidence),
		TraceID:          h.who.traceID,
		Summary:          h.summary,
		Attributes:       attrs,
	}}
	s := &suppression{det: ds, until: h.at.Add(r.Suppression)}
	if h.denied {
		s.denials = []time.Time{h.at}
	}
	e.supp.put(sk, s)
	o := e.decide(ds, r)
	o.New = true
	ds.d.Version = e.nextVersion()
	o.Detection = cloneDetection(&ds.d)
	return append(out, o)
}

// decide sets the actions a detection's current severity calls for and
// has not had yet; a revocation is recorded at once, so the token's next
// use is reuse even before the webhook is sent.
func (e *Engine) decide(ds *detectionState, r *Rule) Outcome {
	var o Outcome
	notify, revoke := r.Actions.wants(ds.d.Severity)
	if notify && !ds.notified {
		ds.notified, o.Notify = true, true
		ds.d.Attributes[AttrNotified] = "true"
	}
	if revoke && !ds.revoked && ds.d.TokenID != "" {
		ds.revoked, o.Revoke = true, true
		ds.d.Attributes[AttrRevoked] = "true"
		e.revoked.put(ds.d.TokenID, revocation{at: ds.d.EventTime, detectionID: ds.d.ID.String()})
	}
	return o
}

func cloneDetection(d *event.Detection) event.Detection {
	c := *d
	c.EvidenceEventIDs = slices.Clone(d.EvidenceEventIDs)
	c.Attributes = maps.Clone(d.Attributes)
	return c
}

func keepWithin(ts []time.Time, at time.Time, window time.Duration) []time.Time {
	out := ts[:0]
	for _, t := range ts {
		if at.Sub(t) <= window {
			out = append(out, t)
		}
	}
	return out
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, strings.Clone(x))
		}
	}
	slices.Sort(out)
	return out
}

func actorKey(ev *event.AuditEvent) string {
	return ev.TenantID + "/" + ev.AgentID + "/" + ev.TokenID
}

// on returns r if it is enabled, else nil.
func on(r *Rule) *Rule {
	if r != nil && r.Enabled {
		return r
	}
	return nil
}

// Event evaluates the rules on one audit event and updates the state. It
// appends what changed to out.
func (e *Engine) Event(ev *event.AuditEvent, out []Outcome) []Outcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Everything a hit needs is built only on a hit: most events match no
	// rule, and the hot path should not allocate for them.
	base := func(rule, key string, sev event.Severity, summary string, attrs map[string]string) hit {
		return hit{rule: rule, key: key, sev: sev, who: eventActor(ev), evidence: []uuid.UUID{ev.EventID},
			first: ev.EventID.String(), at: ev.TS, summary: summary, attrs: attrs}
	}
	allowed := ev.PolicyDecision == "allow"

	// credential.revoked_reuse
	if r := on(e.r.revokedReuse); r != nil && ev.TokenID != "" {
		if rv, ok := e.revoked.get(ev.TokenID); ok && ev.TS.After(rv.at.Add(r.Thresholds.Grace)) {
			out = e.match(base(RuleRevokedReuse, "token:"+ev.TokenID, r.Severity,
				fmt.Sprintf("Token %s of agent %s was used after its revocation was requested at %s.", ev.TokenID, ev.AgentID, rv.at.UTC().Format(time.RFC3339)),
				map[string]string{"revoked_by_detection": rv.detectionID, AttrDecision: ev.PolicyDecision}), out)
		}
	}
	// scope_escalation.out_of_delegation
	if r := on(e.r.outOfDelegation); r != nil && !subset(ev.RequiredScopes, ev.DelegationScope) {
		missing := minus(ev.RequiredScopes, ev.DelegationScope)
		sev, verb := r.Severity, "was allowed"
		if !allowed {
			sev, verb = r.Thresholds.DeniedSeverity, "was denied"
		}
		h := base(RuleOutOfDelegation, actorKey(ev), sev,
			fmt.Sprintf("Agent %s called %s needing scopes %s that its credential %s does not carry; the call %s.", ev.AgentID, ev.ToolName, strings.Join(missing, " "), ev.TokenID, verb),
			map[string]string{AttrScopes: strings.Join(missing, " "), AttrDecision: ev.PolicyDecision})
		h.denied = !allowed
		out = e.match(h, out)
	}
	// The parent's scopes this event declares, learned for later events
	// that declare none: the learned copy is reused while it is the same
	// (it nearly always is), so the hot path neither splits nor allocates.
	attrParent := ev.Attributes["delegation.parent_scope"]
	var declared []string
	haveDeclared := attrParent != "" && ev.ParentIdentity != ""
	if haveDeclared {
		if ps, ok := e.parents.get(ev.ParentIdentity); ok && (ps.raw == attrParent || sameFields(ps.fields, attrParent)) {
			declared = ps.fields
		} else {
			declared = cloneAll(strings.Fields(attrParent))
			e.parents.put(strings.Clone(ev.ParentIdentity), parentScopes{raw: strings.Clone(attrParent), fields: declared})
		}
	}
	// scope_escalation.delegation_exceeds_parent
	if r := on(e.r.exceedsParent); r != nil && ev.ParentIdentity != "" {
		ps, known := e.rules.Parents[ev.ParentIdentity]
		if !known && haveDeclared {
			ps, known = declared, true
		}
		if !known && attrParent == "" {
			var learned parentScopes
			learned, known = e.parents.get(ev.ParentIdentity)
			ps = learned.fields
		}
		if known && !subset(ev.DelegationScope, ps) {
			extra := minus(ev.DelegationScope, ps)
			out = e.match(base(RuleDelegationExceedsParent, actorKey(ev), r.Severity,
				fmt.Sprintf("Credential %s of agent %s carries scopes %s that its parent %s does not hold.", ev.TokenID, ev.AgentID, strings.Join(extra, " "), ev.ParentIdentity),
				map[string]string{AttrScopes: strings.Join(extra, " ")}), out)
		}
	}

	a, ok := e.agents.get(ev.AgentID)
	if !ok {
		a = &agentState{}
		e.agents.insert(strings.Clone(ev.AgentID), a)
	}
	// scope_escalation.scope_growth
	if r := e.r.scopeGrowth; r != nil {
		switch {
		case a.firstSeen.IsZero() || ev.TS.Before(a.firstSeen):
			a.firstSeen = ev.TS
			a.baseline = union(a.baseline, ev.DelegationScope)
		case !ev.TS.After(a.firstSeen.Add(r.Thresholds.LearningWindow)):
			if !subset(ev.DelegationScope, a.baseline) {
				a.baseline = union(a.baseline, ev.DelegationScope)
			}
		case r.Enabled && !subset(ev.DelegationScope, a.baseline):
			extra := minus(ev.DelegationScope, a.baseline)
			out = e.match(base(RuleScopeGrowth, actorKey(ev), r.Severity,
				fmt.Sprintf("Credential %s of agent %s carries scopes %s beyond the agent's baseline.", ev.TokenID, ev.AgentID, strings.Join(extra, " ")),
				map[string]string{AttrScopes: strings.Join(extra, " "), "baseline": strings.Join(a.baseline, " ")}), out)
		}
	}
	// cross_tenant.resource_mismatch
	if r := on(e.r.resourceMismatch); r != nil && ev.ResourceTenantID != "" && ev.ResourceTenantID != ev.TenantID {
		sev, verb := r.Severity, "was allowed"
		if !allowed {
			sev, verb = r.Thresholds.DeniedSeverity, "was denied"
		}
		out = e.match(base(RuleResourceMismatch, actorKey(ev), sev,
			fmt.Sprintf("Agent %s of tenant %s touched %s owned by tenant %s; the call %s.", ev.AgentID, ev.TenantID, ev.Resource, ev.ResourceTenantID, verb),
			map[string]string{AttrOtherTenant: ev.ResourceTenantID, AttrDecision: ev.PolicyDecision}), out)
	}
	// cross_tenant.stale_binding
	if r := e.r.staleBinding; r != nil {
		var other, by string
		var earlier uuid.UUID
		a.bindings, other, earlier = touch(a.bindings, ev.TenantID, ev.TS, ev.EventID, r.Window)
		if other != "" {
			by = "agent:" + ev.AgentID
		}
		if ev.TokenID != "" {
			t, ok := e.tokens.get(ev.TokenID)
			if !ok {
				t = &tokenState{}
				e.tokens.insert(strings.Clone(ev.TokenID), t)
			}
			var tother string
			var tearlier uuid.UUID
			t.bindings, tother, tearlier = touch(t.bindings, ev.TenantID, ev.TS, ev.EventID, r.Window)
			if by == "" && tother != "" {
				other, by, earlier = tother, "token:"+ev.TokenID, tearlier
			}
		}
		if r.Enabled && by != "" {
			h := base(RuleStaleBinding, by, r.Severity,
				fmt.Sprintf("Agent %s (token %s) acted under tenant %s and tenant %s within %v.", ev.AgentID, ev.TokenID, other, ev.TenantID, r.Window),
				map[string]string{AttrOtherTenant: other})
			if earlier != uuid.Nil {
				// The other tenant's events were consumed first (another
				// partition): its first event is the evidence, so the
				// detection is the one an in-order consumer would make.
				h.evidence = []uuid.UUID{earlier, ev.EventID}
				h.first = earlier.String()
			}
			out = e.match(h, out)
		}
	}
	// rate.limit_exceeded (requests)
	if r := on(e.r.rateLimit); r != nil {
		if a.rate == nil {
			a.rate = &rateRing{}
		}
		var inc uint32 = 1
		if ev.TS.Unix() <= a.rateWarmed {
			inc = 0 // counted from ClickHouse at start
		}
		n, _ := a.rate.add(ev.TS, inc, 0, r.Window)
		if lim := r.Thresholds.Requests; lim > 0 && n > uint64(lim) {
			out = e.match(base(RuleRateLimit, "agent:"+ev.AgentID, r.Severity,
				fmt.Sprintf("Agent %s made %d requests within %v (ceiling %d).", ev.AgentID, n, r.Window, lim),
				map[string]string{"limit": "requests"}), out)
		}
	}
	if tk, valid := traceKeyOf(ev.TraceID); valid {
		ti, ok := e.traces.get(tk)
		if !ok {
			// Nearly every event starts a trace: its strings are the
			// agent's kept copies (copied again only when they change),
			// and its event ids live in the struct, so a new trace costs
			// two allocations, not eight.
			ti = &traceInfo{tenant: keep(&a.ids.tenant, ev.TenantID), agent: keep(&a.ids.agent, ev.AgentID), token: keep(&a.ids.token, ev.TokenID),
				parent: keep(&a.ids.parent, ev.ParentIdentity), tokenType: keep(&a.ids.tokenType, ev.TokenType)}
			ti.events = ti.evbuf[:0]
			e.traces.insert(tk, ti)
		}
		if len(ti.events) < 3 {
			ti.events = append(ti.events, ev.EventID)
		}
	}
	return out
}

// NeedsSpans reports whether any enabled rule reads spans (token rates);
// if not, span messages need not be decoded.
func (e *Engine) NeedsSpans() bool {
	r := on(e.r.rateLimit)
	return r != nil && r.Thresholds.Tokens > 0
}

// Spans evaluates the rules that need spans (token rates) on the spans of
// one message. A chat span is attributed to the agent named on a span of
// its trace in the same message, else to the agent of the audit events of
// its trace (joined by trace_id).
func (e *Engine) Spans(spans []event.Span, out []Outcome) []Outcome {
	r := on(e.r.rateLimit)
	if r == nil || r.Thresholds.Tokens <= 0 {
		return out
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	agentOf := func(trace string) string {
		for i := range spans {
			if s := &spans[i]; s.AgentID != "" && s.TraceID == trace {
				return s.AgentID
			}
		}
		return ""
	}
	for i := range spans {
		s := &spans[i]
		if s.OperationName != "chat" {
			continue
		}
		tok := s.InputTokens + s.OutputTokens
		if tok == 0 {
			continue
		}
		tk, valid := traceKeyOf(s.TraceID)
		var ti *traceInfo
		joined := false
		if valid {
			ti, joined = e.traces.get(tk)
		}
		who := actor{tenant: s.TenantID, agent: agentOf(s.TraceID), traceID: s.TraceID}
		if joined {
			who.tenant, who.token, who.parent, who.tokenType = ti.tenant, ti.token, ti.parent, ti.tokenType
			if who.agent == "" {
				who.agent = ti.agent
			}
		}
		if who.agent == "" {
			continue
		}
		a, ok := e.agents.get(who.agent)
		if !ok {
			a = &agentState{}
			e.agents.insert(strings.Clone(who.agent), a)
		}
		if a.rate == nil {
			a.rate = &rateRing{}
		}
		if s.StartTime.Unix() <= a.rateWarmed {
			tok = 0 // counted from ClickHouse at start
		}
		_, n := a.rate.add(s.StartTime, 0, tok, r.Window)
		if lim := r.Thresholds.Tokens; n > uint64(lim) {
			var evid []uuid.UUID
			if joined {
				evid = slices.Clone(ti.events)
			}
			out = e.match(hit{
				rule: RuleRateLimit, key: "agent:" + who.agent, sev: r.Severity, who: who, evidence: evid,
				first: "trace:" + s.TraceID, at: s.StartTime,
				summary: fmt.Sprintf("Agent %s used %d LLM tokens within %v (ceiling %d).", who.agent, n, r.Window, lim),
				attrs:   map[string]string{"limit": "tokens"},
			}, out)
		}
	}
	return out
}

func subsetIDs(a, b []uuid.UUID) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// sameFields reports whether the space-separated fields of s are exactly fs.
func sameFields(fs []string, s string) bool {
	i := 0
	for f := range strings.FieldsSeq(s) {
		if i >= len(fs) || fs[i] != f {
			return false
		}
		i++
	}
	return i == len(fs)
}

// keep returns s from *kept, copying it there first when it differs: the
// state's copy of a string that mostly repeats.
func keep(kept *string, s string) string {
	if *kept != s {
		*kept = strings.Clone(s)
	}
	return *kept
}

func cloneAll(ss []string) []string {
	for i := range ss {
		ss[i] = strings.Clone(ss[i])
	}
	return ss
}
