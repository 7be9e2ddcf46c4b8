package sim_test

import (
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/sim"
)

var privileged = []string{"admin:org", "iam:write", "payments:payout", "secrets:read"}

// eventsUntil returns messages of s until it has returned n events, plus
// the drained tail (so every started attack is complete).
func eventsUntil(t testing.TB, s *sim.Sim, n int) []sim.Message {
	t.Helper()
	var out []sim.Message
	events := 0
	for events < n {
		m, ok := s.Next()
		if !ok {
			break
		}
		if !m.IsTrace() {
			events++
		}
		out = append(out, m)
	}
	return append(out, s.Drain()...)
}

// TestBenignInvariants checks the package doc's benign invariants over
// 100,000 events of benign traffic, and over the benign part of traffic
// with every attack on.
func TestBenignInvariants(t *testing.T) {
	t.Run("benign only", func(t *testing.T) {
		cfg := sim.DefaultConfig()
		s := newSim(t, cfg)
		msgs := eventsUntil(t, s, scale(100_000))
		if len(s.Truth()) != 0 {
			t.Fatalf("attacks without any enabled: %v", s.Truth())
		}
		checkBenign(t, cfg, s.Agents(), msgs, nil, s.Limits())
	})
	t.Run("with attacks", func(t *testing.T) {
		cfg := allAttacks()
		s := newSim(t, cfg)
		msgs := eventsUntil(t, s, scale(60_000))
		checkBenign(t, cfg, s.Agents(), msgs, s.Truth(), s.Limits())
	})
}

