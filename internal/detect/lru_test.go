package detect

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestLRUAgainstModel drives the lru and a plain ordered list (the model:
// most recent first) with the same random gets and puts and requires the
// same contents, the same answers and the same evictions.
func TestLRUAgainstModel(t *testing.T) {
	for _, capacity := range []int{1, 2, 3, 17} {
		evicted := 0
		c := newLRU[string, int](capacity, func() { evicted++ })
		type kv struct {
			k string
			v int
		}
		var model []kv // most recent first
		modelEvicted := 0
		find := func(k string) int {
			return slices.IndexFunc(model, func(x kv) bool { return x.k == k })
		}
		r := rand.New(rand.NewPCG(1, uint64(capacity)))
		for step := range 20_000 {
			k := strconv.Itoa(r.IntN(3 * capacity))
			if r.IntN(2) == 0 {
				v, ok := c.get(k)
				i := find(k)
				if ok != (i >= 0) || ok && v != model[i].v {
					t.Fatalf("cap %d step %d: get(%s) = %d, %v; model has index %d", capacity, step, k, v, ok, i)
				}
				if i >= 0 {
					x := model[i]
					model = append([]kv{x}, slices.Delete(model, i, i+1)...)
				}
				continue
			}
			c.put(k, step)
			if i := find(k); i >= 0 {
				model = slices.Delete(model, i, i+1)
			} else if len(model) == capacity {
				model = model[:len(model)-1]
				modelEvicted++
			}
			model = append([]kv{{k, step}}, model...)
			if c.len() != len(model) || evicted != modelEvicted {
				t.Fatalf("cap %d step %d: len %d evicted %d, model %d evicted %d", capacity, step, c.len(), evicted, len(model), modelEvicted)
			}
		}
		// The lru's recency order, walked from the sentinel, is the model's.
		var order []string
		for i := c.e[0].next; i != 0; i = c.e[i].next {
			order = append(order, c.e[i].key)
		}
		want := make([]string, len(model))
		for i, x := range model {
			want[i] = x.k
		}
		if !slices.Equal(order, want) {
			t.Fatalf("cap %d: order %v, model %v", capacity, order, want)
		}
		if evicted == 0 {
			t.Fatalf("cap %d: nothing was evicted: the test proves nothing about eviction", capacity)
		}
	}
}

// TestRateRingSumsMatchARecount drives a ring with adds at random seconds
// (mostly the newest, some older, some older than the ring, some newer) and
// checks every returned sum against a recount of the ring: the sums kept
// between adds must be what summing the window would give.
func TestRateRingSumsMatchARecount(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, window := range []time.Duration{time.Second, 10 * time.Second, time.Minute} {
		var r rateRing
		now := int64(1_700_000_000)
		for i := range 20_000 {
			s := now
			switch x := rnd.IntN(100); {
			case x < 10:
				now += int64(rnd.IntN(3) + 1)
				s = now
			case x < 20:
				s = now - int64(rnd.IntN(70)) // older, sometimes older than the ring
			case x < 22:
				now += int64(rnd.IntN(200)) // a jump past the whole ring
				s = now
			}
			req, tok := uint32(rnd.IntN(3)), uint64(rnd.IntN(1000))
			gotReq, gotTok := r.add(time.Unix(s, 0), req, tok, window)
			var wantReq, wantTok uint64
			from := s - int64(window/time.Second) + 1
			for j := range rateSlots {
				if r.sec[j] >= from && r.sec[j] <= s {
					wantReq += uint64(r.req[j])
					wantTok += r.tok[j]
				}
			}
			if gotReq != wantReq || gotTok != wantTok {
				t.Fatalf("window %v, add %d at second %d (newest %d): sums %d/%d, a recount gives %d/%d", window, i, s, now, gotReq, gotTok, wantReq, wantTok)
			}
		}
	}
}

// TestTraceKeyOf: the traces map's key is the id's 16 bytes; anything but
// 32 lowercase hex digits (what the audit event schema and the span
// decoders allow) has none.
func TestTraceKeyOf(t *testing.T) {
	k, ok := traceKeyOf("0123456789abcdef0f1e2d3c4b5a6978")
	want := traceKey{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78}
	if !ok || k != want {
		t.Fatalf("traceKeyOf = %x, %v; want %x, true", k, ok, want)
	}
	for _, bad := range []string{"", "0123456789ABCDEF0f1e2d3c4b5a6978", "0123456789abcdef0f1e2d3c4b5a697", "0123456789abcdef0f1e2d3c4b5a69780", "0123456789abcdeg0f1e2d3c4b5a6978"} {
		if _, ok := traceKeyOf(bad); ok {
			t.Errorf("traceKeyOf(%q) accepted", bad)
		}
	}
}
