// Command detectbench measures the detector (make bench-detect). ClickHouse
// (libchdb) and Kafka (kfake) run as child processes, and so does the load
// generator (this binary re-executed with -produce), so the memory measured
// is the detector's. Each run uses a fresh database, fresh topics and a
// fresh consumer group:
//
//  1. latency: simulator background traffic at -rate audit events per second
//     (with its traces) and an out-of-delegation attack every -attack-every;
//     latency is from the attack message's Kafka timestamp to the moment the
//     action sink (an in-process fake that records the time) is called,
//     i.e. after the detection was stored in ClickHouse.
//  2. throughput: -max-events audit events (with their traces) preloaded,
//     then consumed by a fresh detector as fast as it can.
//
// It prints name=value lines; the last lines are the medians of the runs.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/sim"
	"github.com/agentaudit/agentaudit/schema"
)

func main() {
	produce := flag.Bool("produce", false, "run as the load generator (child process)")
	brokers := flag.String("brokers", "", "produce: Kafka address")
	eventsTopic := flag.String("events-topic", "", "produce: audit events topic")
	spansTopic := flag.String("spans-topic", "", "produce: spans topic")
	rate := flag.Float64("rate", 20_000, "background audit events per second (0: as fast as possible)")
	duration := flag.Duration("duration", 10*time.Second, "latency phase length")
	attackEvery := flag.Duration("attack-every", 100*time.Millisecond, "one attack per this interval")
	maxEvents := flag.Int("max-events", 300_000, "throughput phase: audit events preloaded")
	runs := flag.Int("runs", 3, "runs; medians are reported")
	serverBin := flag.String("agentaudit", "bin/agentaudit", "agentaudit binary (serves ClickHouse)")
	brokerBin := flag.String("kafkabroker", "bin/kafkabroker", "kafkabroker binary (serves kfake)")
	work := flag.String("dir", ".cache/bench-detect", "working directory")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the benchmark process (the detector) here")
	flag.Parse()
	if *cpuProfile != "" && !*produce {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	var err error
	if *produce {
		err = runProducer(*brokers, *eventsTopic, *spansTopic, *rate, *duration, *attackEvery, *maxEvents)
	} else {
		err = runBench(*runs, *rate, *duration, *attackEvery, *maxEvents, *serverBin, *brokerBin, *work)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "detectbench:", err)
		os.Exit(1)
	}
}

// simConfig: 1000 agents; TraceRate makes simulated time run at wall-clock
// speed at 20k events/s (≈2 events per trace).
func simConfig(start time.Time, rate float64) sim.Config {
	cfg := sim.DefaultConfig()
	cfg.Seed = 42
	cfg.Tenants, cfg.AgentsPerTenant = 20, 50
	cfg.TraceRate = max(rate, 20_000) / 2
	cfg.Start = start
	return cfg
}

func runBench(runs int, rate float64, duration, attackEvery time.Duration, maxEvents int, serverBin, brokerBin, work string) error {
	ctx := context.Background()
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	ch, err := chdb.StartProcess(ctx, chdb.Options{DataDir: filepath.Join(work, "clickhouse")}, []string{serverBin, "clickhouse"}, nil)
	if err != nil {
		return err
	}
	defer ch.Stop(ctx)
	broker := exec.Command(brokerBin, "run", "-kind", "kfake", "-port", "0", "-partitions", "4")
	broker.Stderr = io.Discard
	out, err := broker.StdoutPipe()
	if err != nil {
		return err
	}
	if err := broker.Start(); err != nil {
		return fmt.Errorf("start kfake: %w", err)
	}
	defer func() { broker.Process.Signal(os.Interrupt); broker.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("kfake address: %w", err)
	}
	addr = strings.TrimSpace(addr)
	fmt.Printf("clickhouse %s, kfake %s\n", ch.Addr(), addr)

	var p50s, p99s, eps, rss []float64
	for r := 1; r <= runs; r++ {
		res, err := oneRun(ctx, r, ch.Addr(), addr, rate, duration, attackEvery, maxEvents, work)
		if err != nil {
			return fmt.Errorf("run %d: %w", r, err)
		}
		fmt.Printf("run %d: attacks=%d detected=%d detect_latency_p50_ms=%.1f detect_latency_p99_ms=%.1f detect_max_events_per_sec=%.0f detect_rss_mb=%.0f\n",
			r, res.attacks, res.detected, res.p50, res.p99, res.eps, res.rss)
		p50s, p99s, eps, rss = append(p50s, res.p50), append(p99s, res.p99), append(eps, res.eps), append(rss, res.rss)
	}
	fmt.Printf("detect_latency_p50_ms=%.1f\n", median(p50s))
	fmt.Printf("detect_latency_p99_ms=%.1f\n", median(p99s))
	fmt.Printf("detect_max_events_per_sec=%.0f\n", median(eps))
	fmt.Printf("detect_rss_mb=%.0f\n", median(rss))
	return nil
}

type result struct {
	attacks, detected  int
	p50, p99, eps, rss float64
}