func checkBenign(t *testing.T, cfg sim.Config, agents []sim.AgentInfo, msgs []sim.Message, truth []sim.Attack, lim sim.Limits) {
	t.Helper()
	attackEvent := map[string]bool{}
	attackTrace := map[string]bool{}
	for _, at := range truth {
		for _, id := range at.EventIDs {
			attackEvent[id] = true
		}
		for _, id := range at.TraceIDs {
			attackTrace[id] = true
		}
	}
	info := map[string]sim.AgentInfo{}
	for _, a := range agents {
		info[a.AgentID] = a
	}
	var (
		benign      []auditEvent
		agentTenant = map[string]string{}
		tokenTenant = map[string]string{}
		tokenAgent  = map[string]string{}
		agentScopes = map[string][]string{}
		eventTimes  = map[string][]time.Time{}
		rootTimes   = map[string][]time.Time{}
		tokenTimes  = map[string][]timedTokens{}
		denies      int
	)
	decoded := 0
	for _, m := range msgs {
		if m.IsTrace() {
			// Span-level rates are checked on the first traces; decoding
			// them all would only slow the test.
			if attackTrace[string(m.Key)] || decoded >= scale(20_000) {
				continue
			}
			decoded++
			td := decodeTraces(t, m, cfg.SpanEncoding)
			ss := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
			agentID, _ := ss.At(0).Attributes().Get("gen_ai.agent.id")
			rootTimes[agentID.Str()] = append(rootTimes[agentID.Str()], ss.At(0).StartTimestamp().AsTime())
			for i := 1; i < ss.Len(); i++ {
				at := ss.At(i).Attributes()
				var n int64
				for _, k := range []string{"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens"} {
					if v, ok := at.Get(k); ok {
						n += v.Int()
					}
				}
				if n > 0 {
					tokenTimes[agentID.Str()] = append(tokenTimes[agentID.Str()], timedTokens{ss.At(i).StartTimestamp().AsTime(), n})
				}
			}
			continue
		}
		e := decodeEvent(t, m)
		if attackEvent[e.EventID] {
			continue
		}
		benign = append(benign, e)
		a, ok := info[e.AgentID]
		switch {
		case !ok:
			t.Fatalf("benign event %s of unknown agent %s", e.EventID, e.AgentID)
		// 1. required ⊆ delegation
		case !isSubset(e.RequiredScopes, e.DelegationScope):
			t.Fatalf("benign event %s: required %v ⊄ delegation %v", e.EventID, e.RequiredScopes, e.DelegationScope)
		// 2. delegation ⊆ parent's, no privileged scope
		case !isSubset(e.DelegationScope, e.parentScopes()):
			t.Fatalf("benign event %s: delegation %v ⊄ parent %v", e.EventID, e.DelegationScope, e.parentScopes())
		case slices.ContainsFunc(e.parentScopes(), func(s string) bool { return slices.Contains(privileged, s) }):
			t.Fatalf("benign event %s: parent holds a privileged scope: %v", e.EventID, e.parentScopes())
		// 3. own tenant's resources
		case e.ResourceTenantID != "" && e.ResourceTenantID != e.TenantID:
			t.Fatalf("benign event %s: resource of %s, tenant %s", e.EventID, e.ResourceTenantID, e.TenantID)
		case e.TenantID != a.TenantID || e.ParentIdentity != a.ParentIdentity:
			t.Fatalf("benign event %s: tenant %s parent %s, agent belongs to %s / %s", e.EventID, e.TenantID, e.ParentIdentity, a.TenantID, a.ParentIdentity)
		case !slices.Equal(e.DelegationScope, a.Scopes):
			t.Fatalf("benign event %s: delegation %v, agent baseline %v", e.EventID, e.DelegationScope, a.Scopes)
		}
		if e.PolicyDecision == "deny" {
			denies++
			if e.Attributes["policy.reason"] == "missing_scope" {
				t.Fatalf("benign deny %s for missing scope", e.EventID)
			}
		}
		// 4. stable binding
		for _, b := range []struct {
			m      map[string]string
			k, v   string
			what   string
			detail string
		}{
			{agentTenant, e.AgentID, e.TenantID, "agent", "tenant"},
			{tokenTenant, e.TokenID, e.TenantID, "token", "tenant"},
			{tokenAgent, e.TokenID, e.AgentID, "token", "agent"},
		} {
			if old, ok := b.m[b.k]; ok && old != b.v {
				t.Fatalf("benign %s %s under %s %s and %s", b.what, b.k, b.detail, old, b.v)
			}
			b.m[b.k] = b.v
		}
		// 5. stable scopes
		if old, ok := agentScopes[e.AgentID]; ok && !slices.Equal(old, e.DelegationScope) {
			t.Fatalf("benign agent %s changed scopes %v → %v", e.AgentID, old, e.DelegationScope)
		}
		agentScopes[e.AgentID] = e.DelegationScope
		eventTimes[e.AgentID] = append(eventTimes[e.AgentID], e.TS)
	}
	// 6. and 8.: attacked tokens and victims.
	for _, at := range truth {
		for _, e := range benign {
			if e.TokenID == at.TokenID && !e.TS.Before(at.Start) {
				t.Fatalf("benign event %s at %v uses token %s of attack %d (started %v)", e.EventID, e.TS, e.TokenID, at.ID, at.Start)
			}
			if e.AgentID == at.AgentID && !e.TS.Before(at.Start) && !e.TS.After(at.End.Add(cfg.Attacks.Quiet)) {
				t.Fatalf("benign event %s at %v of agent %s inside attack %d (%v–%v + quiet)", e.EventID, e.TS, e.AgentID, at.ID, at.Start, at.End)
			}
		}
	}
	// 7. moderate rates.
	maxEvents, maxTraces := 0, 0
	var maxTokens int64
	for agent, ts := range eventTimes {
		n := maxInWindow(ts, lim.Window)
		maxEvents = max(maxEvents, n)
		if n > lim.Events {
			t.Errorf("agent %s: %d benign events within %v, limit %d", agent, n, lim.Window, lim.Events)
		}
	}
	for agent, ts := range rootTimes {
		n := maxInWindow(ts, lim.Window)
		maxTraces = max(maxTraces, n)
		if n > lim.Traces {
			t.Errorf("agent %s: %d benign traces within %v, limit %d", agent, n, lim.Window, lim.Traces)
		}
	}
	for agent, tt := range tokenTimes {
		n := maxTokensInWindow(tt, lim.Window)
		maxTokens = max(maxTokens, n)
		if n > lim.Tokens {
			t.Errorf("agent %s: %d benign tokens within %v, limit %d", agent, n, lim.Window, lim.Tokens)
		}
	}
	if len(benign) == 0 {
		t.Fatal("no benign events")
	}
	t.Logf("%d benign events (%d denied) of %d agents hold the invariants; per-agent peaks per %v: %d traces, %d events, %d tokens (limits %d, %d, %d); %d attacks",
		len(benign), denies, len(agentTenant), lim.Window, maxTraces, maxEvents, maxTokens, lim.Traces, lim.Events, lim.Tokens, len(truth))
}

