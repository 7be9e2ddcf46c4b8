package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/agentaudit/agentaudit/internal/procstat"
	"github.com/agentaudit/agentaudit/internal/sim"
)

// runProducer is the child: simulator traffic paced at rate audit events
// per second for duration (rate 0: maxEvents as fast as possible), plus an
// attack every attackEvery.
//
// It spends its CPU on sending only, so that it keeps its rate beside the
// detector, Kafka and ClickHouse on the same cores: the simulator's
// messages are generated, and their partitions chosen (kafka.Hash on the
// key, as a kafka.Writer with that balancer does), before the clock starts.
// Every tick (every) it sends what is due, one produce request per
// partition, all partitions in parallel, each over its own connection; a
// tick's messages are stamped with one Kafka timestamp taken just before
// they are sent, so an attack's latency starts no earlier than the moment
// it is handed to Kafka.
func runProducer(broker, evT, spT string, rate float64, duration, attackEvery, every time.Duration, maxEvents int) error {
	ctx := context.Background()
	s, err := sim.New(simConfig(time.Now().UTC().Add(-time.Minute), rate))
	if err != nil {
		return err
	}
	ps, err := dialPartitions(ctx, broker, evT, spT)
	if err != nil {
		return err
	}
	defer ps.close()
	// next is the simulator's next message routed to its topic and
	// partition; event reports whether it is an audit event.
	next := func() (q queued, event, ok bool) {
		m, ok := s.Next()
		if !ok {
			return queued{}, false, false
		}
		topic := spT
		if event = !m.IsTrace(); event {
			topic = evT
		}
		return ps.route(topic, m.Key, m.Value), event, true
	}
	var pre []queued
	if rate > 0 {
		want := int(rate * duration.Seconds())
		for n := 0; n < want; {
			q, event, ok := next()
			if !ok {
				break
			}
			if event {
				n++
			}
			pre = append(pre, q)
		}
	}
	var (
		sendMs                  []float64 // per tick: send → every partition's acknowledgement
		events, attacks, traces int
		start                   = time.Now()
		cpuStart                = procstat.CPUSeconds(os.Getpid())
		nextAttack              = start.Add(attackEvery)
	)
	if rate > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			now := time.Now()
			if now.Sub(start) >= duration || len(pre) == 0 {
				break
			}
			for attackEvery > 0 && !now.Before(nextAttack) {
				attacks++
				m := attackMessage(evT, attacks, now)
				ps.add(ps.route(evT, m.Key, m.Value))
				nextAttack = nextAttack.Add(attackEvery)
			}
			due := int(rate * now.Sub(start).Seconds())
			for events < due && len(pre) > 0 {
				q := pre[0]
				pre = pre[1:]
				if q.topic == 0 {
					events++
				} else {
					traces++
				}
				ps.add(q)
			}
			t0 := time.Now()
			if err := ps.send(ctx); err != nil {
				return err
			}
			sendMs = append(sendMs, float64(time.Since(t0).Microseconds())/1000)
			<-t.C
		}
	} else {
		for events < maxEvents {
			q, event, ok := next()
			if !ok {
				break
			}
			if event {
				events++
			} else {
				traces++
			}
			ps.add(q)
			if ps.n >= 8000 {
				if err := ps.send(ctx); err != nil {
					return err
				}
			}
		}
	}
	if err := ps.send(ctx); err != nil {
		return err
	}
	elapsed := time.Since(start)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"attacks": attacks, "events": events, "traces": traces, "send_ms": sendStats(sendMs), "seconds": elapsed.Seconds(),
		"cpu_seconds": procstat.CPUSeconds(os.Getpid()) - cpuStart})
}

// queued is a message on its way to one partition of one of the
// producer's topics (topic: index in partitions.topics).
type queued struct {
	topic, partition int
	m                kafka.Message
}

// partitions holds one connection per partition of some topics and the
// messages queued for each.
type partitions struct {
	topics []string
	conns  [][]*kafka.Conn
	queue  [][][]kafka.Message
	n      int // messages queued
	hash   kafka.Hash
	ids    [][]int // per topic: 0..partitions-1, for the balancer
}

func dialPartitions(ctx context.Context, broker string, topics ...string) (*partitions, error) {
	ps := &partitions{topics: topics}
	c, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	for _, t := range topics {
		parts, err := c.ReadPartitions(t)
		if err != nil {
			ps.close()
			return nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		conns := make([]*kafka.Conn, len(parts))
		ids := make([]int, len(parts))
		for _, p := range parts {
			if p.ID < 0 || p.ID >= len(parts) {
				ps.close()
				return nil, fmt.Errorf("topic %s: partition %d of %d", t, p.ID, len(parts))
			}
			pc, err := kafka.DialLeader(ctx, "tcp", broker, t, p.ID)
			if err != nil {
				ps.close()
				return nil, fmt.Errorf("dial %s/%d: %w", t, p.ID, err)
			}
			conns[p.ID], ids[p.ID] = pc, p.ID
		}
		ps.conns = append(ps.conns, conns)
		ps.ids = append(ps.ids, ids)
		ps.queue = append(ps.queue, make([][]kafka.Message, len(parts)))
	}
	return ps, nil
}

func (ps *partitions) close() {
	for _, cs := range ps.conns {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}
}

// route chooses the message's partition as kafka.Writer with kafka.Hash
// would: the same key (tenant/agent) always on the same partition.
func (ps *partitions) route(topic string, key, value []byte) queued {
	ti := 0
	for i, t := range ps.topics {
		if t == topic {
			ti = i
		}
	}
	m := kafka.Message{Key: key, Value: value}
	return queued{topic: ti, partition: ps.hash.Balance(m, ps.ids[ti]...), m: m}
}

func (ps *partitions) add(q queued) {
	ps.queue[q.topic][q.partition] = append(ps.queue[q.topic][q.partition], q.m)
	ps.n++
}

// maxRequestBytes bounds one produce request (kfake's default message
// size limit is 1 MiB per record batch).
const maxRequestBytes = 512 << 10

// send stamps every queued message with the time now and writes each
// partition's messages (in order, in requests of at most maxRequestBytes),
// all partitions in parallel; it returns when every write is acknowledged.
func (ps *partitions) send(ctx context.Context) error {
	if ps.n == 0 {
		return nil
	}
	now := time.Now()
	var g errgroup.Group
	for ti, qs := range ps.queue {
		for pi, q := range qs {
			if len(q) == 0 {
				continue
			}
			for i := range q {
				q[i].Time = now
			}
			conn := ps.conns[ti][pi]
			g.Go(func() error {
				for len(q) > 0 {
					n, size := 0, 0
					for n < len(q) && (n == 0 || size+len(q[n].Key)+len(q[n].Value) <= maxRequestBytes) {
						size += len(q[n].Key) + len(q[n].Value)
						n++
					}
					if _, err := conn.WriteMessages(q[:n]...); err != nil {
						return fmt.Errorf("produce to %s: %w", ps.topics[ti], err)
					}
					q = q[n:]
				}
				return nil
			})
			ps.queue[ti][pi] = q[:0]
		}
	}
	ps.n = 0
	return g.Wait()
}

// sendStats summarises the per-tick send times (the broker's produce
// latency as the load generator sees it): a broker stall shows here.
func sendStats(ms []float64) string {
	if len(ms) == 0 {
		return ""
	}
	slices.Sort(ms)
	return fmt.Sprintf("p50=%.1f p99=%.1f max=%.1f", quantile(ms, 0.5), quantile(ms, 0.99), ms[len(ms)-1])
}
