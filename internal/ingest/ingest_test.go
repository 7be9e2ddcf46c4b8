package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/event/eventtest"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
)

func TestMain(m *testing.M) {
	if os.Getenv(ingestChildEnv) == "1" {
		// This test binary re-executed as an ingest process (see drill_test.go).
		os.Exit(runIngestChild(os.Args[1:]))
	}
	chtest.Main(&leakCheck{m})
}

// leakCheck runs goleak after the tests (chtest.Main owns os.Exit).
type leakCheck struct{ m chtestM }

type chtestM interface{ Run() int }

func (l *leakCheck) Run() int {
	// The snapshot is taken before the tests: goroutines alive now (the
	// ClickHouse server's) are not leaks; any started by a test and still
	// running after all tests are.
	before := goleak.IgnoreCurrent()
	code := l.m.Run()
	// Test producers use kafka-go's shared default transport, which keeps
	// idle connections (and their goroutines) for reuse by design.
	kafka.DefaultTransport.(*kafka.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(before); err != nil {
			fmt.Println("goleak:", err)
			return 1
		}
	}
	return code
}

// Every span and event produced is stored once; nothing else.
func TestIngestStoresEverySpanAndEventOnce(t *testing.T) {
	e := newEnv(t, 3)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var spans, events []kafka.Message
	for i := range 300 {
		v, key := testTrace(uint64(i), fmt.Sprintf("tenant-%d", i%4), 3, now)
		spans = append(spans, kafka.Message{Key: []byte(key), Value: v})
		events = append(events, kafka.Message{Key: []byte(fmt.Sprintf("tenant-%d", i%4)), Value: testEvent(uint64(i), fmt.Sprintf("tenant-%d", i%4), now)})
	}
	produce(t, e.broker.Addr(), "spans", spans...)
	produce(t, e.broker.Addr(), "events", events...)
	startService(t, e, e.cfg)
	waitCounts(t, e.conn, "spans", 900, 30*time.Second)
	waitCounts(t, e.conn, "audit_events", 300, 30*time.Second)

	var tenants uint64
	var inputTokens uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT uniqExact(tenant_id), sum(input_tokens) FROM spans").Scan(&tenants, &inputTokens); err != nil {
		t.Fatal(err)
	}
	if tenants != 4 || inputTokens != 300*(10+20) {
		t.Fatalf("tenants=%d input_tokens=%d", tenants, inputTokens)
	}
}

// A previous owner of the partition inserted some rows (one message only in
// part, as an INSERT spanning two daily partitions can leave it) and died
// before committing. The new owner completes them without writing any twice.
func TestRedeliveryAfterPartialInsertWritesEachRowOnce(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	var msgs []kafka.Message
	for i := range 50 {
		v, key := testTrace(uint64(i), "acme", 4, now)
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: v})
	}
	produce(t, e.broker.Addr(), "spans", msgs...)

	// The earlier owner: rows of offsets 0..19 and span 0 and 2 of offset 20.
	c, err := newSpanCodec(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ins := chstore.NewInserter(e.target())
	defer ins.Close()
	// For offset 20, leave out spans 1 and 3 (expressed as "already stored").
	partial := &storedSet{rows: map[rowID]struct{}{{20, 1}: {}, {20, 3}: {}}, max: 20}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{e.broker.Addr()}, Topic: "spans", Partition: 0})
	defer r.Close()
	for i := 0; i <= 20; i++ {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var skip *storedSet
		if m.Offset == 20 {
			skip = partial
		}
		if _, err := c.appendTo(m, skip); err != nil {
			t.Fatal(err)
		}
	}
	if err := ins.Insert(ctx, c.table(), c.columns().input, ""); err != nil {
		t.Fatal(err)
	}
	if rows, _ := counts(t, e.conn, "spans"); rows != 20*4+2 {
		t.Fatalf("setup: %d rows", rows)
	}

	e.cfg.EventsTopic = ""
	reg := promRegistry()
	startServiceWith(t, e, e.cfg, reg, nil)
	waitCounts(t, e.conn, "spans", 50*4, 30*time.Second)
	if got := metricSum(t, reg, "agentaudit_ingest_redelivered_rows_skipped_total", "table", "spans"); got != 20*4+2 {
		t.Errorf("skipped rows metric = %v, want %d (the rows the earlier owner stored)", got, 20*4+2)
	}
}

