package sim

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// Generation happens in two steps. The planner draws every random decision,
// in a fixed order, from one RNG and produces specs (plain values: times,
// ids, names, token counts, tool arguments) in message-time order. Rendering
// turns a spec into bytes (pdata + protobuf/JSON for traces, JSON + SHA-256
// for events) and uses no randomness, so specs can be rendered in parallel
// (Workload) without changing a byte of the output.

// Operation names (gen_ai.operation.name).
const (
	opInvoke = iota
	opChat
	opTool
)

// Policy decisions.
const (
	decisionAllow = "allow"
	decisionDeny  = "deny"
)

// maxTraceDuration bounds a benign trace from root start to last child end;
// Limits relies on it.
const maxTraceDuration = 20 * time.Second

// Token bounds of one benign chat call (Limits relies on them).
const (
	maxChatInputTokens  = 8000
	maxChatOutputTokens = 2000
	maxChatsPerTrace    = 4
	maxToolsPerTrace    = 3
)

type spanSpec struct {
	op         uint8
	id         [8]byte
	start, end time.Time
	errType    string // error.type; sets the span status to Error

	// chat
	inTok, outTok, cacheRead int64
	maxTokens                int64
	temperature              float64
	respID                   string
	finish                   string

	// execute_tool
	tool       int
	callID     string
	args       string
	server     string
	mcpSession string
	httpStatus int64
}

type traceSpec struct {
	id           [16]byte
	a            *agent // static fields only (name, id, model, …)
	res          *resource
	deprecated   bool
	conversation string
	spans        []spanSpec // spans[0] is the invoke_agent root
}

type eventSpec struct {
	id             [16]byte
	ts             time.Time
	tenant         string
	agentID        string
	parent         string
	parentScope    string
	token          string
	tokenType      string
	delegation     []string
	required       []string
	tool           int
	args           string // hashed into tool_params_hash at render time
	resource       string
	resourceTenant string
	decision       string
	denyReason     string
	traceID        [16]byte
	spanID         [8]byte
	traced         bool
	conversation   string
}

// msgSpec is one message to render.
type msgSpec struct {
	time   time.Time
	seq    uint64 // tie-break: generation order
	trace  *traceSpec
	event  *eventSpec
	attack *Attack // the attack this message belongs to, if any
}

// budget makes a Workload (or a Sim with MaxTraces) exact: the remaining
// trace and event messages; events < 0 leaves events unconstrained.
type budget struct {
	traces, events int
}

type planner struct {
	cfg     Config
	r       *rand.Rand
	w       *world
	limits  Limits
	meanGap time.Duration
	minGap  time.Duration

	agents  agentHeap
	attacks []*attackSched
	pending msgHeap
	seq     uint64

	started []*Attack // attacks in start order
	budget  *budget
	done    bool // no more actions: only pending messages remain
}

func newPlanner(cfg Config, b *budget) *planner {
	r := rand.New(rand.NewPCG(cfg.Seed, 0x61676e74_61756474)) // "agntaudt"
	p := &planner{cfg: cfg, r: r, budget: b}
	p.w = newWorld(r, cfg, cfg.Start)
	n := len(p.w.agents)
	p.meanGap = max(time.Duration(float64(n)/cfg.TraceRate*float64(time.Second)), 2)
	p.minGap = p.meanGap / 2
	p.limits = computeLimits(p.minGap)
	// Agents start staggered over one mean gap.
	for _, a := range p.w.agents {
		a.next = cfg.Start.Add(time.Duration(r.Int64N(int64(p.meanGap) + 1)))
		p.agents = append(p.agents, a)
	}
	heap.Init(&p.agents)
	kinds := cfg.Attacks.Kinds
	for i, k := range kinds {
		p.attacks = append(p.attacks, &attackSched{
			kind: k,
			next: cfg.Start.Add(cfg.Attacks.Warmup + cfg.Attacks.Interval*time.Duration(i)/time.Duration(len(kinds))),
		})
	}
	return p
}

// Limits are the per-agent maxima benign traffic never exceeds in any
// window of Window, counted on event timestamps (Events), root-span start
// times (Traces) and chat-span start times (Tokens: input + output). A
// rate_burst exceeds Events and Tokens by Config.Attacks.BurstFactor.
type Limits struct {
	Window time.Duration `json:"window"`
	Traces int           `json:"traces"`
	Events int           `json:"events"`
	Tokens int64         `json:"tokens"`
}

