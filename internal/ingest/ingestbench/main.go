// Command ingestbench measures cmd/ingest end to end (make bench-ingest):
// it preloads the simulator's fixed workload into Kafka (kfake, in this
// process), starts ClickHouse (libchdb) and then, for each run, a fresh
// ingest process with a fresh database and consumer group, timing until every
// span and event is stored. It prints name=value lines; the last lines are
// the medians of the runs.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/kafkabroker"
	"github.com/agentaudit/agentaudit/internal/procstat"
	"github.com/agentaudit/agentaudit/internal/sim"
)

func main() {
	traces := flag.Int("traces", 250_000, "trace messages (≈4 spans each)")
	events := flag.Int("events", 200_000, "audit events")
	runs := flag.Int("runs", 3, "runs; medians are reported")
	ingestBin := flag.String("ingest", "bin/ingest", "ingest binary")
	serverBin := flag.String("agentaudit", "bin/agentaudit", "agentaudit binary (serves ClickHouse)")
	work := flag.String("dir", ".cache/bench-ingest", "working directory")
	sealRuns := flag.Int("integrity-runs", 3, "further runs with -integrity.enabled (audit events sealed into signed Merkle logs); 0: none")
	keep := flag.Bool("keep", false, "keep the last run's database (inspect with: bin/agentaudit clickhouse -path DIR/clickhouse)")
	profile := flag.Duration("profile", 0, "if set, take a CPU profile of ingest for this long during the first run without and the first with the integrity log (written to -dir)")
	ingestArgs := flag.String("ingest-args", "", "extra flags for every ingest run, space-separated (to compare settings)")
	flag.Parse()
	extraIngestArgs = strings.Fields(*ingestArgs)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	profileFor = *profile
	keepLast = *keep
	integrityRuns = *sealRuns
	if err := run(*traces, *events, *runs, *ingestBin, *serverBin, *work, log); err != nil {
		fmt.Fprintln(os.Stderr, "ingestbench:", err)
		os.Exit(1)
	}
}