// Undecodable and invalid messages go to the dead-letter topic with their
// reason and source position; every valid row around them is stored and the
// partition does not stall.
func TestPoisonMessagesAreDeadLetteredAndDoNotStallThePartition(t *testing.T) {
	e := newEnv(t, 1)
	now := time.Now().UTC().Truncate(time.Millisecond)
	valid, _ := testTrace(1, "acme", 3, now)
	poison := map[string][]byte{
		"truncated ingest trace": valid[:len(valid)/2],
		"ancient timestamp":      func() []byte { v, _ := testTrace(2, "acme", 3, now.AddDate(-5, 0, 0)); return v }(),
	}
	wantReason := map[string]event.Reason{"truncated ingest trace": event.ReasonDecodeFailed, "ancient timestamp": event.ReasonTimestampOutOfRange}
	// The corpus of rejected span messages event's and the detector's tests
	// run too: every one under the default limits in this topic's encoding.
	for _, c := range eventtest.RejectedSpans(now) {
		if c.Opts == nil && c.Encoding == event.Encoding(e.cfg.SpansEncoding) {
			poison[c.Name], wantReason[c.Name] = c.Msg, c.Reason
		}
	}
	var spanMsgs []kafka.Message
	wantSpans := 0
	for i := range 20 {
		v, key := testTrace(uint64(100+i), "acme", 3, now)
		spanMsgs = append(spanMsgs, kafka.Message{Key: []byte(key), Value: v})
		wantSpans += 3
		for name, p := range poison {
			if i == 5 {
				spanMsgs = append(spanMsgs, kafka.Message{Key: []byte(name), Value: p})
			}
		}
	}
	eventPoison := map[string][]byte{
		"not json":        []byte("{not json"),
		"missing fields":  []byte(`{"event_id":"5c1d9e34-5c7a-4c39-9a4f-5d8c8a0b9e11"}`),
		"invalid utf-8":   []byte("{\"event_id\":\"\xff\xfe\"}"),
		"raw tool params": []byte(strings.Replace(string(testEvent(7, "acme", now)), `"tool_name"`, `"tool_params":{"sql":"select 1"},"tool_name"`, 1)),
	}
	var eventMsgs []kafka.Message
	for i := range 20 {
		eventMsgs = append(eventMsgs, kafka.Message{Value: testEvent(uint64(1000+i), "acme", now)})
		if i == 3 {
			for _, p := range eventPoison {
				eventMsgs = append(eventMsgs, kafka.Message{Value: p})
			}
		}
	}
	produce(t, e.broker.Addr(), "spans", spanMsgs...)
	produce(t, e.broker.Addr(), "events", eventMsgs...)
	startService(t, e, e.cfg)
	waitCounts(t, e.conn, "spans", uint64(wantSpans), 30*time.Second)
	waitCounts(t, e.conn, "audit_events", 20, 30*time.Second)

	for topic, want := range map[string]int{"spans_dlq": len(poison), "events_dlq": len(eventPoison)} {
		got := readAll(t, e.broker.Addr(), topic, want)
		for _, m := range got {
			h := headers(m)
			if h[HeaderReason] == "" || h[HeaderSourceTopic]+"_dlq" != topic || h[HeaderSourceOffset] == "" || h[HeaderError] == "" {
				t.Fatalf("%s: dead letter lacks headers: %v", topic, h)
			}
			if want, ok := wantReason[string(m.Key)]; topic == "spans_dlq" && (!ok || h[HeaderReason] != string(want)) {
				t.Errorf("%s: %q dead-lettered for %s, want %s", topic, m.Key, h[HeaderReason], want)
			}
			t.Logf("%s: offset %s reason %s: %.80s", topic, h[HeaderSourceOffset], h[HeaderReason], h[HeaderError])
		}
	}
}

func readAll(t *testing.T, addr, topic string, want int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < want {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("%s: read %d of %d: %v", topic, len(out), want, err)
		}
		out = append(out, m)
	}
	return out
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// With sealing on, every stored audit event becomes provable while ingest
// keeps running (no flush, shutdown or further traffic needed): the
// checkpointer signs on its own clock, and the proof lag is observed once
// per event.
func TestSealedEventsBecomeProvableWhileRunning(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	signer, _ := testSigner(t)
	reg := prometheus.NewRegistry()
	if err := signer.Instrument(reg); err != nil {
		t.Fatal(err)
	}
	svc, err := New(e.cfg, e.conn, e.target(), slog.New(slog.NewJSONHandler(testLogWriter(), &slog.HandlerOptions{Level: slog.LevelWarn})), reg)
	if err != nil {
		t.Fatal(err)
	}
	svc.SealWith(signer)
	if err := svc.Joined(ctx); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("readiness before Run: %v, want ErrNotJoined", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest Run: %v", err)
		}
	}()

	now := time.Now().UTC().Truncate(time.Millisecond)
	var events []kafka.Message
	for i := range 200 {
		tenant := fmt.Sprintf("tenant-%d", i%4)
		events = append(events, kafka.Message{Key: []byte(tenant), Value: testEvent(uint64(i), tenant, now)})
	}
	produce(t, e.broker.Addr(), "events", events...)
	waitCounts(t, e.conn, "audit_events", 200, 30*time.Second)
	if err := svc.Joined(ctx); err != nil {
		t.Fatalf("readiness while consuming: %v", err)
	}

	// Poll: the latest checkpoints of both logs cover all 200 leaves, and
	// the lag histogram counts every event once (when it is covered).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var covered uint64
		if err := e.conn.QueryRow(ctx, "SELECT sum(s) FROM (SELECT max(size) AS s FROM checkpoints GROUP BY log_id)").Scan(&covered); err != nil {
			t.Fatal(err)
		}
		lags := metricSum(t, reg, "agentaudit_integrity_proof_lag_seconds")
		if covered == 200 && lags == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the events were stored: checkpoints cover %d of 200 leaves, %v proof lag observations", covered, lags)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var rows []struct {
		Note string `ch:"note"`
	}
	if err := e.conn.Select(ctx, &rows, "SELECT note FROM checkpoints"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := integrity.VerifyNote(r.Note, signer.PublicKeys()); err != nil {
			t.Fatalf("stored checkpoint does not verify: %v", err)
		}
	}
}
