package ingest

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/app"
	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/kafkabroker"
)

const ingestChildEnv = "AGENTAUDIT_INGEST_CHILD"

// runIngestChild is cmd/ingest's main, run by a re-executed test binary so
// the drill can SIGKILL a real ingest process.
func runIngestChild(args []string) int {
	var cfg ServiceConfig
	return app.Main("ingest", &cfg, args, os.Stderr, func(ctx context.Context, d app.Deps) error {
		return RunService(ctx, &cfg, d.Conn, d.Database, d.Logger, d.Registry, d.Admin)
	})
}

type ingestProc struct {
	cmd  *exec.Cmd
	done chan error
}

func startIngestProc(t *testing.T, logPath string, args ...string) *ingestProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), ingestChildEnv+"=1")
	cmd.Stdout, cmd.Stderr = f, f
	// No Pdeathsig on purpose, see chdb.StartProcess; t.Cleanup kills it.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ingestProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	})
	return p
}

// The ingest process is SIGKILLed at random moments while 200,000 spans and
// 50,000 audit events flow through a real Apache Kafka broker. Afterwards a
// plain count() of each table equals what was produced and equals
// uniqExact of the natural key: no row lost, none doubled.
func TestDrillIngestKilledRepeatedlyLosesAndDoublesNothing(t *testing.T) {
	ctx := context.Background()
	broker, err := kafkabroker.StartApache(ctx, kafkabroker.ApacheOptions{
		DataDir: filepath.Join(t.TempDir(), "kafka"),
		Topics:  map[string]int{"spans": 4, "events": 4},
	})
	if err != nil {
		t.Fatalf("apache kafka: %v", err)
	}
	defer broker.Close()
	fmt.Printf("kafka: %s (drill)\n", broker.Kind())
	e := newEnv(t, 1) // database + schema; its kfake broker is not used here
	e.broker.Close()

	const traces, spansPerTrace, events = 50_000, 4, 50_000
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)

	var wg sync.WaitGroup
	wg.Add(1)
	produced := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(produced)
		now := time.Now().UTC()
		const step = 1000
		for i := 0; i < traces; i += step {
			var sm, em []kafka.Message
			for j := i; j < i+step; j++ {
				tenant := fmt.Sprintf("tenant-%d", j%13)
				v, key := testTrace(uint64(j), tenant, spansPerTrace, now)
				sm = append(sm, kafka.Message{Key: []byte(key), Value: v})
				em = append(em, kafka.Message{Key: []byte(tenant), Value: testEvent(uint64(j), tenant, now)})
			}
			produce(t, broker.Addr(), "spans", sm...)
			produce(t, broker.Addr(), "events", em...)
			// ~40 s of traffic: long enough for every kill to land mid-stream.
			time.Sleep(800 * time.Millisecond)
		}
	}()

	logPath := filepath.Join(t.TempDir(), "ingest.log")
	if d := os.Getenv("AGENTAUDIT_TEST_LOG_DIR"); d != "" {
		logPath = filepath.Join(d, "drill-ingest.log")
	}
	args := []string{
		"-ingest.kafka.brokers=" + broker.Addr(),
		"-ingest.kafka.spans-topic=spans", "-ingest.kafka.events-topic=events",
		"-ingest.kafka.group-id=drill",
		"-ingest.kafka.session-timeout=6s", "-ingest.kafka.heartbeat-interval=1s",
		"-ingest.batch.max-rows=4000", "-ingest.batch.max-age=300ms",
		"-clickhouse.addr=" + chtest.Addr(), "-clickhouse.database=" + e.db,
		"-telemetry.listen-address=127.0.0.1:0", "-telemetry.log-level=info", "-otlp-http.listen-address=",
		"-integrity.enabled", "-integrity.checkpoint-interval=200ms",
	}
	// Every event is also sealed into its partition's Merkle log: the kills
	// land between row insert, leaf insert, checkpoint and commit.
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGENTAUDIT_INTEGRITY_KEY", base64.StdEncoding.EncodeToString(priv.Seed()))
	kills := 0
	for range 6 {
		p := startIngestProc(t, logPath, args...)
		// Kill only once this process is writing (it first waits for the
		// killed member's session to expire), at a random moment after.
		before, _ := counts(t, e.conn, "spans")
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if now, _ := counts(t, e.conn, "spans"); now > before {
				break
			}
		}
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		p.done <- <-p.done // keep the result for the cleanup
		kills++
		rows, _ := counts(t, e.conn, "spans")
		t.Logf("kill %d: spans stored so far %d", kills, rows)
	}
	final := startIngestProc(t, logPath, args...)
	<-produced
	wg.Wait()
	waitCounts(t, e.conn, "spans", traces*spansPerTrace, 4*time.Minute)
	waitCounts(t, e.conn, "audit_events", events, time.Minute)

	_ = final.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-final.done:
		if err != nil {
			t.Fatalf("ingest after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ingest did not exit within 30s of SIGTERM")
	}
	recovered := grepCount(t, logPath, "rows stored past its committed offset")
	t.Logf("%d SIGKILLs; %d partition takeovers found rows stored but not committed, and skipped them", kills, recovered)

	checkSealedOnce(t, e.conn, pub, events)
}