type timedTokens struct {
	t time.Time
	n int64
}

func maxInWindow(ts []time.Time, w time.Duration) int {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) > w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func maxTokensInWindow(tt []timedTokens, w time.Duration) int64 {
	sort.Slice(tt, func(i, j int) bool { return tt[i].t.Before(tt[j].t) })
	var best, sum int64
	lo := 0
	for hi := range tt {
		sum += tt[hi].n
		for tt[hi].t.Sub(tt[lo].t) > w {
			sum -= tt[lo].n
			lo++
		}
		best = max(best, sum)
	}
	return best
}

// TestAttackKinds runs each scenario alone and checks that every instance
// has the property it claims.
func TestAttackKinds(t *testing.T) {
	for _, kind := range sim.AllAttackKinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			cfg := sim.DefaultConfig()
			cfg.Seed = 7
			cfg.TraceRate = 5 // fewer benign messages per simulated minute
			cfg.Attacks.Kinds = []sim.AttackKind{kind}
			cfg.Attacks.Interval = 3 * time.Minute
			cfg.Attacks.Warmup = 20 * time.Second
			cfg.Attacks.Quiet = 2 * time.Minute
			cfg.Attacks.MaxPerKind = 3
			s := newSim(t, cfg)
			count := func(truth []sim.Attack) int {
				n := 0
				for _, at := range truth {
					if at.Kind == kind {
						n++
					}
				}
				return n
			}
			var msgs []sim.Message
			for count(s.Truth()) < cfg.Attacks.MaxPerKind && len(msgs) < 1_000_000 {
				msgs = append(msgs, take(t, s, 1000)...)
			}
			msgs = append(msgs, s.Drain()...)
			truth := s.Truth()
			n := count(truth)
			if n != cfg.Attacks.MaxPerKind {
				t.Fatalf("%d %s instances, want %d: %+v", n, kind, cfg.Attacks.MaxPerKind, truth)
			}
			checkAttacks(t, cfg, msgs, truth, s.Limits())
		})
	}
}