func computeLimits(minGap time.Duration) Limits {
	// Root starts of one agent are at least minGap apart; a trace's spans
	// end within maxTraceDuration of its root start.
	traces := int(time.Minute/minGap) + 1
	reach := int((time.Minute+maxTraceDuration)/minGap) + 1
	return Limits{
		Window: time.Minute,
		Traces: traces,
		Events: reach * maxToolsPerTrace,
		Tokens: int64(reach) * maxChatsPerTrace * (maxChatInputTokens + maxChatOutputTokens),
	}
}

// next returns the next message spec in time order; ok is false when a
// budgeted planner has nothing left.
func (p *planner) next() (msgSpec, bool) {
	for {
		t, ok := p.nextActionTime()
		if p.pending.Len() > 0 && (!ok || p.pending.minTime() <= t.UnixNano()) {
			// Every message an action at time ≥ t creates is at ≥ t, so
			// nothing planned later can precede this one.
			return p.pending.pop(), true
		}
		if !ok {
			return msgSpec{}, false
		}
		p.step()
	}
}

// drain stops all further actions; next then returns what is pending.
func (p *planner) drain() { p.done = true }

func (p *planner) nextActionTime() (time.Time, bool) {
	if p.done {
		return time.Time{}, false
	}
	t := p.agents[0].next
	if as := p.nextAttack(); as != nil && as.next.Before(t) {
		t = as.next
	}
	return t, true
}

func (p *planner) nextAttack() *attackSched {
	var best *attackSched
	for _, as := range p.attacks {
		if !as.off && (best == nil || as.next.Before(best.next)) {
			best = as
		}
	}
	return best
}

func (p *planner) step() {
	a := p.agents[0]
	if as := p.nextAttack(); as != nil && !as.next.After(a.next) {
		p.runAttack(as)
		return
	}
	t := a.next
	if t.Before(a.pausedUntil) {
		a.next = a.pausedUntil.Add(p.gap())
		heap.Fix(&p.agents, 0)
		return
	}
	if p.budget != nil && p.budget.traces == 0 {
		p.finishBudget(t)
		return
	}
	p.benignTrace(a, t)
	a.benignTraces++
	a.next = t.Add(p.gap())
	heap.Fix(&p.agents, 0)
}

// gap draws the time to an agent's next trace: minGap plus an exponential
// with mean meanGap-minGap.
func (p *planner) gap() time.Duration {
	return p.minGap + time.Duration(p.r.ExpFloat64()*float64(p.meanGap-p.minGap))
}

// finishBudget ends a Workload: events still owed (more than three per
// trace were asked for) become untraced events, then nothing more happens.
func (p *planner) finishBudget(t time.Time) {
	var active []*agent
	for _, a := range p.w.agents {
		if !a.pausedUntil.After(t) {
			active = append(active, a)
		}
	}
	if len(active) == 0 {
		active = p.w.agents
	}
	for p.budget.events > 0 {
		t = t.Add(time.Millisecond)
		p.untracedEvent(pick(p.r, active), t)
	}
	p.done = true
}

func (p *planner) push(m msgSpec) {
	p.seq++
	m.seq = p.seq
	if m.attack != nil {
		m.attack.pending++
	}
	if b := p.budget; b != nil {
		if m.trace != nil {
			b.traces--
		} else if b.events >= 0 {
			b.events--
		}
	}
	p.pending.push(m)
}

// call is one execute_tool step of an invocation.
type call struct {
	tool       int
	decision   string
	denyReason string
	errType    string
	resTenant  string // tenant whose resource is touched ("" = the event's tenant)
}

// invocation describes one trace to plan.
type invocation struct {
	a        *agent
	start    time.Time
	tenant   string // the event's tenant_id (and the span resource's tenant.id)
	cred     credential
	children int // 2–4: the first is a chat, len(calls) of the rest are tools
	calls    []call
	// burst: short spans and burstTokens input tokens in the single chat.
	burst       bool
	burstTokens int64
	attack      *Attack
}