// timingActions records, per detection, the time from the triggering
// message's Kafka timestamp to the call.
type timingActions struct {
	mu      sync.Mutex
	lat     []float64 // ms, Kafka timestamp → Act
	consume []float64 // ms, Kafka timestamp → rule matched (detection ts)
	all     int
}

func (a *timingActions) Act(ctx context.Context, d event.Detection, revoke bool) error {
	t, ok := detect.MessageTime(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all++
	if ok && d.RuleID == detect.RuleOutOfDelegation {
		a.lat = append(a.lat, float64(time.Since(t).Microseconds())/1000)
		a.consume = append(a.consume, float64(d.Time.Sub(t).Microseconds())/1000)
	}
	return nil
}

func (a *timingActions) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lat)
}

func oneRun(ctx context.Context, r int, chAddr, brokerAddr string, rate float64, duration, attackEvery time.Duration, maxEvents int, work string) (result, error) {
	var res result
	db := fmt.Sprintf("bench_%d", r)
	admin, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}})
	if err != nil {
		return res, err
	}
	defer admin.Close()
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		return res, err
	}
	if _, err := migrate.Apply(ctx, admin, ms, migrate.Options{Database: db}); err != nil {
		return res, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		return res, err
	}
	defer conn.Close()
	lim := sim.Limits{}
	{
		s, err := sim.New(simConfig(time.Now(), rate))
		if err != nil {
			return res, err
		}
		lim = s.Limits()
	}
	rules := filepath.Join(work, fmt.Sprintf("rules_%d.yaml", r))
	if err := os.WriteFile(rules, fmt.Appendf(nil, "rules:\n  rate.limit_exceeded:\n    thresholds: {requests: %d, tokens: %d}\n", lim.Events, lim.Tokens), 0o600); err != nil {
		return res, err
	}
	sampler := newRSSSampler()
	defer sampler.stop()

	// 1. Latency under background load.
	evT, spT := fmt.Sprintf("events_lat_%d", r), fmt.Sprintf("spans_lat_%d", r)
	if err := sim.CreateTopics(ctx, []string{brokerAddr}, 4, evT, spT); err != nil {
		return res, err
	}
	acts := &timingActions{}
	stop, _, err := startDetector(conn, brokerAddr, evT, spT, fmt.Sprintf("lat_%d", r), rules, acts)
	if err != nil {
		return res, err
	}
	time.Sleep(2 * time.Second) // let the consumer group form before the clock starts: no condition to wait on from here
	attacks, _, err := runChild(brokerAddr, evT, spT, rate, duration, attackEvery, 0)
	if err != nil {
		stop()
		return res, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for acts.count() < attacks && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	res.attacks, res.detected = attacks, acts.count()
	lat := slices.Clone(acts.lat)
	slices.Sort(lat)
	res.p50, res.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
	cons := slices.Clone(acts.consume)
	slices.Sort(cons)
	fmt.Printf("run %d: of which Kafka timestamp → rule matched (produce, fetch, decode, engine): p50=%.1f ms p99=%.1f ms; the rest is the ClickHouse insert\n",
		r, quantile(cons, 0.5), quantile(cons, 0.99))
	if res.detected != attacks {
		fmt.Printf("run %d: WARNING %d of %d attacks acted on\n", r, res.detected, attacks)
	}

	// 2. Throughput on a preloaded backlog.
	evT, spT = fmt.Sprintf("events_max_%d", r), fmt.Sprintf("spans_max_%d", r)
	if err := sim.CreateTopics(ctx, []string{brokerAddr}, 4, evT, spT); err != nil {
		return res, err
	}
	_, produced, err := runChild(brokerAddr, evT, spT, 0, 0, 0, maxEvents)
	if err != nil {
		return res, err
	}
	reg := prometheus.NewRegistry()
	stop, reg, err = startDetectorReg(conn, brokerAddr, evT, spT, fmt.Sprintf("max_%d", r), rules, &timingActions{}, reg)
	if err != nil {
		return res, err
	}
	var first, last time.Time
	deadline = time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		n := processed(reg, evT)
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		if n >= float64(produced) {
			last = time.Now()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if last.IsZero() {
		return res, errors.New("throughput phase did not finish in 5 minutes")
	}
	res.eps = float64(produced) / last.Sub(first).Seconds()
	res.rss = sampler.stop()
	return res, nil
}

func startDetector(conn clickhouse.Conn, broker, evT, spT, group, rules string, acts detect.Actions) (func(), *prometheus.Registry, error) {
	return startDetectorReg(conn, broker, evT, spT, group, rules, acts, prometheus.NewRegistry())
}

func startDetectorReg(conn clickhouse.Conn, broker, evT, spT, group, rules string, acts detect.Actions, reg *prometheus.Registry) (func(), *prometheus.Registry, error) {
	var cfg detect.Config
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	cfg.RegisterFlagsWithPrefix("", fs)
	cfg.Brokers = config.StringSlice{broker}
	cfg.EventsTopic, cfg.SpansTopic, cfg.GroupID = evT, spT, group
	cfg.RulesFile = rules
	cfg.SessionTimeout, cfg.HeartbeatInterval = 6*time.Second, 500*time.Millisecond
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	svc, err := detect.New(cfg, conn, acts, log, reg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "detector:", err)
		}
	}, reg, nil
}