// checkAttacks verifies every recorded attack against its events.
func checkAttacks(t *testing.T, cfg sim.Config, msgs []sim.Message, truth []sim.Attack, lim sim.Limits) {
	t.Helper()
	events := map[string]auditEvent{}
	traces := map[string]bool{}
	var all []auditEvent
	for _, m := range msgs {
		if m.IsTrace() {
			traces[string(m.Key)] = true
			continue
		}
		e := decodeEvent(t, m)
		events[e.EventID] = e
		all = append(all, e)
	}
	byID := map[int]sim.Attack{}
	owner := map[string]int{}
	for _, at := range truth {
		byID[at.ID] = at
		for _, id := range at.EventIDs {
			if o, ok := owner[id]; ok {
				t.Fatalf("event %s in attacks %d and %d", id, o, at.ID)
			}
			owner[id] = at.ID
		}
	}
	for _, at := range truth {
		if len(at.EventIDs) == 0 || len(at.TraceIDs) == 0 {
			t.Fatalf("attack %d (%s) has no events or traces", at.ID, at.Kind)
		}
		for _, id := range at.TraceIDs {
			if !traces[id] {
				t.Fatalf("attack %d: trace %s not emitted", at.ID, id)
			}
		}
		var evs []auditEvent
		for _, id := range at.EventIDs {
			e, ok := events[id]
			if !ok {
				t.Fatalf("attack %d: event %s not emitted", at.ID, id)
			}
			if e.AgentID != at.AgentID || e.TokenID != at.TokenID || e.ParentIdentity != at.ParentIdentity {
				t.Fatalf("attack %d: event %s by %s/%s/%s, truth says %s/%s/%s", at.ID, id, e.AgentID, e.TokenID, e.ParentIdentity, at.AgentID, at.TokenID, at.ParentIdentity)
			}
			if e.TS.Before(at.Start) || e.TS.After(at.End) {
				t.Fatalf("attack %d: event at %v outside %v–%v", at.ID, e.TS, at.Start, at.End)
			}
			evs = append(evs, e)
		}
		checkAttack(t, cfg, at, evs, byID, all, lim)
	}
}

