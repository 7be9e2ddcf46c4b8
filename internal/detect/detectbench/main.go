// Command detectbench measures the detector (make bench-detect). ClickHouse
// (libchdb) and Kafka (kfake) run as child processes, and so does the load
// generator (this binary re-executed with -produce), so the memory measured
// is the detector's. Each run has a ClickHouse server and a kfake broker of
// its own (no run inherits an earlier run's data), and fresh topics and
// consumer groups:
//
//  1. latency: simulator background traffic at -rate audit events per second
//     (with its traces; generated before the clock starts, so the load
//     generator keeps its rate; sent every -produce-every, one produce
//     request per partition, stamped when sent) and an out-of-delegation
//     attack every -attack-every; latency is from the attack message's Kafka timestamp
//     to the first signed webhook about it received by an in-process
//     receiver (webhooksink, verifying signatures), through the real
//     sender: detection stored, outbox written, HTTP request. It is also
//     split at the rule match and at the detection stored.
//
// Each phase prints the CPU-seconds the detector (this process), Kafka and
// ClickHouse used, and the load generator its own while sending: the
// four share the machine's cores. detector_cpu_us_per_event is this
// process's CPU per audit event (with its share of trace messages, and the
// webhook sender and receiver): steadier than rates on a shared machine.
// The detector runs with cmd/detector's defaults (GC settings included);
// -detector-flags overrides them.
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
	"net"
	"net/http"
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
	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/procstat"
	"github.com/agentaudit/agentaudit/internal/sim"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
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
	produceEvery := flag.Duration("produce-every", 5*time.Millisecond, "the load generator sends what is due this often (one produce request per partition)")
	maxEvents := flag.Int("max-events", 300_000, "throughput phase: audit events preloaded")
	runs := flag.Int("runs", 3, "runs; medians are reported")
	serverBin := flag.String("agentaudit", "bin/agentaudit", "agentaudit binary (serves ClickHouse)")
	brokerBin := flag.String("kafkabroker", "bin/kafkabroker", "kafkabroker binary (serves kfake)")
	work := flag.String("dir", ".cache/bench-detect", "working directory")
	chDir := flag.String("clickhouse-dir", defaultClickHouseDir(), "where the runs' ClickHouse servers keep their data (removed at the end); default: tmpfs (/dev/shm) when there is one, see defaultClickHouseDir")
	detectorFlags := flag.String("detector-flags", "", "flags for the detector under test, as cmd/detector takes them (e.g. \"-detect.kafka.fetch-min-bytes=1\"); defaults otherwise")
	series := flag.Bool("series", false, "print each attack's Kafka timestamp → rule matched latency, in order")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the benchmark process (the detector) here")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the benchmark process (the detector) here at the end")
	flag.Parse()
	if *memProfile != "" && !*produce {
		defer func() {
			if f, err := os.Create(*memProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	if *cpuProfile != "" && !*produce {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	var err error
	if *produce {
		err = runProducer(*brokers, *eventsTopic, *spansTopic, *rate, *duration, *attackEvery, *produceEvery, *maxEvents)
	} else {
		err = runBench(*runs, *rate, *duration, *attackEvery, *produceEvery, *maxEvents, *serverBin, *brokerBin, *work, *chDir, strings.Fields(*detectorFlags), *series)
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

func runBench(runs int, rate float64, duration, attackEvery, produceEvery time.Duration, maxEvents int, serverBin, brokerBin, work, chDir string, detFlags []string, series bool) error {
	ctx := context.Background()
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if chDir == "" {
		chDir = filepath.Join(work, "clickhouse")
	}
	if err := os.MkdirAll(chDir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(chDir)
	fmt.Printf("clickhouse data in %s\n", chDir)
	var p50s, p99s, eps, rss []float64
	for r := 1; r <= runs; r++ {
		res, err := engineRun(ctx, r, rate, duration, attackEvery, produceEvery, maxEvents, serverBin, brokerBin, work, chDir, detFlags, series)
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

// defaultClickHouseDir is a directory on tmpfs (/dev/shm) when the machine
// has one, else "" (the working directory). The root file system of the
// machines this was measured on is ext4 without a journal, where creating a
// file scans past every inode freed in the last ~30 s (ext4's
// recently_deleted check, 70 % of a profile of the server during inserts);
// ClickHouse creates ~20 files per part, and a one-row insert there cost
// up to 27 ms of kernel CPU instead of 2 ms (tmpfs). ClickHouse does not
// fsync inserted parts by default, so tmpfs costs what a healthy journaled
// file system's page cache does.
func defaultClickHouseDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return filepath.Join("/dev/shm", fmt.Sprintf("agentaudit-bench-detect-%d", os.Getpid()))
	}
	return ""
}

// engineRun is one run on a ClickHouse server and a kfake broker of its
// own: kfake keeps every message in its process's memory, and with the
// earlier runs' topics still there its CPU per run grew (Kafka CPU-seconds
// 5.0, 4.5, 6.1 and produce acknowledgements up to 0.5 s by the third run).
func engineRun(ctx context.Context, r int, rate float64, duration, attackEvery, produceEvery time.Duration, maxEvents int, serverBin, brokerBin, work, chDir string, detFlags []string, series bool) (result, error) {
	ch, err := chdb.StartProcess(ctx, chdb.Options{DataDir: filepath.Join(chDir, strconv.Itoa(r))}, []string{serverBin, "clickhouse"}, nil)
	if err != nil {
		return result{}, err
	}
	defer ch.Stop(ctx)
	// 8 MiB segments: see kafkabroker.FakeOptions.SegmentBytes (kfake's
	// in-memory segment growth would otherwise stall the broker).
	broker := exec.Command(brokerBin, "run", "-kind", "kfake", "-port", "0", "-partitions", "4", "-segment-bytes", strconv.Itoa(8<<20))
	broker.Stderr = io.Discard
	out, err := broker.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	if err := broker.Start(); err != nil {
		return result{}, fmt.Errorf("start kfake: %w", err)
	}
	defer func() { broker.Process.Signal(os.Interrupt); broker.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return result{}, fmt.Errorf("kfake address: %w", err)
	}
	addr = strings.TrimSpace(addr)
	fmt.Printf("run %d: clickhouse %s, kfake %s\n", r, ch.Addr(), addr)
	pids := []int{os.Getpid(), broker.Process.Pid, ch.PID()}
	return oneRun(ctx, r, ch.Addr(), addr, pids, rate, duration, attackEvery, produceEvery, maxEvents, work, detFlags, series)
}

type result struct {
	attacks, detected  int
	p50, p99, eps, rss float64
}

// timingActions hands detections to the real webhook sender (durable
// outbox in ClickHouse, signed HTTP request) and records, for each attack
// detection, the Kafka timestamp of the triggering message; the receiver
// (an in-process webhooksink that verifies signatures) records when the
// first webhook about it arrived. Latency is Kafka timestamp → webhook
// request received, split at the rule match (d.Time) and at the hand-over
// to the sender (detection stored in ClickHouse).
type timingActions struct {
	next *notify.Sender

	mu       sync.Mutex
	kafkaT   map[uuid.UUID]time.Time
	got      map[uuid.UUID]bool
	lat      []float64 // ms, Kafka timestamp → webhook received
	stored   []float64 // ms, Kafka timestamp → detection stored (Act called)
	consume  []float64 // ms, Kafka timestamp → rule matched (detection ts)
	received int       // verified webhook requests, all kinds and rules
}

func newTimingActions(next *notify.Sender) *timingActions {
	return &timingActions{next: next, kafkaT: map[uuid.UUID]time.Time{}, got: map[uuid.UUID]bool{}}
}

func (a *timingActions) Act(ctx context.Context, d event.Detection, revoke bool) error {
	return errors.New("detectbench: the detector hands batches to PrepareBatch")
}

// PrepareBatch is called while the detections are being stored; release
// is called once they are: that is when "stored" is timed.
func (a *timingActions) PrepareBatch(ctx context.Context, acts []notify.Action) (func(), error) {
	release, err := a.next.PrepareBatch(ctx, acts)
	if err != nil {
		return nil, err
	}
	return func() {
		now := time.Now()
		a.mu.Lock()
		for _, x := range acts {
			d, t := &x.Detection, x.MessageTime
			if t.IsZero() || d.RuleID != detect.RuleOutOfDelegation {
				continue
			}
			if _, seen := a.kafkaT[d.ID]; !seen {
				a.kafkaT[d.ID] = t
				a.stored = append(a.stored, float64(now.Sub(t).Microseconds())/1000)
				a.consume = append(a.consume, float64(d.Time.Sub(t).Microseconds())/1000)
			}
		}
		a.mu.Unlock()
		release()
	}, nil
}

// onWebhook is the receiver's callback for each verified message.
func (a *timingActions) onWebhook(m webhooksink.Message) {
	now := time.Now()
	var p notify.Payload
	if err := json.Unmarshal(m.Body, &p); err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.received++
	id := p.Data.DetectionID
	if t, ok := a.kafkaT[id]; ok && !a.got[id] {
		a.got[id] = true
		a.lat = append(a.lat, float64(now.Sub(t).Microseconds())/1000)
	}
}

func (a *timingActions) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lat)
}

// cpuMeter reports the CPU seconds each process used between two calls.
type cpuMeter struct {
	names []string
	pids  []int
	last  []float64
	wall  time.Time
}

func newCPUMeter(names []string, pids []int) *cpuMeter {
	m := &cpuMeter{names: names, pids: pids, last: make([]float64, len(pids))}
	m.lap()
	return m
}

// lap returns the line and the seconds of each process (in pids order).
func (m *cpuMeter) lap() (string, []float64) {
	var b strings.Builder
	fmt.Fprintf(&b, "wall=%.1fs", time.Since(m.wall).Seconds())
	secs := make([]float64, len(m.pids))
	for i, pid := range m.pids {
		c := procstat.CPUSeconds(pid)
		secs[i] = c - m.last[i]
		fmt.Fprintf(&b, " %s=%.1fs", m.names[i], secs[i])
		m.last[i] = c
	}
	m.wall = time.Now()
	return b.String(), secs
}

func oneRun(ctx context.Context, r int, chAddr, brokerAddr string, pids []int, rate float64, duration, attackEvery, produceEvery time.Duration, maxEvents int, work string, detFlags []string, series bool) (result, error) {
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
	latReg := prometheus.NewRegistry()
	det, err := startDetector(conn, db, brokerAddr, evT, spT, fmt.Sprintf("lat_%d", r), rules, latReg, detFlags)
	if err != nil {
		return res, err
	}
	acts := det.acts
	time.Sleep(2 * time.Second) // let the consumer group form before the clock starts: no condition to wait on from here
	cpu := newCPUMeter([]string{"cpu_detector", "cpu_kafka", "cpu_clickhouse"}, pids)
	attacks, sent, _, err := runChild(brokerAddr, evT, spT, rate, duration, attackEvery, produceEvery, 0)
	if err != nil {
		det.stop()
		return res, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for acts.count() < attacks && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	line, secs := cpu.lap()
	fmt.Printf("run %d: latency phase %s detector_cpu_us_per_event=%.1f\n", r, line, secs[0]/float64(max(sent, 1))*1e6)
	det.stop()
	res.attacks, res.detected = attacks, acts.count()
	lat := slices.Clone(acts.lat)
	slices.Sort(lat)
	res.p50, res.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
	if series {
		// In the order the attacks were sent: a rising series is a
		// detector falling behind, a flat one with spikes is stalls.
		fmt.Printf("run %d: Kafka timestamp → rule matched per attack, in order (ms): %.0f\n", r, acts.consume)
	}
	cons, stored := slices.Clone(acts.consume), slices.Clone(acts.stored)
	slices.Sort(cons)
	slices.Sort(stored)
	fmt.Printf("run %d: Kafka timestamp → rule matched p50=%.1f p99=%.1f ms; → detection stored p50=%.1f p99=%.1f ms; → webhook received p50=%.1f p99=%.1f ms (webhooks received: %d)\n",
		r, quantile(cons, 0.5), quantile(cons, 0.99), quantile(stored, 0.5), quantile(stored, 0.99), res.p50, res.p99, acts.received)
	if n, mean := histogramMean(latReg, "agentaudit_detector_store_duration_seconds"); n > 0 {
		fmt.Printf("run %d: %d detection batches stored (detections and outbox inserts) in %.1f ms on average\n", r, n, mean*1000)
	}
	if res.detected != attacks {
		fmt.Printf("run %d: WARNING %d of %d attacks reached the webhook receiver\n", r, res.detected, attacks)
	}

	// 2. Throughput on a preloaded backlog.
	evT, spT = fmt.Sprintf("events_max_%d", r), fmt.Sprintf("spans_max_%d", r)
	if err := sim.CreateTopics(ctx, []string{brokerAddr}, 4, evT, spT); err != nil {
		return res, err
	}
	_, produced, traces, err := runChild(brokerAddr, evT, spT, 0, 0, 0, produceEvery, maxEvents)
	if err != nil {
		return res, err
	}
	reg := prometheus.NewRegistry()
	det, err = startDetector(conn, db, brokerAddr, evT, spT, fmt.Sprintf("max_%d", r), rules, reg, detFlags)
	if err != nil {
		return res, err
	}
	cpu.lap()
	// Done when every audit event AND every trace message is consumed:
	// the detector processes audit events first when short of CPU, and
	// throughput that left the spans behind would not be sustained.
	var first, eventsDone, last time.Time
	deadline = time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		n := consumed(reg, evT, spT)
		if n[0] > 0 && first.IsZero() {
			first = time.Now()
		}
		if n[0] >= float64(produced) && eventsDone.IsZero() {
			eventsDone = time.Now()
		}
		if !eventsDone.IsZero() && n[1] >= float64(traces) {
			last = time.Now()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	line, secs = cpu.lap()
	fmt.Printf("run %d: throughput phase %s detector_cpu_us_per_event=%.1f\n", r, line, secs[0]/float64(max(produced, 1))*1e6)
	det.stop()
	if last.IsZero() {
		return res, errors.New("throughput phase did not finish in 5 minutes")
	}
	fmt.Printf("run %d: throughput phase: %d audit events consumed in %.2f s, and their %d trace messages in %.2f s\n",
		r, produced, eventsDone.Sub(first).Seconds(), traces, last.Sub(first).Seconds())
	res.eps = float64(produced) / last.Sub(first).Seconds()
	res.rss = sampler.stop()
	return res, nil
}

// benchSecret signs the bench's webhooks; the receiver verifies them.
const benchSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

type detector struct {
	acts *timingActions
	stop func()
}

// startDetector runs the detector as cmd/detector wires it (detect.Service
// with a notify.Sender as its action sink), sending every webhook to an
// in-process receiver on a loopback port.
func startDetector(conn clickhouse.Conn, db, broker, evT, spT, group, rules string, reg *prometheus.Registry, flags []string) (*detector, error) {
	var cfg detect.ServiceConfig
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(flags); err != nil {
		return nil, fmt.Errorf("detector flags: %w", err)
	}
	dc := &cfg.Detect
	dc.Brokers = config.StringSlice{broker}
	dc.EventsTopic, dc.SpansTopic, dc.GroupID = evT, spT, group
	dc.RulesFile = rules
	dc.SessionTimeout, dc.HeartbeatInterval = 6*time.Second, 500*time.Millisecond
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	acts := newTimingActions(nil)
	sink, err := webhooksink.New(webhooksink.Options{Secrets: []string{benchSecret}, RememberIDs: 100_000, OnMessage: acts.onWebhook})
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := &http.Server{Handler: sink, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	nc := &cfg.Notify
	nc.Default.URL = "http://" + ln.Addr().String() + "/webhook"
	nc.Default.SecretsEnv = ""
	nc.Default.Secrets = []config.Secret{benchSecret}
	snd, err := notify.New(*nc, conn, db, log, reg)
	if err != nil {
		srv.Close()
		return nil, err
	}
	acts.next = snd
	svc, err := detect.New(*dc, conn, acts, log, reg)
	if err != nil {
		srv.Close()
		return nil, err
	}
	// As cmd/detector does: the detector process's GC settings.
	restoreGC := dc.GC.Apply(os.Getenv)
	ctx, cancel := context.WithCancel(context.Background())
	sndCtx, stopSnd := context.WithCancel(context.Background())
	sndDone := make(chan error, 1)
	go func() { sndDone <- snd.Run(sndCtx) }()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	return &detector{acts: acts, stop: func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "detector:", err)
		}
		stopSnd()
		if err := <-sndDone; err != nil {
			fmt.Fprintln(os.Stderr, "webhook sender:", err)
		}
		srv.Close()
		restoreGC()
	}}, nil
}

// consumed sums agentaudit_detector_events_total{topic} over its outcomes
// (processed, invalid, skipped), for each topic, from one gathering.
func consumed(reg *prometheus.Registry, topics ...string) []float64 {
	n := make([]float64, len(topics))
	mfs, err := reg.Gather()
	if err != nil {
		return n
	}
	for _, mf := range mfs {
		if mf.GetName() != "agentaudit_detector_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if i := slices.Index(topics, l.GetValue()); l.GetName() == "topic" && i >= 0 {
					n[i] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// histogramMean returns a histogram's count and mean.
func histogramMean(reg *prometheus.Registry, name string) (uint64, float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			if n := h.GetSampleCount(); n > 0 {
				return n, h.GetSampleSum() / float64(n)
			}
		}
	}
	return 0, 0
}

// runChild runs the load generator and returns what it reports.
func runChild(broker, evT, spT string, rate float64, duration, attackEvery, every time.Duration, events int) (attacks, produced, traces int, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, 0, err
	}
	cmd := exec.Command(self, "-produce", "-brokers", broker, "-events-topic", evT, "-spans-topic", spT,
		"-rate", fmt.Sprint(rate), "-duration", duration.String(), "-attack-every", attackEvery.String(), "-produce-every", every.String(), "-max-events", strconv.Itoa(events))
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("load generator: %w", err)
	}
	var rep struct {
		Attacks, Events, Traces int
		SendMs                  string `json:"send_ms"`
		Seconds                 float64
		CPUSeconds              float64 `json:"cpu_seconds"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return 0, 0, 0, fmt.Errorf("load generator report %q: %w", b, err)
	}
	fmt.Printf("load generator: %d events (and %d trace messages), %d attacks in %.1f s (%.0f events/s, %.1f CPU-seconds sending)\n",
		rep.Events, rep.Traces, rep.Attacks, rep.Seconds, float64(rep.Events)/rep.Seconds, rep.CPUSeconds)
	if rep.SendMs != "" {
		fmt.Printf("load generator: produce acknowledged in %s ms per tick\n", rep.SendMs)
	}
	return rep.Attacks, rep.Events, rep.Traces, nil
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
