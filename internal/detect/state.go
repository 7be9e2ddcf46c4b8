package detect

import (
	"strings"
	"time"

	"github.com/google/uuid"
)

// lru is a map bounded to cap entries; the least recently used entry is
// evicted (and counted) to make room. Entries live in one slice linked by
// index (a doubly linked ring through slot 0, the sentinel): a lookup
// moves no pointer-linked element, and a full map reuses the evicted slot,
// so the hot path neither allocates per entry nor leaves garbage.
type lru[V any] struct {
	cap     int
	m       map[string]int32
	e       []lruEntry[V] // e[0]: sentinel; e[0].next is the most recent
	onEvict func()
}

type lruEntry[V any] struct {
	key        string
	val        V
	prev, next int32
}

func newLRU[V any](capacity int, onEvict func()) *lru[V] {
	return &lru[V]{cap: capacity, m: make(map[string]int32), e: make([]lruEntry[V], 1, 1+min(capacity, 1024)), onEvict: onEvict}
}

func (c *lru[V]) unlink(i int32) {
	e := &c.e[i]
	c.e[e.prev].next = e.next
	c.e[e.next].prev = e.prev
}

func (c *lru[V]) pushFront(i int32) {
	first := c.e[0].next
	c.e[i].prev, c.e[i].next = 0, first
	c.e[first].prev = i
	c.e[0].next = i
}

// get returns the value and marks it used.
func (c *lru[V]) get(k string) (V, bool) {
	if i, ok := c.m[k]; ok {
		if c.e[0].next != i {
			c.unlink(i)
			c.pushFront(i)
		}
		return c.e[i].val, true
	}
	var zero V
	return zero, false
}

// put sets k, evicting the least recently used entry when full.
func (c *lru[V]) put(k string, v V) {
	if i, ok := c.m[k]; ok {
		c.e[i].val = v
		c.unlink(i)
		c.pushFront(i)
		return
	}
	var i int32
	if len(c.m) >= c.cap {
		i = c.e[0].prev // the least recently used
		c.unlink(i)
		delete(c.m, c.e[i].key)
		c.e[i] = lruEntry[V]{}
		if c.onEvict != nil {
			c.onEvict()
		}
	} else {
		i = int32(len(c.e))
		c.e = append(c.e, lruEntry[V]{})
	}
	c.e[i].key, c.e[i].val = k, v
	c.pushFront(i)
	c.m[k] = i
}

func (c *lru[V]) len() int { return len(c.m) }

// maxRateWindow bounds rate.limit_exceeded's window: the ring holds one
// bucket per second.
const maxRateWindow = time.Minute

const rateSlots = 64

// rateRing counts requests and tokens of one agent per second of event
// time, for the last rateSlots seconds.
type rateRing struct {
	sec [rateSlots]int64
	req [rateSlots]uint32
	tok [rateSlots]uint64
}

// add counts at ts and returns the sums over the window ending at ts's
// second. A count older than the ring is dropped (it cannot raise a window
// that ends now).
func (r *rateRing) add(ts time.Time, req uint32, tok uint64, window time.Duration) (sumReq uint64, sumTok uint64) {
	s := ts.Unix()
	i := s & (rateSlots - 1)
	switch {
	case r.sec[i] == s:
		r.req[i] += req
		r.tok[i] += tok
	case r.sec[i] < s:
		r.sec[i], r.req[i], r.tok[i] = s, req, tok
	default:
		// The slot holds a newer second: ts is too old for the ring.
	}
	from := s - int64(window/time.Second) + 1
	for j := range rateSlots {
		if r.sec[j] >= from && r.sec[j] <= s {
			sumReq += uint64(r.req[j])
			sumTok += r.tok[j]
		}
	}
	return sumReq, sumTok
}

// agentState is what the engine keeps per agent.
type agentState struct {
	firstSeen time.Time
	baseline  []string // sorted, unique
	bindings  []binding
	rate      *rateRing
	// rateWarmed: counts of seconds up to this one (unix) came from
	// ClickHouse at start; redelivered events in them are not counted again.
	rateWarmed int64
	// ids: copies of the identity strings of the agent's latest event with
	// a trace, shared by the traces it starts (see keep).
	ids struct{ tenant, agent, token, parent, tokenType string }
}

// binding: an actor seen under tenant, last at last (event time).
type binding struct {
	tenant      string
	first, last time.Time
	firstEvent  uuid.UUID // the event of the first sighting
}

// tokenState is what the engine keeps per token.
type tokenState struct {
	bindings []binding
}

// revocation: when the product asked for a token's revocation.
type revocation struct {
	at          time.Time // event time of the triggering event
	detectionID string
}

// traceInfo joins spans to the audit events of their trace.
type traceInfo struct {
	tenant, agent, token, parent, tokenType string
	events                                  []uuid.UUID // event ids (max 3), in evbuf when the engine made it
	evbuf                                   [3]uuid.UUID
}

// suppression is one open detection and its suppression period.
type suppression struct {
	det     *detectionState
	until   time.Time   // event time
	denials []time.Time // out_of_delegation: denied calls, for probing
}

// touch records that an actor acted under tenant at ts and reports
// another tenant it is bound to within window, if any. The actor is bound
// to the tenant it was first seen under (earliest first sighting); an event
// under any other tenant within window of that binding's activity is a
// conflict, and so is the first sighting of an earlier binding (events of
// the two tenants can sit on different partitions and arrive out of
// order). Re-seeing events of the bound tenant (a replay after a restart)
// is never a conflict. Bindings idle for longer than window are forgotten.
//
// For a conflict found on the first sighting of the bound tenant, it also
// returns the first event under the other tenant: that event is the
// evidence, as it would have been had the events arrived in order.
func touch(bs []binding, tenant string, ts time.Time, id uuid.UUID, window time.Duration) ([]binding, string, uuid.UUID) {
	out := bs[:0]
	own := -1
	for _, b := range bs {
		if ts.Sub(b.last) > window {
			continue
		}
		if b.tenant == tenant {
			own = len(out)
		}
		out = append(out, b)
	}
	isNew := own < 0
	switch {
	case own >= 0:
		if ts.Before(out[own].first) {
			out[own].first, out[own].firstEvent = ts, id
		}
		if ts.After(out[own].last) {
			out[own].last = ts
		}
	case len(out) < 8:
		out = append(out, binding{tenant: strings.Clone(tenant), first: ts, last: ts, firstEvent: id})
	default:
		return out, "", uuid.Nil
	}
	bound := 0
	for i := range out {
		if out[i].first.Before(out[bound].first) {
			bound = i
		}
	}
	near := func(b binding) bool { return ts.Sub(b.last) <= window && b.first.Sub(ts) <= window }
	if out[bound].tenant != tenant {
		if near(out[bound]) {
			return out, out[bound].tenant, uuid.Nil
		}
		return out, "", uuid.Nil
	}
	if isNew {
		for _, b := range out {
			if b.tenant != tenant && near(b) {
				return out, b.tenant, b.firstEvent
			}
		}
	}
	return out, "", uuid.Nil
}
