package sim

import (
	"encoding/hex"
	"slices"
	"time"

	"github.com/google/uuid"
)

// AttackKind names an attack scenario.
type AttackKind string

// The attack scenarios. Each instance is recorded as an Attack (ground
// truth); what makes its events suspicious is stated per kind.
const (
	// AttackScopeEscalation: one allowed call whose required_scopes ⊄
	// delegation_scope (enforcement failed). Scopes = required − delegation.
	AttackScopeEscalation AttackKind = "scope_escalation"
	// AttackScopeProbing: ProbeDenials denied calls, 10–30 s apart, each
	// with required_scopes ⊄ delegation_scope (deny reason missing_scope).
	AttackScopeProbing AttackKind = "scope_probing"
	// AttackDelegationExceedsParent: a new agent of an existing parent whose
	// first and only credential carries scopes the parent never holds (not
	// in the parent's delegation.parent_scope, never delegated by it); three
	// allowed calls, required ⊆ delegation. Scopes = delegation − parent.
	AttackDelegationExceedsParent AttackKind = "delegation_exceeds_parent"
	// AttackScopeGrowth: a new token for an existing agent whose scopes are
	// its baseline plus scopes the parent holds (and, where possible, has
	// delegated to a sibling agent); three allowed calls with it.
	// Scopes = new delegation − baseline.
	AttackScopeGrowth AttackKind = "scope_growth"
	// AttackCrossTenant: one allowed call whose resource_tenant_id is
	// another tenant (OtherTenantID).
	AttackCrossTenant AttackKind = "cross_tenant"
	// AttackStaleBinding: the same agent and token act under their own
	// tenant and then, 20–40 s and 40–80 s later, under OtherTenantID (with
	// that tenant's resources). The first event only establishes the binding.
	AttackStaleBinding AttackKind = "stale_binding"
	// AttackRevokedTokenReuse: a token keeps being used after
	// RevokeRequestedAt. The revocation is provoked by a scope_escalation
	// instance with the same token (recorded as its own Attack, RelatedID
	// linking the two); three ordinary-looking calls follow
	// RevokeReuseDelay, +20 s and +40 s after it.
	AttackRevokedTokenReuse AttackKind = "revoked_token_reuse"
	// AttackRateBurst: one agent sends, within 50 s, BurstFactor times the
	// benign per-agent maxima (Limits) of events and of LLM tokens.
	AttackRateBurst AttackKind = "rate_burst"
)

// AllAttackKinds lists every scenario, in scheduling order.
var AllAttackKinds = []AttackKind{
	AttackScopeEscalation, AttackScopeProbing, AttackDelegationExceedsParent, AttackScopeGrowth,
	AttackCrossTenant, AttackStaleBinding, AttackRevokedTokenReuse, AttackRateBurst,
}

// Attack is the ground truth of one injected attack instance.
type Attack struct {
	// ID numbers attacks from 1 in start order.
	ID   int        `json:"id"`
	Kind AttackKind `json:"kind"`
	// TenantID is the tenant the credential is bound to; OtherTenantID is
	// the resource owner (cross_tenant) or the second tenant (stale_binding).
	TenantID       string `json:"tenant_id"`
	OtherTenantID  string `json:"other_tenant_id,omitempty"`
	AgentID        string `json:"agent_id"`
	ParentIdentity string `json:"parent_identity"`
	TokenID        string `json:"token_id"`
	// Scopes are the offending scopes (see each kind).
	Scopes []string `json:"scopes,omitempty"`
	// Start and End are the timestamps of the first and last event.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// EventIDs and TraceIDs (hex) of everything this instance emitted.
	EventIDs []string `json:"event_ids"`
	TraceIDs []string `json:"trace_ids"`
	// RevokeRequestedAt (revoked_token_reuse): when revocation of TokenID is
	// deemed requested (the triggering event's time); every event of this
	// instance is later than RevokeRequestedAt+RevokeReuseDelay.
	RevokeRequestedAt time.Time `json:"revoke_requested_at,omitzero"`
	// RelatedID links a revoked_token_reuse and its triggering escalation.
	RelatedID int `json:"related_id,omitempty"`
	// Requests and Tokens (rate_burst): events and LLM tokens of the burst.
	Requests int   `json:"requests,omitempty"`
	Tokens   int64 `json:"tokens,omitempty"`

	pending int // messages not yet emitted
}

type attackSched struct {
	kind  AttackKind
	next  time.Time
	count int
	off   bool
}