// benignTrace plans one benign invocation of a at t.
func (p *planner) benignTrace(a *agent, t time.Time) {
	r := p.r
	if ttl := p.cfg.TokenTTL; ttl > 0 && a.cred.typ != TokenAPIKey && t.Sub(a.cred.issued) >= ttl {
		p.rotate(a, t)
	}
	children := 2 + r.IntN(3)
	var nTools, extra int
	if p.budget != nil && p.budget.events >= 0 {
		nTools, extra = p.budgetTools()
		children = max(children, nTools+1)
	} else {
		// 0–3 tool calls, mean ≈ 1.1, at least one chat.
		switch x := r.IntN(20); {
		case x < 4:
			nTools = 0
		case x < 13:
			nTools = 1
		case x < 18:
			nTools = 2
		default:
			nTools = 3
		}
		nTools = min(nTools, children-1)
	}
	inv := invocation{a: a, start: t, tenant: a.tenant.id, cred: a.cred, children: children}
	for range nTools {
		c := call{tool: pick(r, a.tools), decision: decisionAllow}
		switch x := r.Float64(); {
		case x < p.cfg.BenignDenyRatio:
			c.decision = decisionDeny
			c.denyReason = pick(r, benignDenyReasons)
		case x < p.cfg.BenignDenyRatio+p.cfg.ToolErrorRatio:
			c.errType = pick(r, toolErrors)
		}
		inv.calls = append(inv.calls, c)
	}
	ts, _ := p.plan(inv)
	if end := ts.spans[0].end; end.After(a.busyUntil) {
		a.busyUntil = end
	}
	if p.budget != nil && p.budget.traces == 0 && p.budget.events > 0 {
		// The last trace: whatever is still owed.
		extra = p.budget.events
	}
	for range extra {
		t = t.Add(time.Millisecond)
		p.untracedEvent(a, t)
	}
}

var (
	benignDenyReasons = []string{"outside_business_hours", "resource_locked", "approval_required", "quota_exceeded"}
	toolErrors        = []string{"timeout", "http.503", "http.429", "invalid_argument"}
)

// budgetTools picks the tool calls of a budgeted trace so that the
// remaining events are spread evenly over the remaining traces; beyond
// maxToolsPerTrace per trace, the rest are untraced events (extra).
func (p *planner) budgetTools() (tools, extra int) {
	b := p.budget
	mean := float64(b.events) / float64(b.traces)
	n := int(mean)
	if p.r.Float64() < mean-float64(n) {
		n++
	}
	n = min(n, b.events)
	return min(n, maxToolsPerTrace), max(0, n-maxToolsPerTrace)
}

// rotate gives a a new token with the same type and scopes.
func (p *planner) rotate(a *agent, t time.Time) {
	a.cred = credential{id: tokenID(p.r, a.cred.typ), typ: a.cred.typ, scopes: a.cred.scopes, issued: t}
}

// plan turns an invocation into a trace spec and one event per tool call,
// and queues their messages. It returns the events (attacks record them).
func (p *planner) plan(inv invocation) (*traceSpec, []*eventSpec) {
	r := p.r
	a := inv.a
	if inv.tenant == "" {
		inv.tenant = a.tenant.id
	}
	if a.convTurns == 0 || r.IntN(3) == 0 {
		a.conversation = "conv_" + alnumN(r, 20)
		a.convTurns = 0
	}
	a.convTurns++
	ts := &traceSpec{
		a:            a,
		res:          a.res,
		deprecated:   r.Float64() < p.cfg.DeprecatedKeyRatio,
		conversation: a.conversation,
	}
	if inv.tenant != a.tenant.id {
		ts.res = a.res.withTenant(inv.tenant)
	}
	fillTraceID(r, &ts.id)
	ts.spans = make([]spanSpec, 1, inv.children+1)

	// Tool positions among children 1..n-1 (child 0 is always a chat).
	isTool := make([]bool, inv.children)
	for _, i := range r.Perm(inv.children - 1)[:len(inv.calls)] {
		isTool[i+1] = true
	}
	root := spanSpec{op: opInvoke, start: inv.start}
	fillSpanID(r, &root.id)
	t := inv.start.Add(time.Duration(1+r.IntN(5)) * time.Millisecond)
	var events []*eventSpec
	var inTotal, outTotal int64
	ci := 0
	for i := range inv.children {
		s := spanSpec{start: t}
		fillSpanID(r, &s.id)
		if !isTool[i] {
			s.op = opChat
			p.chat(&s, inv, i+1 < inv.children && isTool[i+1])
			inTotal += s.inTok
			outTotal += s.outTok
		} else {
			c := inv.calls[ci]
			ci++
			ev := p.tool(&s, inv, c, ts)
			events = append(events, ev)
		}
		ts.spans = append(ts.spans, s)
		t = s.end.Add(time.Duration(1+r.IntN(20)) * time.Millisecond)
	}
	root.end = t.Add(time.Duration(r.IntN(10)) * time.Millisecond)
	root.inTok, root.outTok = inTotal, outTotal
	ts.spans[0] = root

	// Audit events are published when the action is decided; the trace
	// reaches Kafka after the SDK's and the Collector's batching.
	for _, ev := range events {
		p.push(msgSpec{time: ev.ts, event: ev, attack: inv.attack})
	}
	export := time.Duration(200+r.IntN(4800)) * time.Millisecond
	p.push(msgSpec{time: root.end.Add(export), trace: ts, attack: inv.attack})
	return ts, events
}