func checkAttack(t *testing.T, cfg sim.Config, at sim.Attack, evs []auditEvent, byID map[int]sim.Attack, all []auditEvent, lim sim.Limits) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("attack %d (%s): "+format, append([]any{at.ID, at.Kind}, args...)...)
	}
	for _, e := range evs {
		if at.Kind != sim.AttackStaleBinding && e.TenantID != at.TenantID {
			fail("event under tenant %s, want %s", e.TenantID, at.TenantID)
		}
		if at.Kind != sim.AttackCrossTenant && e.ResourceTenantID != "" && e.ResourceTenantID != e.TenantID {
			fail("event touches tenant %s's resource", e.ResourceTenantID)
		}
		escalates := !isSubset(e.RequiredScopes, e.DelegationScope)
		if escalates != (at.Kind == sim.AttackScopeEscalation || at.Kind == sim.AttackScopeProbing) {
			fail("required %v ⊄ delegation %v is %v", e.RequiredScopes, e.DelegationScope, escalates)
		}
		if want := at.Kind == sim.AttackScopeProbing; (e.PolicyDecision == "deny") != want {
			fail("policy_decision %s", e.PolicyDecision)
		}
	}
	// Baseline: the scopes of the agent's other (benign) tokens.
	baseline := func() []string {
		for _, e := range all {
			if e.AgentID == at.AgentID && e.TokenID != at.TokenID && e.TS.Before(at.Start) {
				return e.DelegationScope
			}
		}
		return nil
	}
	switch at.Kind {
	case sim.AttackScopeEscalation:
		e := evs[0]
		if len(evs) != 1 || !slices.Equal(at.Scopes, minus(e.RequiredScopes, e.DelegationScope)) {
			fail("%d events, scopes %v, event required %v delegation %v", len(evs), at.Scopes, e.RequiredScopes, e.DelegationScope)
		}
	case sim.AttackScopeProbing:
		if len(evs) != cfg.Attacks.ProbeDenials {
			fail("%d events, want %d denials", len(evs), cfg.Attacks.ProbeDenials)
		}
		for _, e := range evs {
			if e.Attributes["policy.reason"] != "missing_scope" {
				fail("denial reason %v", e.Attributes["policy.reason"])
			}
		}
	case sim.AttackDelegationExceedsParent:
		if len(evs) != 3 {
			fail("%d events", len(evs))
		}
		for _, e := range evs {
			excess := minus(e.DelegationScope, e.parentScopes())
			if len(excess) == 0 || !slices.Equal(excess, at.Scopes) {
				fail("delegation %v − parent %v = %v, truth %v", e.DelegationScope, e.parentScopes(), excess, at.Scopes)
			}
		}
		// The parent never holds (nor delegated) those scopes anywhere else.
		for _, e := range all {
			if e.ParentIdentity == at.ParentIdentity && e.AgentID != at.AgentID {
				if slices.ContainsFunc(at.Scopes, func(s string) bool {
					return slices.Contains(e.DelegationScope, s) || slices.Contains(e.parentScopes(), s)
				}) {
					fail("parent's other event %s carries %v", e.EventID, at.Scopes)
				}
			}
			if e.AgentID == at.AgentID && !slices.Contains(at.EventIDs, e.EventID) {
				fail("the new agent has events outside the attack")
			}
		}
	case sim.AttackScopeGrowth:
		base := baseline()
		if base == nil {
			fail("victim has no baseline before the attack")
		}
		for _, e := range evs {
			grown := minus(e.DelegationScope, base)
			if len(grown) == 0 || !slices.Equal(grown, at.Scopes) || !isSubset(e.DelegationScope, e.parentScopes()) || !isSubset(base, e.DelegationScope) {
				fail("delegation %v, baseline %v, parent %v, truth scopes %v", e.DelegationScope, base, e.parentScopes(), at.Scopes)
			}
		}
	case sim.AttackCrossTenant:
		e := evs[0]
		if len(evs) != 1 || e.ResourceTenantID != at.OtherTenantID || e.ResourceTenantID == e.TenantID || e.ResourceTenantID == "" {
			fail("%d events, resource tenant %s, tenant %s, other %s", len(evs), e.ResourceTenantID, e.TenantID, at.OtherTenantID)
		}
		if !strings.Contains(e.Resource, at.OtherTenantID) {
			fail("resource %s is not %s's", e.Resource, at.OtherTenantID)
		}
	case sim.AttackStaleBinding:
		if len(evs) != 3 || evs[0].TenantID != at.TenantID || evs[1].TenantID != at.OtherTenantID || evs[2].TenantID != at.OtherTenantID || at.TenantID == at.OtherTenantID {
			fail("tenants of events do not go %s → %s", at.TenantID, at.OtherTenantID)
		}
		if d := evs[2].TS.Sub(evs[0].TS); d > 2*time.Minute {
			fail("binding switch spread over %v", d)
		}
	case sim.AttackRevokedTokenReuse:
		trig, ok := byID[at.RelatedID]
		if !ok || trig.Kind != sim.AttackScopeEscalation || trig.TokenID != at.TokenID || trig.RelatedID != at.ID {
			fail("trigger %d missing or unlinked: %+v", at.RelatedID, trig)
		}
		if !at.RevokeRequestedAt.Equal(trig.End) {
			fail("revocation at %v, trigger at %v", at.RevokeRequestedAt, trig.End)
		}
		for _, e := range evs {
			if !e.TS.After(at.RevokeRequestedAt.Add(cfg.Attacks.RevokeReuseDelay)) {
				fail("reuse at %v, not after revocation %v + %v", e.TS, at.RevokeRequestedAt, cfg.Attacks.RevokeReuseDelay)
			}
		}
		if len(evs) != 3 {
			fail("%d reuse events", len(evs))
		}
	case sim.AttackRateBurst:
		var ts []time.Time
		for _, e := range evs {
			ts = append(ts, e.TS)
		}
		n := maxInWindow(ts, time.Minute)
		if float64(n) < cfg.Attacks.BurstFactor*float64(lim.Events) || n != at.Requests {
			fail("%d events in a minute (requests %d), want ≥ %v × %d", n, at.Requests, cfg.Attacks.BurstFactor, lim.Events)
		}
		if float64(at.Tokens) < cfg.Attacks.BurstFactor*float64(lim.Tokens) {
			fail("%d tokens, want ≥ %v × %d", at.Tokens, cfg.Attacks.BurstFactor, lim.Tokens)
		}
	default:
		fail("unknown kind")
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
