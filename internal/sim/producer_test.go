package sim_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/sim"
)

const testPartitions = 4

// topics creates fresh span and event topics for t.
func topics(t *testing.T, brokers []string) (spans, events string) {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	spans, events = name+"-spans", name+"-events"
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := sim.CreateTopics(ctx, brokers, testPartitions, spans, events); err != nil {
		t.Fatal(err)
	}
	// Idempotent.
	if err := sim.CreateTopics(ctx, brokers, testPartitions, spans, events); err != nil {
		t.Fatalf("create existing topics: %v", err)
	}
	return spans, events
}

// readAll reads every partition of topic until it has n messages.
func readAll(ctx context.Context, t *testing.T, broker, topic string, n int) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	for p := range testPartitions {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{broker}, Topic: topic, Partition: p,
			MaxWait: 100 * time.Millisecond,
		})
		conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		for range last {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != n {
		t.Fatalf("topic %s holds %d messages, want %d", topic, len(out), n)
	}
	return out
}

// TestProducerEndToEnd produces a workload with every attack to kfake and
// reads it back: counts, keys, values, and one partition per key.
func TestProducerEndToEnd(t *testing.T) {
	b := testBroker(t)
	brokers := []string{b.Addr()}
	spansTopic, eventsTopic := topics(t, brokers)
	cfg := allAttacks()
	cfg.SpansTopic, cfg.EventsTopic = spansTopic, eventsTopic
	w, err := sim.NewWorkload(cfg, 3000, 2500)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: brokers, Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := p.Produce(ctx, w.Messages); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	counts := p.Counts()
	if c := counts[spansTopic]; c.Messages != 3000 || c.Spans != w.Stats.Spans || c.Failed != 0 {
		t.Errorf("span topic counts %+v, want 3000 messages and %d spans", c, w.Stats.Spans)
	}
	if c := counts[eventsTopic]; c.Messages != 2500 || c.Failed != 0 {
		t.Errorf("event topic counts %+v, want 2500 messages", c)
	}
	t.Logf("produced %d messages (%d bytes) in %v", len(w.Messages), counts[spansTopic].Bytes+counts[eventsTopic].Bytes, took)

	want := map[string]string{} // topic/key/value → (present)
	for _, m := range w.Messages {
		want[m.Topic+"\x00"+string(m.Key)+"\x00"+string(m.Value)] = ""
	}
	for _, tc := range []struct {
		topic string
		n     int
	}{{spansTopic, 3000}, {eventsTopic, 2500}} {
		got := readAll(ctx, t, b.Addr(), tc.topic, tc.n)
		partitionOf := map[string]int{}
		keysOn := map[int]int{}
		for _, m := range got {
			k := tc.topic + "\x00" + string(m.Key) + "\x00" + string(m.Value)
			if _, ok := want[k]; !ok {
				t.Fatalf("%s: unexpected message with key %s", tc.topic, m.Key)
			}
			delete(want, k)
			if p, ok := partitionOf[string(m.Key)]; ok && p != m.Partition {
				t.Fatalf("%s: key %s on partitions %d and %d", tc.topic, m.Key, p, m.Partition)
			}
			partitionOf[string(m.Key)] = m.Partition
			keysOn[m.Partition]++
		}
		if len(keysOn) != testPartitions {
			t.Errorf("%s: messages on %d partitions, want all %d: %v", tc.topic, len(keysOn), testPartitions, keysOn)
		}
		t.Logf("%s: %d messages, %d distinct keys, per partition %v", tc.topic, len(got), len(partitionOf), keysOn)
	}
	if len(want) != 0 {
		t.Errorf("%d messages not read back", len(want))
	}
}

func TestProducerRateLimit(t *testing.T) {
	b := testBroker(t)
	brokers := []string{b.Addr()}
	spansTopic, eventsTopic := topics(t, brokers)
	cfg := sim.DefaultConfig()
	cfg.SpansTopic, cfg.EventsTopic = spansTopic, eventsTopic
	w, err := sim.NewWorkload(cfg, 60, 40)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: brokers, Rate: 400})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	if err := p.Produce(t.Context(), w.Messages); err != nil {
		t.Fatal(err)
	}
	// 100 messages at 400/s: the last 20-message step is due at 200 ms.
	if d := time.Since(start); d < 180*time.Millisecond {
		t.Errorf("100 messages at 400/s took %v, want ≥ 200 ms", d)
	}
}

