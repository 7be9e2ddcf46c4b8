package sim

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
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
	p := newPlanner(cfg, &budget{traces: traces, events: events})
	specs := make([]msgSpec, 0, traces+events)
	for {
		m, ok := p.next()
		if !ok {
			break
		}
		specs = append(specs, m)
	}
	if p.budget.traces != 0 || p.budget.events != 0 {
		return nil, errors.New("sim: workload budget not met (bug)")
	}

	msgs := make([]Message, len(specs))
	const chunk = 256
	var nextChunk atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				lo := int(nextChunk.Add(chunk)) - chunk
				if lo >= len(specs) {
					return
				}
				for i := lo; i < min(lo+chunk, len(specs)); i++ {
					msgs[i] = render(cfg, specs[i])
				}
			}
		})
	}
	wg.Wait()

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
