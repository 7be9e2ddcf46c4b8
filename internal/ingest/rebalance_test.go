package ingest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Instances join and leave one consumer group while data flows: every
// rebalance moves partitions between owners mid-stream, and the last owner
// of each partition must continue exactly where the previous one's
// acknowledged rows end — nothing lost, nothing written twice. Leaving is a
// graceful stop (SIGTERM), which must flush, commit and return in bounded
// time.
func TestRebalanceBetweenInstancesLosesAndDoublesNothing(t *testing.T) {
	e := newEnv(t, 4)
	cfg := e.cfg
	cfg.Batch.MaxRows = 150 // many batches, so rebalances land between and inside them

	const rounds, perRound = 40, 60
	now := time.Now().UTC().Truncate(time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range rounds {
			var spans, events []kafka.Message
			for i := range perRound {
				seed := uint64(r*perRound + i)
				tenant := fmt.Sprintf("tenant-%d", seed%5)
				v, key := testTrace(seed, tenant, 3, now)
				spans = append(spans, kafka.Message{Key: []byte(key), Value: v})
				events = append(events, kafka.Message{Key: []byte(tenant), Value: testEvent(seed, tenant, now)})
			}
			produce(t, e.broker.Addr(), "spans", spans...)
			produce(t, e.broker.Addr(), "events", events...)
			// Pacing, not waiting: the stream must still be flowing while
			// instances join and leave below.
			time.Sleep(150 * time.Millisecond)
		}
	}()

	waitRows := func(at uint64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if n, _ := counts(t, e.conn, "spans"); n >= at {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("spans did not reach %d rows", at)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	total := uint64(rounds * perRound * 3)
	stopA := startService(t, e, cfg)
	waitRows(total / 10)
	startService(t, e, cfg) // B joins: A gives up half its partitions
	waitRows(total / 3)
	t0 := time.Now()
	stopA() // A leaves gracefully: B takes everything
	if d := time.Since(t0); d > cfg.ShutdownTimeout+2*time.Second {
		t.Errorf("graceful stop took %s, bound is shutdown timeout %s", d, cfg.ShutdownTimeout)
	}
	waitRows(total / 2)
	startService(t, e, cfg) // C joins: partitions move again
	wg.Wait()
	waitCounts(t, e.conn, "spans", total, 60*time.Second)
	waitCounts(t, e.conn, "audit_events", rounds*perRound, 60*time.Second)
}
