package sim

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// Workload is a pre-generated, exactly sized batch of traffic (for
// benchmarks that preload Kafka).
type Workload struct {
	// Messages in simulated-time order, traces and events interleaved.
	Messages []Message
	Stats    Stats
	// Truth lists every attack instance in Messages, by ID.
	Truth  []Attack
	Limits Limits
}

// NewWorkload generates exactly traces trace messages and events audit
// events from cfg. Tool calls are spread so that every execute_tool span
// has its event; events beyond three per trace become untraced events
// (empty trace_id and span_id). Attacks in cfg are injected while the
// remainders are large enough, so the last messages are benign.
//
// Planning is sequential (it owns the RNG); encoding runs on GOMAXPROCS
// goroutines and draws no randomness, so the result is the same for any
// GOMAXPROCS.
func NewWorkload(cfg Config, traces, events int) (*Workload, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if traces < 0 || events < 0 {
		return nil, fmt.Errorf("%w: workload: traces and events must not be negative, got %d and %d", ErrInvalidConfig, traces, events)
	}
	// Planning (one goroutine: it owns the RNG) feeds chunks of specs to
	// encoders on the other cores. Renderers read only what the planner
	// never writes after creating it (agent names and ids, resources,
	// scope slices), so they run while planning goes on.
	p := newPlanner(cfg, &budget{traces: traces, events: events})
	msgs := make([]Message, traces+events)
	type chunk struct {
		base  int
		specs []msgSpec
	}
	const chunkLen = 512
	workers := runtime.GOMAXPROCS(0)
	chunks := make(chan chunk, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			enc := newEncoder(cfg)
			for c := range chunks {
				for i := range c.specs {
					msgs[c.base+i] = enc.render(c.specs[i])
				}
			}
		})
	}
	n := 0
	cur := chunk{specs: make([]msgSpec, 0, chunkLen)}
	for {
		m, ok := p.next()
		if !ok {
			break
		}
		if n == len(msgs) {
			break // budget overrun: reported below
		}
		cur.specs = append(cur.specs, m)
		n++
		if len(cur.specs) == chunkLen {
			chunks <- cur
			cur = chunk{base: n, specs: make([]msgSpec, 0, chunkLen)}
		}
	}
	chunks <- cur
	close(chunks)
	wg.Wait()
	if n != len(msgs) || p.budget.traces != 0 || p.budget.events != 0 {
		return nil, fmt.Errorf("sim: workload planned %d of %d messages (bug)", n, len(msgs))
	}

	w := &Workload{Messages: msgs, Stats: Stats{Attacks: map[AttackKind]int{}}, Limits: p.limits}
	for _, m := range msgs {
		w.Stats.add(m)
	}
	for _, at := range p.started {
		w.Truth = append(w.Truth, at.clone())
		w.Stats.Attacks[at.Kind]++
	}
	slices.SortFunc(w.Truth, func(a, b Attack) int { return a.ID - b.ID })
	return w, nil
}