func (p *planner) chat(s *spanSpec, inv invocation, toolNext bool) {
	r := p.r
	m := inv.a.model
	var dur time.Duration
	if inv.burst {
		s.inTok = inv.burstTokens + int64(r.IntN(1000))
		s.outTok = 100 + int64(r.IntN(400))
		dur = time.Duration(150+r.IntN(250)) * time.Millisecond
	} else {
		s.inTok = 200 + int64(r.IntN(maxChatInputTokens-200+1))
		s.outTok = 20 + int64(r.IntN(maxChatOutputTokens-20+1))
		dur = time.Duration(300+r.IntN(3700)) * time.Millisecond
	}
	if r.IntN(10) < 3 {
		s.cacheRead = s.inTok * int64(1+r.IntN(5)) / 10
	}
	s.maxTokens = int64(1024 * (1 + r.IntN(4)))
	s.temperature = float64(r.IntN(11)) / 10
	s.respID = m.respPrefix + alnumN(r, 22)
	switch {
	case toolNext:
		s.finish = "tool_calls"
		if m.provider == "anthropic" {
			s.finish = "tool_use"
		}
	case r.IntN(50) == 0:
		s.finish = "length"
	default:
		s.finish = "stop"
		if m.provider == "anthropic" {
			s.finish = "end_turn"
		}
	}
	if !inv.burst && r.IntN(100) == 0 {
		s.errType = "rate_limit_exceeded"
	}
	s.end = s.start.Add(dur)
}

func (p *planner) tool(s *spanSpec, inv invocation, c call, ts *traceSpec) *eventSpec {
	r := p.r
	a := inv.a
	tl := &tools[c.tool]
	s.op = opTool
	s.tool = c.tool
	s.callID = a.model.callPrefix + alnumN(r, 22)
	owner := inv.tenant
	if c.resTenant != "" {
		owner = c.resTenant
	}
	var resource string
	s.args, resource = tl.params(r, owner)
	s.server = toolServer(c.tool, inv.tenant)
	if tl.mcp {
		s.mcpSession = hexN(r, 16)
	}
	var dur time.Duration
	switch {
	case c.decision == decisionDeny:
		s.errType = "permission_denied"
		s.httpStatus = 403
		dur = time.Duration(2+r.IntN(20)) * time.Millisecond
	case inv.burst:
		s.httpStatus = 200
		dur = time.Duration(20+r.IntN(40)) * time.Millisecond
	default:
		s.errType = c.errType
		s.httpStatus = 200
		switch c.errType {
		case "http.503":
			s.httpStatus = 503
		case "http.429":
			s.httpStatus = 429
		case "invalid_argument":
			s.httpStatus = 400
		}
		dur = time.Duration(20+r.IntN(880)) * time.Millisecond
	}
	s.end = s.start.Add(dur)

	ev := &eventSpec{
		ts:          s.start,
		tenant:      inv.tenant,
		agentID:     a.id,
		parent:      a.parent.identity,
		parentScope: a.parent.scopeString(),
		token:       inv.cred.id,
		tokenType:   inv.cred.typ,
		delegation:  inv.cred.scopes,
		required:    tl.scopes,
		tool:        c.tool,
		args:        s.args,
		resource:    resource,
		decision:    c.decision,
		denyReason:  c.denyReason,
		traceID:     ts.id,
		spanID:      s.id,
		traced:      true,
	}
	if tl.res == resTenant {
		ev.resourceTenant = owner
	}
	fillUUID(r, &ev.id)
	ev.conversation = ts.conversation
	return ev
}

