package sim

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Token types of the audit event schema.
const (
	TokenSession = "session"
	TokenOAuth   = "oauth"
	TokenM2M     = "m2m"
	TokenAPIKey  = "api_key"
)

// world is the population: tenants, their parent identities and agents.
type world struct {
	tenants []*tenant
	agents  []*agent // all agents, in creation order (the scheduler's order)
}

type tenant struct {
	id      string
	parents []*parent
	agents  []*agent
}

// parent is the human or service that delegates to agents.
type parent struct {
	identity string   // "user:alice@acme.example" or "service:ci-bot@acme.example"
	human    bool     // users get session/oauth tokens, services m2m/api_key
	scopes   []string // what the parent holds, sorted; a superset of every benign delegation
	agents   []*agent
	scopeStr string
}

// scopeString is scopes as an OAuth scope string (space-separated).
func (p *parent) scopeString() string {
	if p.scopeStr == "" {
		p.scopeStr = strings.Join(p.scopes, " ")
	}
	return p.scopeStr
}

// credential is a token an agent acts with.
type credential struct {
	id     string
	typ    string
	scopes []string // delegation_scope, sorted
	issued time.Time
}

type agent struct {
	idx     int
	id      string // gen_ai.agent.id
	name    string
	desc    string
	version string
	// invokeName is the root span's name, "invoke_agent {name}".
	invokeName string
	tenant     *tenant
	parent     *parent
	model      *model
	tools      []int // indexes into tools: every benign tool whose scopes ⊆ cred.scopes
	cred       credential
	res        *resource

	// Scheduler state.
	next         time.Time // start of its next benign trace
	pausedUntil  time.Time // victim of an attack: no benign traffic before this
	busyUntil    time.Time // end of its last planned benign trace
	benignTraces int
	conversation string
	convTurns    int
}

// resource is the OTel resource an agent's service reports.
type resource struct {
	attrs []kv
	scope string
	ver   string
}

// kv is a string attribute.
type kv struct{ k, v string }

// newWorld draws the population from r.
func newWorld(r *rand.Rand, cfg Config, start time.Time) *world {
	w := &world{}
	names := tenantNames(r, cfg.Tenants)
	benignTools := benignToolIndexes()
	for _, name := range names {
		t := &tenant{id: name}
		w.tenants = append(w.tenants, t)
		nParents := max(1, (cfg.AgentsPerTenant+2)/3)
		humans := shuffled(r, humanNames)
		services := shuffled(r, serviceNames)
		for i := range nParents {
			p := &parent{human: i%3 != 2}
			if p.human {
				p.identity = "user:" + humans[i%len(humans)] + "@" + name + ".example"
			} else {
				p.identity = "service:" + services[i%len(services)] + "@" + name + ".example"
			}
			n := 6 + r.IntN(5)
			if !p.human {
				n = 4 + r.IntN(4)
			}
			p.scopes = sortedSample(r, benignScopes, n)
			// Every parent can use a few tools.
			for len(toolsWithin(benignTools, p.scopes)) < 4 {
				p.scopes = union(p.scopes, tools[pick(r, benignTools)].scopes)
			}
			t.parents = append(t.parents, p)
		}
		roles := shuffled(r, agentRoles)
		for i := range cfg.AgentsPerTenant {
			p := t.parents[i%len(t.parents)]
			role := roles[i%len(roles)]
			name := role.name
			if i >= len(roles) {
				name += "-" + strconv.Itoa(i/len(roles)+1)
			}
			a := &agent{
				idx:     len(w.agents),
				id:      "agt_" + hexN(r, 8),
				name:    name,
				desc:    role.desc,
				version: strconv.Itoa(1+r.IntN(3)) + "." + strconv.Itoa(r.IntN(10)) + "." + strconv.Itoa(r.IntN(20)),
				tenant:  t,
				parent:  p,
				model:   &models[r.IntN(len(models))],
			}
			// Delegation: the scopes of 2–4 of the parent's tools, always a
			// strict subset of what the parent holds (room for scope_growth).
			avail := toolsWithin(benignTools, p.scopes)
			var scopes []string
			for _, ti := range sample(r, avail, 2+r.IntN(3)) {
				scopes = union(scopes, tools[ti].scopes)
			}
			if len(scopes) == 0 { // only scope-less tools picked
				scopes = []string{pick(r, p.scopes)}
			}
			if len(scopes) >= len(p.scopes) {
				p.scopes = union(p.scopes, []string{extraScope(r, p.scopes)})
			}
			a.invokeName = "invoke_agent " + a.name
			a.tools = toolsWithin(benignTools, scopes)
			a.cred = newCredential(r, p.human, scopes, start)
			a.res = newResource(r, a, t.id)
			p.agents = append(p.agents, a)
			t.agents = append(t.agents, a)
			w.agents = append(w.agents, a)
		}
	}
	return w
}