// runAttack starts one instance of as.kind at as.next, or postpones it a
// minute when no victim is available.
func (p *planner) runAttack(as *attackSched) {
	t := as.next
	if b := p.budget; b != nil {
		// An instance must fit in what is left, so the totals stay exact.
		traces, events := p.attackSize(as.kind)
		if b.traces <= traces || b.events >= 0 && b.events <= events {
			as.off = true
			return
		}
	}
	ok := false
	switch as.kind {
	case AttackScopeEscalation:
		ok = p.attackEscalation(t, nil) != nil
	case AttackScopeProbing:
		ok = p.attackProbing(t)
	case AttackDelegationExceedsParent:
		ok = p.attackDelegation(t)
	case AttackScopeGrowth:
		ok = p.attackGrowth(t)
	case AttackCrossTenant:
		ok = p.attackCrossTenant(t)
	case AttackStaleBinding:
		ok = p.attackStaleBinding(t)
	case AttackRevokedTokenReuse:
		ok = p.attackRevokedReuse(t)
	case AttackRateBurst:
		ok = p.attackBurst(t)
	}
	if !ok {
		as.next = t.Add(time.Minute)
		return
	}
	as.count++
	as.next = t.Add(p.cfg.Attacks.Interval)
	if m := p.cfg.Attacks.MaxPerKind; m > 0 && as.count >= m {
		as.off = true
	}
}

// attackSize is the number of trace and event messages of one instance.
func (p *planner) attackSize(k AttackKind) (traces, events int) {
	switch k {
	case AttackScopeEscalation, AttackCrossTenant:
		return 1, 1
	case AttackScopeProbing:
		return p.cfg.Attacks.ProbeDenials, p.cfg.Attacks.ProbeDenials
	case AttackRevokedTokenReuse:
		return 4, 4
	case AttackRateBurst:
		n := p.burstEvents()
		return n / maxToolsPerTrace, n
	}
	return 3, 3
}

