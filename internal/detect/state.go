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
type lru[K comparable, V any] struct {
	cap     int
	m       map[K]int32
	e       []lruEntry[K, V] // e[0]: sentinel; e[0].next is the most recent
	onEvict func()
}

type lruEntry[K comparable, V any] struct {
	key        K
	val        V
	prev, next int32
}

func newLRU[K comparable, V any](capacity int, onEvict func()) *lru[K, V] {
	return &lru[K, V]{cap: capacity, m: make(map[K]int32), e: make([]lruEntry[K, V], 1, 1+min(capacity, 1024)), onEvict: onEvict}
}

func (c *lru[K, V]) unlink(i int32) {
	e := &c.e[i]
	c.e[e.prev].next = e.next
	c.e[e.next].prev = e.prev
}

func (c *lru[K, V]) pushFront(i int32) {
	first := c.e[0].next
	c.e[i].prev, c.e[i].next = 0, first
	c.e[first].prev = i
	c.e[0].next = i
}

// get returns the value and marks it used.
func (c *lru[K, V]) get(k K) (V, bool) {
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
func (c *lru[K, V]) put(k K, v V) {
	if i, ok := c.m[k]; ok {
		c.e[i].val = v
		c.unlink(i)
		c.pushFront(i)
		return
	}
	c.insert(k, v)
}

// insert adds k, which the caller knows is absent (it just missed it with
// get), evicting the least recently used entry when full.
func (c *lru[K, V]) insert(k K, v V) {
	var i int32
	if len(c.m) >= c.cap {
		i = c.e[0].prev // the least recently used
		c.unlink(i)
		delete(c.m, c.e[i].key)
		c.e[i] = lruEntry[K, V]{}
		if c.onEvict != nil {
			c.onEvict()
		}
	} else {
		i = int32(len(c.e))
		c.e = append(c.e, lruEntry[K, V]{})
	}
	c.e[i].key, c.e[i].val = k, v
	c.pushFront(i)
	c.m[k] = i
}

func (c *lru[K, V]) len() int { return len(c.m) }

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
	// The sums over the window (of win seconds) ending at second last, the
	// newest second added: most adds are to that second, and they update
	// the sums instead of summing the ring (20 cache lines) again.
	last, win      int64
	sumReq, sumTok uint64
}

// add counts at ts and returns the sums over the window ending at ts's
// second. A count older than the ring is dropped (it cannot raise a window
// that ends now).
func (r *rateRing) add(ts time.Time, req uint32, tok uint64, window time.Duration) (sumReq uint64, sumTok uint64) {
	s := ts.Unix()
	w := int64(window / time.Second)
	i := s & (rateSlots - 1)
	counted := true
	switch {
	case r.sec[i] == s:
		r.req[i] += req
		r.tok[i] += tok
	case r.sec[i] < s:
		// The slot's older second (at least rateSlots before s) is in no
		// window ending at s or later.
		r.sec[i], r.req[i], r.tok[i] = s, req, tok
	default:
		// The slot holds a newer second: ts is too old for the ring.
		counted = false
	}
	if w == r.win && r.last != 0 && s <= r.last {
		if counted && s > r.last-w {
			r.sumReq += uint64(req)
			r.sumTok += tok
		}
		if s == r.last {
			return r.sumReq, r.sumTok
		}
	}
	from := s - w + 1
	for j := range rateSlots {
		if r.sec[j] >= from && r.sec[j] <= s {
			sumReq += uint64(r.req[j])
			sumTok += r.tok[j]
		}
	}
	if s > r.last || w != r.win {
		r.last, r.win, r.sumReq, r.sumTok = s, w, sumReq, sumTok
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

// traceKey is a trace id as its 16 bytes: the traces map hashes and
// compares 16 bytes instead of 32 hex characters, and keeps no string.
type traceKey [16]byte

// traceKeyOf decodes a trace id (32 lowercase hex digits, as audit events
// and the span decoders give it); false if it is not one.
func traceKeyOf(id string) (traceKey, bool) {
	var k traceKey
	if len(id) != 32 {
		return k, false
	}
	for i := range k {
		hi, lo := unhex(id[2*i]), unhex(id[2*i+1])
		if hi > 15 || lo > 15 {
			return k, false
		}
		k[i] = hi<<4 | lo
	}
	return k, true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 255
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