func run(traces, events, runs int, ingestBin, serverBin, work string, log *slog.Logger) error {
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
	broker, err := kafkabroker.StartFake(kafkabroker.FakeOptions{Topics: map[string]int{"otlp_spans": 4, "agent_audit_events": 4}})
	if err != nil {
		return err
	}
	defer broker.Close()

	cfg := sim.DefaultConfig()
	cfg.Seed = 42
	cfg.Tenants, cfg.AgentsPerTenant = 20, 25
	cfg.Start = time.Now().UTC().Add(-6 * time.Hour).Truncate(time.Second)
	t0 := time.Now()
	wl, err := sim.NewWorkload(cfg, traces, events)
	if err != nil {
		return err
	}
	fmt.Printf("workload: %d traces, %d spans, %d events, %.0f B/span protobuf, generated in %s\n",
		wl.Stats.Traces, wl.Stats.Spans, wl.Stats.Events, wl.Stats.BytesPerSpan(), time.Since(t0).Round(time.Millisecond))
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: []string{broker.Addr()}})
	if err != nil {
		return err
	}
	t0 = time.Now()
	if err := p.Produce(ctx, wl.Messages); err != nil {
		return err
	}
	p.Close()
	fmt.Printf("preloaded into kafka (%s) in %s\n", broker.Kind(), time.Since(t0).Round(time.Millisecond))
	wl.Messages = nil
	if integrityRuns > 0 {
		lc := cfg
		lc.Seed = 4242
		lc.Start = time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
		live, err := sim.NewWorkload(lc, 0, liveEvents)
		if err != nil {
			return err
		}
		liveWorkload = live.Messages
	}

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	if err != nil {
		return err
	}
	defer conn.Close()
	var spansPS, eventsPS, rowsPS, rss, disk []float64
	// rows per second of the whole workload: every span and event stored.
	rowRate := func(s, e float64) float64 {
		n := float64(wl.Stats.Spans + wl.Stats.Events)
		return n / max(float64(wl.Stats.Spans)/s, float64(wl.Stats.Events)/e)
	}
	runsTotal = runs
	chPID = ch.PID()
	// Runs without and with the tamper-evident log alternate, in the order
	// off-on, on-off, off-on, ..., and the log's cost is the median of the
	// costs of each pair: the machine drifts over a benchmark (ClickHouse
	// CPU per run has risen by a third from the first pair to the last), and
	// neither mode may always run later than the other.
	var sealSpans, sealEvents, sealRows, lags []float64
	runOff := func(r int) error {
		chBefore := procstat.CPUSeconds(ch.PID())
		s, e, m, d, _, err := oneRun(ctx, r, conn, ch.Addr(), broker.Addr(), ingestBin, work, wl.Stats.Spans, wl.Stats.Events, false)
		fmt.Printf("run %d: clickhouse_cpu_seconds=%.1f (whole run incl. OPTIMIZE FINAL)\n", r, procstat.CPUSeconds(ch.PID())-chBefore)
		if err != nil {
			return err
		}
		fmt.Printf("run %d: spans_per_sec=%.0f events_per_sec=%.0f peak_rss_mb=%.0f disk_bytes_per_span=%.1f\n", r, s, e, m, d)
		spansPS, eventsPS, rss, disk = append(spansPS, s), append(eventsPS, e), append(rss, m), append(disk, d)
		rowsPS = append(rowsPS, rowRate(s, e))
		return nil
	}
	runOn := func(r int) error {
		// The same workload with every audit event sealed, then the live
		// phase for the proof lag.
		chBefore := procstat.CPUSeconds(ch.PID())
		s, e, _, _, lag, err := oneRun(ctx, runs+r, conn, ch.Addr(), broker.Addr(), ingestBin, work, wl.Stats.Spans, wl.Stats.Events, true)
		if err != nil {
			return err
		}
		fmt.Printf("integrity run %d: clickhouse_cpu_seconds=%.1f (incl. the live phase)\n", r, procstat.CPUSeconds(ch.PID())-chBefore)
		fmt.Printf("integrity run %d: spans_per_sec=%.0f events_per_sec=%.0f live_proof_lag_p99_ms=%.0f (%d events at %d/s after the backlog)\n", r, s, e, lag, liveEvents, liveRate)
		sealSpans, sealEvents, lags = append(sealSpans, s), append(sealEvents, e), append(lags, lag)
		sealRows = append(sealRows, rowRate(s, e))
		return nil
	}
	var rowCosts, eventCosts []float64
	for r := 1; r <= max(runs, integrityRuns); r++ {
		for _, sealed := range []bool{r%2 == 0, r%2 != 0} {
			var err error
			switch {
			case sealed && r <= integrityRuns:
				err = runOn(r)
			case !sealed && r <= runs:
				err = runOff(r)
			}
			if err != nil {
				return err
			}
		}
		if r <= runs && r <= integrityRuns {
			rc, ec := 100*(1-sealRows[r-1]/rowsPS[r-1]), 100*(1-sealEvents[r-1]/eventsPS[r-1])
			fmt.Printf("pair %d: integrity_cost_pct=%.1f integrity_events_cost_pct=%.1f\n", r, rc, ec)
			rowCosts, eventCosts = append(rowCosts, rc), append(eventCosts, ec)
		}
	}
	if integrityRuns > 0 {
		fmt.Printf("integrity_off_events_per_sec=%.0f\n", median(eventsPS))
		fmt.Printf("integrity_on_events_per_sec=%.0f\n", median(sealEvents))
		fmt.Printf("integrity_on_spans_per_sec=%.0f\n", median(sealSpans))
		fmt.Printf("integrity_off_rows_per_sec=%.0f\n", median(rowsPS))
		fmt.Printf("integrity_on_rows_per_sec=%.0f\n", median(sealRows))
		// The cost on the audit events alone (the stream the log covers)
		// and on the whole workload (what a deployment sees), each the
		// median over the pairs.
		if len(rowCosts) > 0 {
			fmt.Printf("integrity_events_cost_pct=%.1f\n", median(eventCosts))
			fmt.Printf("integrity_cost_pct=%.1f\n", median(rowCosts))
		}
		fmt.Printf("integrity_proof_lag_p99_ms=%.0f\n", median(lags))
	}
	fmt.Printf("ingest_spans_per_sec=%.0f\n", median(spansPS))
	fmt.Printf("ingest_events_per_sec=%.0f\n", median(eventsPS))
	fmt.Printf("ingest_peak_rss_mb=%.0f\n", median(rss))
	fmt.Printf("ingest_disk_bytes_per_span=%.1f\n", median(disk))
	return nil
}

var (
	extraIngestArgs []string
	profileFor      time.Duration
	keepLast        bool
	runsTotal       int
	chPID           int // the ClickHouse server's, for its CPU seconds
	integrityRuns   int
)

// families reads ingest's /metrics.
func families(addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// byTable returns value of each series of family name by its table label
// (empty when ingest does not answer).
func byTable(addr, name string, value func(*dto.Metric) float64) map[string]float64 {
	out := map[string]float64{}
	mfs, err := families(addr)
	if err != nil || mfs[name] == nil {
		return out
	}
	for _, m := range mfs[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "table" {
				out[l.GetValue()] = value(m)
			}
		}
	}
	return out
}