// victim picks an agent for an attack at t: not a victim already, with a
// benign baseline, accepted by ok (nil accepts all); nil if there is none.
func (p *planner) victim(t time.Time, ok func(*agent) bool) *agent {
	var cands []*agent
	for _, a := range p.w.agents {
		if !a.pausedUntil.After(t) && a.benignTraces > 0 && (ok == nil || ok(a)) {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return pick(p.r, cands)
}

// claim returns when an attack on a may start: at t, or once a's benign
// traces in flight have ended, so that no benign event of a falls inside
// its attack. (quiet then pauses a.)
func claim(a *agent, t time.Time) time.Time {
	if a.busyUntil.After(t) {
		return a.busyUntil.Add(time.Second)
	}
	return t
}

// newAttack records an instance against victim a with credential c.
func (p *planner) newAttack(kind AttackKind, a *agent, c credential) *Attack {
	at := &Attack{
		ID:             len(p.started) + 1,
		Kind:           kind,
		TenantID:       a.tenant.id,
		AgentID:        a.id,
		ParentIdentity: a.parent.identity,
		TokenID:        c.id,
	}
	p.started = append(p.started, at)
	return at
}

// record adds a planned trace and its events to the attack's truth.
func (at *Attack) record(ts *traceSpec, events []*eventSpec) {
	at.TraceIDs = append(at.TraceIDs, hex.EncodeToString(ts.id[:]))
	for _, ev := range events {
		at.EventIDs = append(at.EventIDs, uuid.UUID(ev.id).String())
		if at.Start.IsZero() || ev.ts.Before(at.Start) {
			at.Start = ev.ts
		}
		if ev.ts.After(at.End) {
			at.End = ev.ts
		}
	}
}

// quiet pauses the victim's benign traffic until Quiet after the attack's
// last event; it then resumes with a fresh token of the same scopes, so no
// benign event ever carries a token that an attack used.
func (p *planner) quiet(a *agent, at *Attack) {
	a.pausedUntil = at.End.Add(p.cfg.Attacks.Quiet + time.Second)
	p.rotate(a, a.pausedUntil)
}

// outOfScopeTools are the tools a cannot call within its delegation.
func outOfScopeTools(scopes []string) []int {
	var out []int
	for i, tl := range tools {
		if !subset(tl.scopes, scopes) {
			out = append(out, i)
		}
	}
	return out
}

// attackEscalation: an allowed call beyond the delegation, by a (or by a
// victim it picks when a is nil; revoked_token_reuse passes its own victim,
// whose token the escalation gets revoked).
func (p *planner) attackEscalation(t time.Time, a *agent) *Attack {
	if a == nil {
		if a = p.victim(t, nil); a == nil {
			return nil
		}
	}
	r := p.r
	t = claim(a, t)
	ti := pick(r, outOfScopeTools(a.cred.scopes))
	at := p.newAttack(AttackScopeEscalation, a, a.cred)
	at.Scopes = minus(tools[ti].scopes, a.cred.scopes)
	ts, evs := p.plan(invocation{
		a: a, start: t, cred: a.cred, children: 3, attack: at,
		calls: []call{{tool: ti, decision: decisionAllow}},
	})
	at.record(ts, evs)
	p.quiet(a, at)
	return at
}

func (p *planner) attackProbing(t time.Time) bool {
	a := p.victim(t, nil)
	if a == nil {
		return false
	}
	r := p.r
	t = claim(a, t)
	at := p.newAttack(AttackScopeProbing, a, a.cred)
	cands := outOfScopeTools(a.cred.scopes)
	for i := range p.cfg.Attacks.ProbeDenials {
		if i > 0 {
			t = t.Add(time.Duration(10+r.IntN(21)) * time.Second)
		}
		ti := pick(r, cands)
		at.Scopes = union(at.Scopes, minus(tools[ti].scopes, a.cred.scopes))
		ts, evs := p.plan(invocation{
			a: a, start: t, cred: a.cred, children: 2, attack: at,
			calls: []call{{tool: ti, decision: decisionDeny, denyReason: "missing_scope"}},
		})
		at.record(ts, evs)
	}
	p.quiet(a, at)
	return true
}

func (p *planner) attackDelegation(t time.Time) bool {
	r := p.r
	tn := pick(r, p.w.tenants)
	par := pick(r, tn.parents)
	sib := pick(r, par.agents)
	// A new agent of par, shaped like its sibling.
	a := &agent{
		idx:     -1,
		id:      "agt_" + hexN(r, 8),
		name:    sib.name + "-ext",
		desc:    sib.desc,
		version: "0.1.0",
		tenant:  tn,
		parent:  par,
		model:   sib.model,
	}
	a.invokeName = "invoke_agent " + a.name
	a.res = newResource(r, a, tn.id)
	var priv []int
	for i, tl := range tools {
		if isPrivileged(tl.scopes) {
			priv = append(priv, i)
		}
	}
	pt := pick(r, priv)
	bt := pick(r, sib.tools)
	scopes := union(tools[bt].scopes, tools[pt].scopes)
	a.cred = newCredential(r, par.human, scopes, t)
	at := p.newAttack(AttackDelegationExceedsParent, a, a.cred)
	at.Scopes = minus(scopes, par.scopes)
	for i, ti := range []int{bt, pt, pt} {
		if i > 0 {
			t = t.Add(time.Duration(20+r.IntN(41)) * time.Second)
		}
		ts, evs := p.plan(invocation{
			a: a, start: t, cred: a.cred, children: 3, attack: at,
			calls: []call{{tool: ti, decision: decisionAllow}},
		})
		at.record(ts, evs)
	}
	return true
}

// growthTool: a benign tool a's parent could delegate that a cannot call,
// preferring one whose scopes a sibling agent already holds; -1 if none.
func growthTool(a *agent) int {
	best := -1
	for _, ti := range benignToolIndexes() {
		tl := &tools[ti]
		if subset(tl.scopes, a.cred.scopes) || !subset(tl.scopes, a.parent.scopes) {
			continue
		}
		for _, s := range a.parent.agents {
			if s != a && subset(tl.scopes, union(s.cred.scopes, a.cred.scopes)) {
				return ti
			}
		}
		if best < 0 {
			best = ti
		}
	}
	return best
}

func (p *planner) attackGrowth(t time.Time) bool {
	a := p.victim(t, func(a *agent) bool { return growthTool(a) >= 0 })
	if a == nil {
		return false
	}
	r := p.r
	t = claim(a, t)
	gt := growthTool(a)
	c := credential{id: tokenID(r, a.cred.typ), typ: a.cred.typ, scopes: union(a.cred.scopes, tools[gt].scopes), issued: t}
	at := p.newAttack(AttackScopeGrowth, a, c)
	at.Scopes = minus(c.scopes, a.cred.scopes)
	for i, ti := range []int{gt, pick(r, a.tools), gt} {
		if i > 0 {
			t = t.Add(time.Duration(20+r.IntN(41)) * time.Second)
		}
		ts, evs := p.plan(invocation{
			a: a, start: t, cred: c, children: 3, attack: at,
			calls: []call{{tool: ti, decision: decisionAllow}},
		})
		at.record(ts, evs)
	}
	p.quiet(a, at)
	return true
}

// otherTenant picks a tenant other than tn.
func (p *planner) otherTenant(tn *tenant) *tenant {
	others := slices.DeleteFunc(slices.Clone(p.w.tenants), func(x *tenant) bool { return x == tn })
	return pick(p.r, others)
}

func tenantScopedTools(a *agent) []int {
	var out []int
	for _, ti := range a.tools {
		if tools[ti].res == resTenant {
			out = append(out, ti)
		}
	}
	return out
}

func (p *planner) attackCrossTenant(t time.Time) bool {
	a := p.victim(t, func(a *agent) bool { return len(tenantScopedTools(a)) > 0 })
	if a == nil {
		return false
	}
	r := p.r
	t = claim(a, t)
	other := p.otherTenant(a.tenant)
	at := p.newAttack(AttackCrossTenant, a, a.cred)
	at.OtherTenantID = other.id
	ts, evs := p.plan(invocation{
		a: a, start: t, cred: a.cred, children: 3, attack: at,
		calls: []call{{tool: pick(r, tenantScopedTools(a)), decision: decisionAllow, resTenant: other.id}},
	})
	at.record(ts, evs)
	p.quiet(a, at)
	return true
}

func (p *planner) attackStaleBinding(t time.Time) bool {
	a := p.victim(t, nil)
	if a == nil {
		return false
	}
	r := p.r
	t = claim(a, t)
	other := p.otherTenant(a.tenant)
	at := p.newAttack(AttackStaleBinding, a, a.cred)
	at.OtherTenantID = other.id
	for i, tenant := range []string{a.tenant.id, other.id, other.id} {
		if i > 0 {
			t = t.Add(time.Duration(20+r.IntN(21)) * time.Second)
		}
		ts, evs := p.plan(invocation{
			a: a, start: t, tenant: tenant, cred: a.cred, children: 3, attack: at,
			calls: []call{{tool: pick(r, a.tools), decision: decisionAllow}},
		})
		at.record(ts, evs)
	}
	p.quiet(a, at)
	return true
}

func (p *planner) attackRevokedReuse(t time.Time) bool {
	a := p.victim(t, nil)
	if a == nil {
		return false
	}
	r := p.r
	tok := a.cred
	trigger := p.attackEscalation(t, a)
	at := p.newAttack(AttackRevokedTokenReuse, a, tok)
	at.RelatedID, trigger.RelatedID = trigger.ID, at.ID
	at.RevokeRequestedAt = trigger.End
	t = trigger.End.Add(p.cfg.Attacks.RevokeReuseDelay)
	for i := range 3 {
		if i > 0 {
			t = t.Add(20 * time.Second)
		}
		ts, evs := p.plan(invocation{
			a: a, start: t, cred: tok, children: 3, attack: at,
			calls: []call{{tool: pick(r, a.tools), decision: decisionAllow}},
		})
		at.record(ts, evs)
	}
	p.quiet(a, at)
	return true
}

// burstEvents is the number of events of one rate_burst.
func (p *planner) burstEvents() int {
	n := int(p.cfg.Attacks.BurstFactor*float64(p.limits.Events)) + 1
	return (n + maxToolsPerTrace - 1) / maxToolsPerTrace * maxToolsPerTrace
}

func (p *planner) attackBurst(t time.Time) bool {
	a := p.victim(t, nil)
	if a == nil {
		return false
	}
	r := p.r
	t = claim(a, t)
	traces := p.burstEvents() / maxToolsPerTrace
	perChat := int64(p.cfg.Attacks.BurstFactor*float64(p.limits.Tokens))/int64(traces) + 1
	at := p.newAttack(AttackRateBurst, a, a.cred)
	step := 50 * time.Second / time.Duration(traces)
	for i := range traces {
		calls := make([]call, maxToolsPerTrace)
		for j := range calls {
			calls[j] = call{tool: pick(r, a.tools), decision: decisionAllow}
		}
		ts, evs := p.plan(invocation{
			a: a, start: t.Add(step * time.Duration(i)), cred: a.cred, children: 1 + maxToolsPerTrace,
			calls: calls, burst: true, burstTokens: perChat, attack: at,
		})
		at.record(ts, evs)
		at.Requests += len(evs)
		for _, s := range ts.spans[1:] {
			if s.op == opChat {
				at.Tokens += s.inTok + s.outTok
			}
		}
	}
	p.quiet(a, at)
	return true
}
