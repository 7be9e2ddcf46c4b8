package detect

import (
	"container/list"
	"time"
)

// lru is a map bounded to cap entries; the least recently used entry is
// evicted (and counted) to make room.
type lru[V any] struct {
	cap     int
	m       map[string]*list.Element
	l       list.List
	onEvict func()
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](capacity int, onEvict func()) *lru[V] {
	return &lru[V]{cap: capacity, m: make(map[string]*list.Element), onEvict: onEvict}
}

// get returns the value and marks it used.
func (c *lru[V]) get(k string) (V, bool) {
	if e, ok := c.m[k]; ok {
		c.l.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

// put sets k, evicting the least recently used entry when full.
func (c *lru[V]) put(k string, v V) {
	if e, ok := c.m[k]; ok {
		e.Value.(*lruEntry[V]).val = v
		c.l.MoveToFront(e)
		return
	}
	if c.l.Len() >= c.cap {
		if old := c.l.Back(); old != nil {
			c.l.Remove(old)
			delete(c.m, old.Value.(*lruEntry[V]).key)
			if c.onEvict != nil {
				c.onEvict()
			}
		}
	}
	c.m[k] = c.l.PushFront(&lruEntry[V]{key: k, val: v})
}

func (c *lru[V]) len() int { return c.l.Len() }

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
}

// binding: an actor seen under tenant, last at last (event time).
type binding struct {
	tenant string
	last   time.Time
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
	events                                  []string // event ids (max 3)
}

// suppression is one open detection and its suppression period.
type suppression struct {
	det     *detectionState
	until   time.Time   // event time
	denials []time.Time // out_of_delegation: denied calls, for probing
}

// touch keeps the bindings of one actor within window of ts and records
// tenant at ts. It returns another tenant seen within window, if any.
func touch(bs []binding, tenant string, ts time.Time, window time.Duration) ([]binding, string) {
	other := ""
	own := -1
	out := bs[:0]
	for _, b := range bs {
		d := ts.Sub(b.last)
		if d > window {
			continue // older than the window: forgotten
		}
		if b.tenant == tenant {
			own = len(out)
		} else if other == "" && d >= -window {
			other = b.tenant
		}
		out = append(out, b)
	}
	switch {
	case own >= 0:
		if ts.After(out[own].last) {
			out[own].last = ts
		}
	case len(out) < 8:
		out = append(out, binding{tenant: tenant, last: ts})
	}
	return out, other
}