// untracedEvent queues an audit event of a without a trace (an API call
// outside any agent invocation; only Workloads asking for more than three
// events per trace need them).
func (p *planner) untracedEvent(a *agent, t time.Time) {
	r := p.r
	ti := pick(r, a.tools)
	tl := &tools[ti]
	args, resource := tl.params(r, a.tenant.id)
	ev := &eventSpec{
		ts:          t,
		tenant:      a.tenant.id,
		agentID:     a.id,
		parent:      a.parent.identity,
		parentScope: a.parent.scopeString(),
		token:       a.cred.id,
		tokenType:   a.cred.typ,
		delegation:  a.cred.scopes,
		required:    tl.scopes,
		tool:        ti,
		args:        args,
		resource:    resource,
		decision:    decisionAllow,
	}
	if tl.res == resTenant {
		ev.resourceTenant = a.tenant.id
	}
	fillUUID(r, &ev.id)
	p.push(msgSpec{time: t, event: ev})
}

func fillTraceID(r *rand.Rand, id *[16]byte) {
	for {
		putUint64(id[:8], r.Uint64())
		putUint64(id[8:], r.Uint64())
		if *id != ([16]byte{}) {
			return
		}
	}
}

func fillSpanID(r *rand.Rand, id *[8]byte) {
	for {
		putUint64(id[:], r.Uint64())
		if *id != ([8]byte{}) {
			return
		}
	}
}

// fillUUID draws a version 4 (random) UUID.
func fillUUID(r *rand.Rand, id *[16]byte) {
	putUint64(id[:8], r.Uint64())
	putUint64(id[8:], r.Uint64())
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// agentHeap orders agents by next trace time (ties: creation order).
type agentHeap []*agent

func (h agentHeap) Len() int { return len(h) }
func (h agentHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	return h[i].idx < h[j].idx
}
func (h agentHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *agentHeap) Push(x any)   { *h = append(*h, x.(*agent)) }
func (h *agentHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// msgHeap holds pending messages ordered by time, then generation order.
// The heap itself is pointer-free (time, seq, slot); specs live in a slab
// whose slots are reused, which keeps the planner's hot loop free of
// boxing and write barriers.
type msgHeap struct {
	h    []heapEntry
	slab []msgSpec
	free []int32
}

type heapEntry struct {
	t    int64 // UnixNano
	seq  uint64
	slot int32
}

func (e heapEntry) less(o heapEntry) bool {
	return e.t < o.t || e.t == o.t && e.seq < o.seq
}

func (q *msgHeap) Len() int { return len(q.h) }

// minTime is the time of the earliest pending message; Len must be > 0.
func (q *msgHeap) minTime() int64 { return q.h[0].t }

func (q *msgHeap) push(m msgSpec) {
	var slot int32
	if n := len(q.free); n > 0 {
		slot = q.free[n-1]
		q.free = q.free[:n-1]
		q.slab[slot] = m
	} else {
		slot = int32(len(q.slab))
		q.slab = append(q.slab, m)
	}
	q.h = append(q.h, heapEntry{t: m.time.UnixNano(), seq: m.seq, slot: slot})
	// sift up
	i := len(q.h) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !q.h[i].less(q.h[parent]) {
			break
		}
		q.h[i], q.h[parent] = q.h[parent], q.h[i]
		i = parent
	}
}

func (q *msgHeap) pop() msgSpec {
	top := q.h[0]
	last := len(q.h) - 1
	q.h[0] = q.h[last]
	q.h = q.h[:last]
	// sift down
	i := 0
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		c := l
		if r := l + 1; r < last && q.h[r].less(q.h[l]) {
			c = r
		}
		if !q.h[c].less(q.h[i]) {
			break
		}
		q.h[i], q.h[c] = q.h[c], q.h[i]
		i = c
	}
	m := q.slab[top.slot]
	q.slab[top.slot] = msgSpec{}
	q.free = append(q.free, top.slot)
	return m
}
