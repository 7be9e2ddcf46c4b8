package detect

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// TestLRUAgainstModel drives the lru and a plain ordered list (the model:
// most recent first) with the same random gets and puts and requires the
// same contents, the same answers and the same evictions.
func TestLRUAgainstModel(t *testing.T) {
	for _, capacity := range []int{1, 2, 3, 17} {
		evicted := 0
		c := newLRU[int](capacity, func() { evicted++ })
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