// processed reads agentaudit_detector_events_total{topic,outcome=processed}.
func processed(reg *prometheus.Registry, topic string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "agentaudit_detector_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var t, o string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "topic":
					t = l.GetValue()
				case "outcome":
					o = l.GetValue()
				}
			}
			if t == topic && o == "processed" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// runChild runs the load generator and returns what it reports.
func runChild(broker, evT, spT string, rate float64, duration, attackEvery time.Duration, events int) (attacks, produced int, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(self, "-produce", "-brokers", broker, "-events-topic", evT, "-spans-topic", spT,
		"-rate", fmt.Sprint(rate), "-duration", duration.String(), "-attack-every", attackEvery.String(), "-max-events", strconv.Itoa(events))
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("load generator: %w", err)
	}
	var rep struct{ Attacks, Events int }
	if err := json.Unmarshal(b, &rep); err != nil {
		return 0, 0, fmt.Errorf("load generator report %q: %w", b, err)
	}
	fmt.Printf("load generator: %d events, %d attacks\n", rep.Events, rep.Attacks)
	return rep.Attacks, rep.Events, nil
}

// runProducer is the child: simulator traffic paced at rate audit events
// per second for duration (rate 0: maxEvents as fast as possible), plus an
// attack every attackEvery. Every message carries its produce time as its
// Kafka timestamp.
func runProducer(broker, evT, spT string, rate float64, duration, attackEvery time.Duration, maxEvents int) error {
	ctx := context.Background()
	start := time.Now()
	s, err := sim.New(simConfig(start.UTC().Add(-time.Minute), rate))
	if err != nil {
		return err
	}
	w := &kafka.Writer{Addr: kafka.TCP(broker), Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond, BatchSize: 2000,
		RequiredAcks: kafka.RequireOne, Async: true}
	var (
		events, attacks int
		batch           []kafka.Message
		nextAttack      = start.Add(attackEvery)
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		now := time.Now()
		for i := range batch {
			batch[i].Time = now
		}
		err := w.WriteMessages(ctx, batch...)
		batch = batch[:0]
		return err
	}
	for {
		now := time.Now()
		if maxEvents > 0 && events >= maxEvents || maxEvents == 0 && now.Sub(start) >= duration {
			break
		}
		if attackEvery > 0 && !now.Before(nextAttack) {
			attacks++
			batch = append(batch, attackMessage(evT, attacks, now))
			nextAttack = nextAttack.Add(attackEvery)
		}
		if rate > 0 && float64(events) >= rate*now.Sub(start).Seconds() {
			if err := flush(); err != nil {
				return err
			}
			time.Sleep(time.Millisecond)
			continue
		}
		m, ok := s.Next()
		if !ok {
			break
		}
		topic := spT
		if !m.IsTrace() {
			topic = evT
			events++
		}
		batch = append(batch, kafka.Message{Topic: topic, Key: m.Key, Value: m.Value})
		if len(batch) >= 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]int{"attacks": attacks, "events": events})
}

// attackMessage: an allowed call needing admin:org by a credential that
// carries crm:read only; each attack by a new agent, so each is a new
// detection.
func attackMessage(topic string, n int, now time.Time) kafka.Message {
	agent := fmt.Sprintf("agt_attack_%06d", n)
	b, _ := json.Marshal(map[string]any{
		"schema_version": "1", "event_id": uuid.NewString(), "ts": now.UTC().Format(time.RFC3339Nano),
		"tenant_id": "bench", "agent_id": agent, "parent_identity": "user:mallory@bench.example",
		"token_id": "tok_" + agent, "token_type": "oauth", "delegation_scope": []string{"crm:read"},
		"required_scopes": []string{"admin:org"}, "tool_name": "iam.grant_role",
		"tool_params_hash": strings.Repeat("ab", 32), "resource": "org://bench", "resource_tenant_id": "bench",
		"policy_decision": "allow", "attributes": map[string]string{"delegation.parent_scope": "crm:read admin:org"},
	})
	return kafka.Message{Topic: topic, Key: []byte("bench/" + agent), Value: b}
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(math.Ceil(q*float64(len(sorted))))-1)]
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// rssSampler tracks the peak resident set size of this process (the
// detector; the load generator, Kafka and ClickHouse are other processes).
type rssSampler struct {
	done chan struct{}
	peak chan float64
}

func newRSSSampler() *rssSampler {
	s := &rssSampler{done: make(chan struct{}), peak: make(chan float64, 1)}
	go func() {
		peak := 0.0
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, rssMB())
			select {
			case <-s.done:
				s.peak <- peak
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() float64 {
	select {
	case <-s.done:
		return 0
	default:
	}
	close(s.done)
	return <-s.peak
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