func TestProducerErrors(t *testing.T) {
	if _, err := sim.NewProducer(sim.ProducerConfig{}); !errors.Is(err, sim.ErrInvalidConfig) {
		t.Errorf("no brokers: %v", err)
	}
	if _, err := sim.NewProducer(sim.ProducerConfig{Brokers: []string{"x:1"}, Compression: "brotli"}); !errors.Is(err, sim.ErrInvalidConfig) {
		t.Errorf("bad compression: %v", err)
	}
	// A topic that does not exist (kfake here does not auto-create): the
	// error is returned and counted, nothing is dropped silently.
	b := testBroker(t)
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: []string{b.Addr()}, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	msgs := []sim.Message{{Topic: "no-such-topic-" + fmt.Sprint(time.Now().UnixNano()), Key: []byte("k"), Value: []byte("v")}}
	if err := p.Produce(ctx, msgs); err == nil {
		t.Fatal("produce to a missing topic succeeded")
	}
	if c := p.Counts()[msgs[0].Topic]; c.Failed != 1 || c.Messages != 0 {
		t.Errorf("counts %+v, want 1 failed", c)
	}
}

// TestStream runs the sim into Kafka the way cmd/agentsim does.
func TestStream(t *testing.T) {
	b := testBroker(t)
	brokers := []string{b.Addr()}
	spansTopic, eventsTopic := topics(t, brokers)
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := sim.DefaultConfig()
	cfg.SpansTopic, cfg.EventsTopic = spansTopic, eventsTopic
	produced := func() (traces, events int64) {
		c := p.Counts()
		return c[spansTopic].Messages, c[eventsTopic].Messages
	}

	t.Run("max traces", func(t *testing.T) {
		cfg := cfg
		cfg.MaxTraces = 500
		s := newSim(t, cfg)
		tr0, ev0 := produced()
		if err := sim.Stream(t.Context(), s, p, sim.StreamOptions{Batch: 100}); err != nil {
			t.Fatal(err)
		}
		tr, ev := produced()
		if st := s.Stats(); tr-tr0 != 500 || ev-ev0 != st.Events {
			t.Errorf("produced %d traces and %d events, want 500 and %d", tr-tr0, ev-ev0, st.Events)
		}
	})

	t.Run("real time", func(t *testing.T) {
		// 100 traces/s paced for 400 ms: a few dozen traces plus the drained
		// tail, not the thousands an unpaced run writes in that time.
		cfg := cfg
		cfg.TraceRate = 100
		s := newSim(t, cfg)
		tr0, _ := produced()
		start := time.Now()
		if err := sim.Stream(t.Context(), s, p, sim.StreamOptions{RealTime: true, Duration: 400 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		tr, _ := produced()
		if d < 400*time.Millisecond || d > 10*time.Second || tr-tr0 < 10 || tr-tr0 > 200 {
			t.Errorf("paced run took %v and wrote %d traces", d, tr-tr0)
		}
		t.Logf("paced run of %v wrote %d traces", d.Round(time.Millisecond), tr-tr0)
	})

	t.Run("stop completes attacks", func(t *testing.T) {
		cfg := cfg
		cfg.Attacks.Kinds = []sim.AttackKind{sim.AttackRevokedTokenReuse}
		cfg.Attacks.Warmup = 5 * time.Second
		s := newSim(t, cfg)
		_, ev0 := produced()
		if err := sim.Stream(t.Context(), s, p, sim.StreamOptions{Duration: 300 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if _, ev := produced(); ev-ev0 != st.Events {
			t.Errorf("produced %d events, the sim returned %d", ev-ev0, st.Events)
		}
		if truth := s.Truth(); len(truth) < 2 || truth[1].Kind != sim.AttackRevokedTokenReuse {
			t.Errorf("revoked_token_reuse and its trigger not completed on stop: %+v", truth)
		}
		t.Logf("unpaced for 300ms: %v", st)
	})
}