// printBatches prints how many inserts ingest made per table and their mean
// rows, from its metrics: part sizes decide much of ClickHouse's cost.
func printBatches(r int, addr string) {
	const name = "agentaudit_ingest_batch_rows"
	sums := byTable(addr, name, func(m *dto.Metric) float64 { return m.GetHistogram().GetSampleSum() })
	for table, n := range byTable(addr, name, func(m *dto.Metric) float64 { return float64(m.GetHistogram().GetSampleCount()) }) {
		if n > 0 {
			fmt.Printf("run %d: inserts{table=%q}=%.0f mean_rows=%.0f\n", r, table, n, sums[table]/n)
		}
	}
}

// takeProfile saves a CPU profile of the ingest process from its admin port.
func takeProfile(addr, path string, d time.Duration) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
	fmt.Printf("cpu profile of ingest: %s (go tool pprof -top %s)\n", path, path)
	// And the live heap at the end of that window.
	if resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/heap", addr)); err == nil {
		defer resp.Body.Close()
		hp := strings.TrimSuffix(path, ".cpu.pprof") + ".heap.pprof"
		if f, err := os.Create(hp); err == nil {
			_, _ = io.Copy(f, resp.Body)
			f.Close()
			fmt.Printf("heap profile of ingest: %s (go tool pprof -sample_index=inuse_space -top %s)\n", hp, hp)
		}
	}
}