// tenantNames: the known names first, then generated unique ones.
func tenantNames(r *rand.Rand, n int) []string {
	names := slices.Clone(knownTenants[:min(n, len(knownTenants))])
	seen := make(map[string]bool, n)
	for _, s := range names {
		seen[s] = true
	}
	for len(names) < n {
		s := pick(r, tenantPrefixes) + pick(r, tenantSuffixes)
		if seen[s] {
			s += strconv.Itoa(len(names))
		}
		if !seen[s] {
			seen[s] = true
			names = append(names, s)
		}
	}
	return names
}

func newCredential(r *rand.Rand, human bool, scopes []string, at time.Time) credential {
	var typ string
	switch x := r.IntN(10); {
	case human && x < 6:
		typ = TokenOAuth
	case human:
		typ = TokenSession
	case x < 7:
		typ = TokenM2M
	default:
		typ = TokenAPIKey
	}
	return credential{id: tokenID(r, typ), typ: typ, scopes: scopes, issued: at}
}

func tokenID(r *rand.Rand, typ string) string {
	prefix := map[string]string{TokenOAuth: "oat_", TokenSession: "ses_", TokenM2M: "m2m_", TokenAPIKey: "key_"}[typ]
	return prefix + alnumN(r, 24)
}

func newResource(r *rand.Rand, a *agent, tenant string) *resource {
	sdk := pick(r, sdkLanguages)
	region := pick(r, regions)
	env := "production"
	if r.IntN(5) == 0 {
		env = "staging"
	}
	svc := a.name + "-agent"
	return &resource{
		attrs: []kv{
			{"service.name", svc},
			{"service.version", a.version},
			{"service.instance.id", hexN(r, 4) + "-" + hexN(r, 2) + "-" + hexN(r, 2)},
			{"deployment.environment.name", env},
			{"tenant.id", tenant},
			{"host.name", "ip-10-" + strconv.Itoa(r.IntN(256)) + "-" + strconv.Itoa(r.IntN(256)) + "-" + strconv.Itoa(r.IntN(256))},
			{"cloud.region", region},
			{"k8s.namespace.name", "agents-" + tenant},
			{"k8s.pod.name", svc + "-" + hexN(r, 3)},
			{"telemetry.sdk.language", sdk},
		},
		scope: a.model.scope,
		ver:   a.model.scopeVer,
	}
}

// withTenant returns a copy of res whose tenant.id (and namespace) is
// tenant: the same service acting under another tenant (stale_binding).
func (res *resource) withTenant(tenant string) *resource {
	c := *res
	c.attrs = slices.Clone(res.attrs)
	for i := range c.attrs {
		switch c.attrs[i].k {
		case "tenant.id":
			c.attrs[i].v = tenant
		case "k8s.namespace.name":
			c.attrs[i].v = "agents-" + tenant
		}
	}
	return &c
}

// server is the backend host of tool ti for tenant.
func toolServer(ti int, tenant string) string {
	return strings.Replace(tools[ti].server, "%s", tenant, 1)
}

func benignToolIndexes() []int {
	var out []int
	for i, t := range tools {
		if !isPrivileged(t.scopes) {
			out = append(out, i)
		}
	}
	return out
}

func isPrivileged(scopes []string) bool {
	for _, s := range scopes {
		if slices.Contains(privilegedScopes, s) {
			return true
		}
	}
	return false
}

// toolsWithin returns the tools of candidates whose scopes ⊆ scopes.
func toolsWithin(candidates []int, scopes []string) []int {
	var out []int
	for _, ti := range candidates {
		if subset(tools[ti].scopes, scopes) {
			out = append(out, ti)
		}
	}
	return out
}

func extraScope(r *rand.Rand, have []string) string {
	var rest []string
	for _, s := range benignScopes {
		if !slices.Contains(have, s) {
			rest = append(rest, s)
		}
	}
	return pick(r, rest)
}

// Set helpers over sorted string slices.

func subset(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}

// union returns the sorted union of a and b (a new slice).
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// minus returns the elements of a not in b, in a's order.
func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func shuffled[T any](r *rand.Rand, xs []T) []T {
	out := slices.Clone(xs)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func sample[T any](r *rand.Rand, xs []T, n int) []T {
	return shuffled(r, xs)[:min(n, len(xs))]
}

func sortedSample(r *rand.Rand, xs []string, n int) []string {
	out := sample(r, xs, n)
	slices.Sort(out)
	return out
}
