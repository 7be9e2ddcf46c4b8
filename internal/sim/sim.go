package sim

import (
	"fmt"
	"iter"
	"maps"
	"slices"
	"time"
)

// Message is one Kafka message: an OTLP export request holding one trace
// (Topic = Config.SpansTopic, Key = the trace id in hex) or one audit event
// (Topic = Config.EventsTopic, Key = tenant_id + "/" + agent_id).
type Message struct {
	Topic string
	Key   []byte
	Value []byte
	// Time is simulated: the event's ts, or when the Collector exported the
	// trace (after its root span ended).
	Time time.Time
	// Spans is the number of spans of a trace message; 0 for events.
	Spans int
}

// IsTrace reports whether m carries a trace (rather than an audit event).
func (m Message) IsTrace() bool { return m.Spans > 0 }

// Stats counts what a Sim or Workload produced.
type Stats struct {
	Traces     int64              `json:"traces"`
	Spans      int64              `json:"spans"`
	Events     int64              `json:"events"`
	SpanBytes  int64              `json:"span_bytes"`
	EventBytes int64              `json:"event_bytes"`
	Attacks    map[AttackKind]int `json:"attacks"` // completed attack instances by kind
}

// BytesPerSpan is the mean encoded size of a span, resource and envelope
// included.
func (s Stats) BytesPerSpan() float64 {
	if s.Spans == 0 {
		return 0
	}
	return float64(s.SpanBytes) / float64(s.Spans)
}

func (s *Stats) add(m Message) {
	if m.IsTrace() {
		s.Traces++
		s.Spans += int64(m.Spans)
		s.SpanBytes += int64(len(m.Value))
	} else {
		s.Events++
		s.EventBytes += int64(len(m.Value))
	}
}

// Sim generates an endless, deterministic stream of agent traffic in
// simulated-time order. It is not safe for concurrent use.
type Sim struct {
	cfg   Config
	p     *planner
	enc   *encoder
	stats Stats
	truth []Attack
}

// New builds the world for cfg. The same cfg always yields the same world
// and the same messages.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var b *budget
	if cfg.MaxTraces > 0 {
		b = &budget{traces: cfg.MaxTraces, events: -1}
	}
	return &Sim{cfg: cfg, p: newPlanner(cfg, b), enc: newEncoder(cfg), stats: Stats{Attacks: map[AttackKind]int{}}}, nil
}

// Next returns the next message in time order. ok is false once the
// stream has ended (Config.MaxTraces reached, or Drain called) and
// everything planned has been returned.
func (s *Sim) Next() (m Message, ok bool) {
	spec, ok := s.p.next()
	if !ok {
		return Message{}, false
	}
	m = s.enc.render(spec)
	s.account(spec, m)
	return m, true
}

// All yields the messages of Next until the caller stops (or, after Drain,
// until nothing is left).
func (s *Sim) All() iter.Seq[Message] {
	return func(yield func(Message) bool) {
		for {
			m, ok := s.Next()
			if !ok || !yield(m) {
				return
			}
		}
	}
}

// Drain stops planning new traffic and returns every message already
// planned (the tails of running attacks, traces still being exported), in
// order. Afterwards every started attack is complete and in Truth.
func (s *Sim) Drain() []Message {
	s.p.drain()
	var out []Message
	for m := range s.All() {
		out = append(out, m)
	}
	return out
}

func (s *Sim) account(spec msgSpec, m Message) {
	s.stats.add(m)
	if at := spec.attack; at != nil {
		at.pending--
		if at.pending == 0 {
			s.truth = append(s.truth, at.clone())
			s.stats.Attacks[at.Kind]++
		}
	}
}

// Truth returns the attacks whose messages have all been returned, by ID.
func (s *Sim) Truth() []Attack {
	out := slices.Clone(s.truth)
	slices.SortFunc(out, func(a, b Attack) int { return a.ID - b.ID })
	return out
}

// Stats returns counts of the messages returned so far.
func (s *Sim) Stats() Stats {
	st := s.stats
	st.Attacks = maps.Clone(s.stats.Attacks)
	return st
}

// Limits returns the per-agent rate maxima of benign traffic.
func (s *Sim) Limits() Limits { return s.p.limits }

// Agents describes the world's (benign) agents in creation order.
func (s *Sim) Agents() []AgentInfo { return agentInfos(s.p.w) }

// AgentInfo describes one agent of the world, as of its creation.
type AgentInfo struct {
	TenantID       string   `json:"tenant_id"`
	AgentID        string   `json:"agent_id"`
	Name           string   `json:"name"`
	ParentIdentity string   `json:"parent_identity"`
	ParentScopes   []string `json:"parent_scopes"`
	TokenType      string   `json:"token_type"`
	Scopes         []string `json:"scopes"` // the baseline delegation_scope
	Tools          []string `json:"tools"`
	Provider       string   `json:"provider"`
	Model          string   `json:"model"`
}

func agentInfos(w *world) []AgentInfo {
	out := make([]AgentInfo, 0, len(w.agents))
	for _, a := range w.agents {
		info := AgentInfo{
			TenantID: a.tenant.id, AgentID: a.id, Name: a.name,
			ParentIdentity: a.parent.identity, ParentScopes: slices.Clone(a.parent.scopes),
			TokenType: a.cred.typ, Scopes: slices.Clone(a.cred.scopes),
			Provider: a.model.provider, Model: a.model.request,
		}
		for _, ti := range a.tools {
			info.Tools = append(info.Tools, tools[ti].name)
		}
		out = append(out, info)
	}
	return out
}

func (at *Attack) clone() Attack {
	c := *at
	c.Scopes = slices.Clone(at.Scopes)
	c.EventIDs = slices.Clone(at.EventIDs)
	c.TraceIDs = slices.Clone(at.TraceIDs)
	c.pending = 0
	return c
}

// String summarises s for logs.
func (s Stats) String() string {
	return fmt.Sprintf("%d traces, %d spans (%.0f B/span), %d events, %d attacks",
		s.Traces, s.Spans, s.BytesPerSpan(), s.Events, sum(maps.Values(s.Attacks)))
}

func sum(xs iter.Seq[int]) int {
	n := 0
	for x := range xs {
		n += x
	}
	return n
}