func oneRun(ctx context.Context, r int, conn driver.Conn, chAddr, kafkaAddr, ingestBin, work string, wantSpans, wantEvents int64, seal bool) (spansPS, eventsPS, rssMB, diskPerSpan, proofLagP99 float64, err error) {
	db := fmt.Sprintf("bench_%d", r)
	port, err := chdb.FreePort()
	if err != nil {
		return
	}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(ingestBin,
		"-ingest.kafka.brokers="+kafkaAddr, "-ingest.kafka.group-id="+db,
		"-clickhouse.addr="+chAddr, "-clickhouse.database="+db,
		"-telemetry.listen-address="+adminAddr, "-telemetry.log-level=warn", "-otlp-http.listen-address=")
	cmd.Args = append(cmd.Args, extraIngestArgs...)
	if seal {
		_, key, kerr := ed25519.GenerateKey(nil)
		if kerr != nil {
			err = kerr
			return
		}
		cmd.Args = append(cmd.Args, "-integrity.enabled")
		cmd.Env = append(os.Environ(), "AGENTAUDIT_INTEGRITY_KEY="+base64.StdEncoding.EncodeToString(key.Seed()))
	}
	logf, err := os.Create(filepath.Join(work, db+".log"))
	if err != nil {
		return
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start, chCPU, kafkaCPU := time.Now(), procstat.CPUSeconds(chPID), procstat.CPUSeconds(os.Getpid())
	if err = cmd.Start(); err != nil {
		return
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
	}
	defer stop()
	// The first run of each mode is profiled (the sealed one as
	// ingest.sealed.cpu.pprof), from its first second.
	if (r == 1 || r == runsTotal+1) && profileFor > 0 {
		name := "ingest.cpu.pprof"
		if seal {
			name = "ingest.sealed.cpu.pprof"
		}
		go func() {
			time.Sleep(time.Second)
			takeProfile(adminAddr, filepath.Join(work, name), profileFor)
		}()
	}
	var spansAt, eventsAt time.Duration
	var peak float64
	// Progress is read from ingest's own metrics (rows acknowledged by
	// ClickHouse), not by counting in ClickHouse: that statement costs the
	// server about 5 ms of CPU, so ten a second took about 5% of a core from
	// the system under test. The counts are checked in ClickHouse once,
	// after.
	for spansAt == 0 || eventsAt == 0 {
		if time.Since(start) > 10*time.Minute {
			return 0, 0, 0, 0, 0, fmt.Errorf("run %d: not done after 10 minutes", r)
		}
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, procstat.PeakRSSMiB(cmd.Process.Pid))
		written := byTable(adminAddr, "agentaudit_ingest_rows_written_total", func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
		if spansAt == 0 && int64(written["spans"]) >= wantSpans {
			spansAt = time.Since(start)
		}
		if eventsAt == 0 && int64(written["audit_events"]) >= wantEvents {
			eventsAt = time.Since(start)
		}
	}
	var s, e uint64
	if err = conn.QueryRow(ctx, "SELECT (SELECT count() FROM "+db+".spans), (SELECT count() FROM "+db+".audit_events)").Scan(&s, &e); err != nil {
		return
	}
	if int64(s) != wantSpans || int64(e) != wantEvents {
		return 0, 0, 0, 0, 0, fmt.Errorf("run %d: ingest reported every row written, ClickHouse holds %d spans and %d events, want %d and %d", r, s, e, wantSpans, wantEvents)
	}
	peak = max(peak, procstat.PeakRSSMiB(cmd.Process.Pid))
	printBatches(r, adminAddr)
	fmt.Printf("run %d: ingest_cpu_seconds=%.1f clickhouse_cpu_seconds=%.1f kafka_cpu_seconds=%.1f wall_seconds=%.1f (until every row is stored; kafka: kfake in this process)\n",
		r, procstat.CPUSeconds(cmd.Process.Pid), procstat.CPUSeconds(chPID)-chCPU, procstat.CPUSeconds(os.Getpid())-kafkaCPU, max(spansAt, eventsAt).Seconds())
	if seal {
		// The backlog's ingest is done: stop it, so that the live phase
		// runs one ingest process, as a deployment would, not a second
		// one beside an idle first.
		stop()
		proofLagP99, err = liveProofLag(ctx, conn, db, chAddr, kafkaAddr, ingestBin, work, cmd.Env)
		_ = conn.Exec(ctx, "DROP DATABASE "+db+" SYNC")
		return float64(wantSpans) / spansAt.Seconds(), float64(wantEvents) / eventsAt.Seconds(), peak, 0, proofLagP99 * 1000, err
	}
	if err = conn.Exec(ctx, "OPTIMIZE TABLE "+db+".spans FINAL"); err != nil {
		return
	}
	var bytes, rows uint64
	if err = conn.QueryRow(ctx, "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active AND database = ? AND table = 'spans'", db).Scan(&bytes, &rows); err != nil {
		return
	}
	if r == 1 {
		printColumnSizes(ctx, conn, db)
	}
	// Leave nothing behind that would merge in the background during the
	// next run.
	if !keepLast || r < runsTotal {
		_ = conn.Exec(ctx, "DROP DATABASE "+db+" SYNC")
	}
	return float64(wantSpans) / spansAt.Seconds(), float64(wantEvents) / eventsAt.Seconds(), peak, float64(bytes) / float64(rows), 0, nil
}

// Live traffic for the proof lag: the backlog's events were written long
// before ingest read them, so their lag says nothing. After the backlog and
// its merges,
// liveEvents events are written at liveRate per second, each stamped with
// the producer's clock, to a topic of their own (so the backlog topics stay
// the same for every run), ingested with sealing by a second ingest into a
// database of its own; the p99 of its agentaudit_integrity_proof_lag_seconds
// (Kafka timestamp -> stored signed checkpoint covering the event) is the
// figure.
const (
	liveEvents = 40_000
	liveRate   = 5_000
)

var liveWorkload []sim.Message

func liveProofLag(ctx context.Context, conn driver.Conn, mainDB, chAddr, kafkaAddr, ingestBin, work string, env []string) (float64, error) {
	db, topic := mainDB+"_live", mainDB+"_live_events"
	defer func() { _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC") }()
	// The live phase measures latency under steady traffic, not in the
	// merge storm that follows a 1M-span backlog: let the merges finish.
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var merging uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&merging); err == nil && merging == 0 {
			break
		}
	}
	if err := sim.CreateTopics(ctx, []string{kafkaAddr}, 4, topic); err != nil {
		return 0, err
	}
	port, err := chdb.FreePort()
	if err != nil {
		return 0, err
	}
	adminAddr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(ingestBin,
		"-ingest.kafka.brokers="+kafkaAddr, "-ingest.kafka.group-id="+db,
		"-ingest.kafka.spans-topic=", "-ingest.kafka.events-topic="+topic,
		"-clickhouse.addr="+chAddr, "-clickhouse.database="+db,
		"-telemetry.listen-address="+adminAddr, "-telemetry.log-level=warn", "-otlp-http.listen-address=",
		"-integrity.enabled")
	cmd.Args = append(cmd.Args, extraIngestArgs...)
	cmd.Env = env
	logf, err := os.Create(filepath.Join(work, db+".log"))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	// Ready when it joined its consumer group (/readyz): live events written
	// before would measure the start of the process, not steady traffic.
	for deadline := time.Now().Add(time.Minute); ; {
		if resp, err := http.Get("http://" + adminAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("live ingest did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	msgs := make([]sim.Message, len(liveWorkload))
	for i, m := range liveWorkload {
		m.Topic = topic
		msgs[i] = m
	}
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: []string{kafkaAddr}, Rate: liveRate})
	if err != nil {
		return 0, err
	}
	err = p.Produce(ctx, msgs)
	p.Close()
	if err != nil {
		return 0, err
	}
	// Wait on the live ingest's metrics, not on ClickHouse: counting
	// leaves and checkpoints every 50 ms took server CPU from the inserts
	// whose latency is measured. The histogram counts an event once a
	// stored checkpoint covers it; ClickHouse is checked once, after.
	want := len(msgs)
	deadline := time.Now().Add(2 * time.Minute)
	var bounds, counts []float64
	for {
		var herr error
		bounds, counts, herr = histogram(adminAddr, "agentaudit_integrity_proof_lag_seconds")
		if herr == nil && counts[len(counts)-1] >= float64(want) {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("live: %v events provable after 2 minutes, want %d (%v)", counts, want, herr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var leaves, covered uint64
	if err := conn.QueryRow(ctx, "SELECT (SELECT count() FROM "+db+".merkle_leaves), (SELECT sum(s) FROM (SELECT max(size) AS s FROM "+db+".checkpoints GROUP BY log_id))").Scan(&leaves, &covered); err != nil {
		return 0, err
	}
	if int(leaves) != want || int(covered) != want {
		return 0, fmt.Errorf("live: %d leaves, %d covered by checkpoints, want %d", leaves, covered, want)
	}
	q := func(x float64) float64 { v, _ := quantile(bounds, nil, counts, x); return 1000 * v }
	fmt.Printf("live proof lag: p50=%.0f p90=%.0f p99=%.0f ms\n", q(0.5), q(0.9), q(0.99))
	for _, h := range []string{"agentaudit_ingest_flush_duration_seconds", "agentaudit_integrity_append_duration_seconds"} {
		if b, c, err := histogram(adminAddr, h); err == nil && len(c) > 0 && c[len(c)-1] > 0 {
			p50, _ := quantile(b, nil, c, 0.5)
			p99, _ := quantile(b, nil, c, 0.99)
			fmt.Printf("live %s: n=%.0f p50=%.0f p99=%.0f ms\n", h, c[len(c)-1], 1000*p50, 1000*p99)
		}
	}
	return quantile(bounds, nil, counts, 0.99)
}

// printColumnSizes shows where the disk bytes of spans go (run 1 only).
func printColumnSizes(ctx context.Context, conn driver.Conn, db string) {
	rows, err := conn.Query(ctx, `SELECT name, data_compressed_bytes, data_uncompressed_bytes FROM system.columns
		WHERE database = ? AND table = 'spans' ORDER BY data_compressed_bytes DESC LIMIT 12`, db)
	if err != nil {
		return
	}
	defer rows.Close()
	fmt.Println("largest spans columns after OPTIMIZE FINAL (compressed bytes, ratio):")
	for rows.Next() {
		var name string
		var c, u uint64
		if rows.Scan(&name, &c, &u) == nil && c > 0 {
			fmt.Printf("  %-28s %10d  x%.1f\n", name, c, float64(u)/float64(c))
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// histogram reads a histogram's cumulative bucket counts (by upper bound,
// +Inf last) from a Prometheus text endpoint: its first series.
func histogram(addr, name string) ([]float64, []float64, error) {
	mfs, err := families(addr)
	if err != nil {
		return nil, nil, err
	}
	mf, ok := mfs[name]
	if !ok || len(mf.GetMetric()) == 0 {
		return nil, nil, fmt.Errorf("%s: not exported", name)
	}
	h := mf.GetMetric()[0].GetHistogram()
	var bounds, counts []float64
	for _, b := range h.GetBucket() {
		bounds, counts = append(bounds, b.GetUpperBound()), append(counts, float64(b.GetCumulativeCount()))
	}
	return bounds, append(counts, float64(h.GetSampleCount())), nil
}

// quantile estimates the q-quantile of the observations between two reads
// of a histogram (cumulative counts, the last one the total), interpolating
// within a bucket as Prometheus' histogram_quantile does.
func quantile(bounds, before, after []float64, q float64) (float64, error) {
	n := len(after)
	if before == nil {
		before = make([]float64, n)
	}
	total := after[n-1] - before[n-1]
	if total <= 0 {
		return 0, fmt.Errorf("no observations")
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for i, ub := range bounds {
		c := after[i] - before[i]
		if c >= rank {
			if c == prevCount {
				return ub, nil
			}
			return prevBound + (ub-prevBound)*(rank-prevCount)/(c-prevCount), nil
		}
		prevBound, prevCount = ub, c
	}
	return prevBound, nil // in the +Inf bucket: the largest finite bound
}