// checkSealedOnce: the integrity logs hold every one of events audit
// events exactly once and verify clean against the rows.
func checkSealedOnce(t *testing.T, conn driver.Conn, pub ed25519.PublicKey, events uint64) {
	t.Helper()
	var leaves, uniq uint64
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(event_id) FROM merkle_leaves").Scan(&leaves, &uniq); err != nil {
		t.Fatal(err)
	}
	if leaves != events || uniq != events {
		t.Errorf("merkle_leaves: count()=%d uniqExact(event_id)=%d, want both %d", leaves, uniq, events)
	}
	rep, err := integrity.Verify(context.Background(), conn, integrity.PublicKeys{integrity.KeyID(pub): pub}, integrity.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	rep.WriteText(&report)
	if !rep.Clean() {
		t.Fatalf("integrity verify after the drill is not clean:\n%s", report.String())
	}
	t.Logf("integrity verify: clean; %d leaves in %d logs", leaves, len(rep.Logs))
}

// ClickHouse is killed for 20 seconds while data flows. Ingest retries,
// stops fetching, commits nothing it has not stored, and catches up exactly
// once it is back; the audit events are sealed throughout, and the leaves
// and checkpoints the outage interrupted are stored once, in order.
func TestDrillClickHouseOutageRecoversExactly(t *testing.T) {
	ctx := context.Background()
	dir := chtest.TempDir(t)
	ch, err := chtest.StartChild(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	tcp, http := portOf(ch.Addr()), portOf(ch.HTTPAddr())
	e := newEnvOn(t, 4, ch.Addr())

	const traces = 20_000
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		now := time.Now().UTC()
		for i := 0; i < traces; i += 500 {
			var sm, em []kafka.Message
			for j := i; j < i+500; j++ {
				v, key := testTrace(uint64(j), "acme", 3, now)
				sm = append(sm, kafka.Message{Key: []byte(key), Value: v})
				em = append(em, kafka.Message{Key: []byte(key), Value: testEvent(uint64(j), "acme", now)})
			}
			produce(t, e.broker.Addr(), "spans", sm...)
			produce(t, e.broker.Addr(), "events", em...)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	signer, pub := testSigner(t)
	stop := startServiceWith(t, e, e.cfg, prometheus.NewRegistry(), signer)
	// Kill ClickHouse once ingest is writing, mid-stream.
	var before uint64
	for deadline := time.Now().Add(30 * time.Second); before < 3000 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		before, _ = counts(t, e.conn, "spans")
	}
	ch.Kill()
	t.Logf("ClickHouse killed with %d spans stored", before)
	time.Sleep(20 * time.Second)
	ch2, err := chtest.StartChildOn(ctx, dir, tcp, http)
	if err != nil {
		t.Fatal(err)
	}
	defer ch2.Stop(ctx)
	t.Log("ClickHouse restarted on the same data and ports")
	<-produced
	waitCounts(t, e.conn, "spans", traces*3, 2*time.Minute)
	waitCounts(t, e.conn, "audit_events", traces, time.Minute)
	stop() // the last leaves and checkpoints are written on the way out
	checkSealedOnce(t, e.conn, pub, traces)
}

func portOf(addr string) int {
	var p int
	fmt.Sscanf(addr[strings.LastIndexByte(addr, ':')+1:], "%d", &p)
	return p
}

func grepCount(t *testing.T, path, needle string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), needle) {
			n++
		}
	}
	return n
}
