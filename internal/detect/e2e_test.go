package detect

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/ingest"
	"github.com/agentaudit/agentaudit/internal/kafkabroker"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/sim"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/schema"
)

func TestMain(m *testing.M) { chtest.Main(&leakCheck{m}) }

// leakCheck runs goleak after the tests (chtest.Main owns os.Exit).
type leakCheck struct{ m interface{ Run() int } }

func (l *leakCheck) Run() int {
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreCurrent()); err != nil {
			fmt.Println("goleak:", err)
			return 1
		}
	}
	return code
}

// fakeActions records what it was asked to do and checks that every
// detection it receives is already stored in ClickHouse.
type fakeActions struct {
	conn driver.Conn
	mu   sync.Mutex
	acts []fakeAct
	errs []string
}

type fakeAct struct {
	d      event.Detection
	revoke bool
}

func (f *fakeActions) Act(ctx context.Context, d event.Detection, revoke bool) error {
	var n uint64
	err := f.conn.QueryRow(ctx, "SELECT count() FROM detections WHERE detection_id = ? AND version = ?", d.ID, d.Version).Scan(&n)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || n == 0 {
		f.errs = append(f.errs, fmt.Sprintf("detection %s v%d acted on before it was stored (count %d, err %v)", d.ID, d.Version, n, err))
	}
	f.acts = append(f.acts, fakeAct{d, revoke})
	return nil
}

func (f *fakeActions) snapshot() ([]fakeAct, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.acts), slices.Clone(f.errs)
}

type env struct {
	broker *kafkabroker.Broker
	conn   driver.Conn
	db     string
}

func newEnv(t *testing.T, partitions int) *env {
	t.Helper()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(context.Background(), conn, ms, migrate.Options{Database: db}); err != nil {
		t.Fatal(err)
	}
	b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{Topics: map[string]int{"spans": partitions, "events": partitions}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{broker: b, conn: conn, db: db}
}

func testLog() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("AGENTAUDIT_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testConfig points the detector at e with rate ceilings just above the
// simulator's benign maxima.
func testConfig(t *testing.T, e *env, lim sim.Limits) Config {
	t.Helper()
	var c Config
	fs := newFlagSet()
	c.RegisterFlagsWithPrefix("", fs)
	c.Brokers = config.StringSlice{e.broker.Addr()}
	c.GroupID = "detector-test"
	c.SpansTopic, c.EventsTopic = "spans", "events"
	c.CommitInterval = 200 * time.Millisecond
	c.SessionTimeout = 6 * time.Second
	c.HeartbeatInterval = 500 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	c.Retry.MaxBackoff = 500 * time.Millisecond
	rules := fmt.Sprintf("rules:\n  rate.limit_exceeded:\n    window: %s\n    thresholds: {requests: %d, tokens: %d}\n", lim.Window, lim.Events, lim.Tokens)
	c.RulesFile = filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(c.RulesFile, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

type running struct {
	svc  *Service
	stop func(kill bool)
}

// startDetector runs a detector until stop: stop(false) drains, stores,
// acts and commits; stop(true) returns without any of that, as a killed
// process would.
func startDetector(t *testing.T, e *env, cfg Config, acts Actions) *running {
	t.Helper()
	svc, err := New(cfg, e.conn, acts, testLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop := func(kill bool) {
		if stopped {
			return
		}
		stopped = true
		svc.aborted.Store(kill)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("detector Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("detector did not stop within 30s")
		}
	}
	t.Cleanup(func() { stop(false) })
	return &running{svc: svc, stop: stop}
}

// simMessages runs the simulator for d of simulated time, then drains it:
// every started attack is complete.
func simMessages(t *testing.T, cfg sim.Config, d time.Duration) ([]sim.Message, []sim.Attack, sim.Limits) {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []sim.Message
	for m := range s.All() {
		msgs = append(msgs, m)
		if m.Time.Sub(cfg.Start) > d {
			break
		}
	}
	msgs = append(msgs, s.Drain()...)
	return msgs, s.Truth(), s.Limits()
}

func produce(t *testing.T, addr string, msgs []sim.Message) (events, traces int) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond, BatchSize: 1000, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	batch := make([]kafka.Message, 0, 1000)
	flush := func() {
		if err := w.WriteMessages(context.Background(), batch...); err != nil {
			t.Fatalf("produce: %v", err)
		}
		batch = batch[:0]
	}
	for _, m := range msgs {
		topic := "events"
		if m.IsTrace() {
			topic = "spans"
			traces++
		} else {
			events++
		}
		batch = append(batch, kafka.Message{Topic: topic, Key: m.Key, Value: m.Value})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	return events, traces
}

// waitConsumed waits until the detector processed events and traces
// messages and stored and acted on everything it found.
func waitConsumed(t *testing.T, svc *Service, events, traces int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ne := metricValue(t, svc.m.events.WithLabelValues("events", "processed"))
		nt := metricValue(t, svc.m.events.WithLabelValues("spans", "processed"))
		if int(ne) >= events && int(nt) >= traces && svc.sink.done.Load() == svc.sink.submitted.Load() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("detector processed %v/%d events and %v/%d traces within %v", ne, events, nt, traces, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// storedDetections reads the latest version of every detection.
func storedDetections(t *testing.T, conn driver.Conn) []event.Detection {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT "+detectionColumns+" FROM detections FINAL ORDER BY event_ts, rule_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []event.Detection
	for rows.Next() {
		var d event.Detection
		var sev string
		if err := rows.Scan(&d.ID, &d.Time, &d.EventTime, &d.RuleID, &sev, &d.TenantID, &d.AgentID, &d.ParentIdentity,
			&d.TokenID, &d.TokenType, &d.ToolName, &d.ResourceTenantID, &d.EvidenceEventIDs, &d.TraceID, &d.Summary,
			&d.SuppressedCount, &d.Attributes, &d.Version); err != nil {
			t.Fatal(err)
		}
		d.Severity = event.Severity(sev)
		out = append(out, d)
	}
	return out
}

// ruleFor is the rule that must detect each simulated attack kind.
var ruleFor = map[sim.AttackKind]string{
	sim.AttackScopeEscalation:         RuleOutOfDelegation,
	sim.AttackScopeProbing:            RuleOutOfDelegation,
	sim.AttackDelegationExceedsParent: RuleDelegationExceedsParent,
	sim.AttackScopeGrowth:             RuleScopeGrowth,
	sim.AttackCrossTenant:             RuleResourceMismatch,
	sim.AttackStaleBinding:            RuleStaleBinding,
	sim.AttackRevokedTokenReuse:       RuleRevokedReuse,
	sim.AttackRateBurst:               RuleRateLimit,
}

// checkAgainstTruth: each attack is detected exactly once, by its rule, on
// its own events; no detection is unexplained; and ids are unique.
func checkAgainstTruth(t *testing.T, ds []event.Detection, truth []sim.Attack) {
	t.Helper()
	byAttack := map[int][]event.Detection{}
	ids := map[uuid.UUID]bool{}
	for _, d := range ds {
		if ids[d.ID] {
			t.Errorf("detection id %s stored twice (FINAL)", d.ID)
		}
		ids[d.ID] = true
		found := false
		for _, at := range truth {
			if len(d.EvidenceEventIDs) > 0 && slices.Contains(at.EventIDs, d.EvidenceEventIDs[0].String()) {
				byAttack[at.ID] = append(byAttack[at.ID], d)
				found = true
				break
			}
		}
		if !found {
			t.Errorf("detection not explained by any attack: %s %s agent=%s tenant=%s: %s", d.RuleID, d.Severity, d.AgentID, d.TenantID, d.Summary)
		}
	}
	kinds := map[sim.AttackKind]int{}
	for _, at := range truth {
		kinds[at.Kind]++
		got := byAttack[at.ID]
		if len(got) != 1 {
			var s []string
			for _, d := range got {
				s = append(s, d.RuleID)
			}
			t.Errorf("attack %d (%s, agent %s): %d detections %v, want exactly 1", at.ID, at.Kind, at.AgentID, len(got), s)
			continue
		}
		d := got[0]
		if d.RuleID != ruleFor[at.Kind] || d.AgentID != at.AgentID {
			t.Errorf("attack %d (%s): detected as %s on agent %s, want %s on %s", at.ID, at.Kind, d.RuleID, d.AgentID, ruleFor[at.Kind], at.AgentID)
		}
		for _, id := range d.EvidenceEventIDs {
			if !slices.Contains(at.EventIDs, id.String()) {
				t.Errorf("attack %d (%s): evidence %s is not one of its events", at.ID, at.Kind, id)
			}
		}
		switch at.Kind {
		case sim.AttackScopeProbing:
			if d.Severity != event.SeverityHigh || d.SuppressedCount == 0 {
				t.Errorf("probing %d: severity %s suppressed %d, want high with repeats", at.ID, d.Severity, d.SuppressedCount)
			}
		case sim.AttackScopeEscalation, sim.AttackCrossTenant:
			if d.Severity != event.SeverityCritical {
				t.Errorf("attack %d (%s): severity %s, want critical", at.ID, at.Kind, d.Severity)
			}
		case sim.AttackRateBurst, sim.AttackStaleBinding, sim.AttackScopeGrowth, sim.AttackRevokedTokenReuse:
			if d.SuppressedCount == 0 {
				t.Errorf("attack %d (%s): suppressed_count 0, want the repeats counted", at.ID, at.Kind)
			}
		}
	}
	for _, k := range sim.AllAttackKinds {
		if kinds[k] == 0 {
			t.Errorf("the simulation has no %s attack", k)
		}
	}
}

func attackSim() sim.Config {
	cfg := sim.DefaultConfig()
	cfg.Seed = 7
	cfg.AgentsPerTenant = 10
	cfg.Attacks.Kinds = slices.Clone(sim.AllAttackKinds)
	cfg.Attacks.Interval = 4 * time.Minute
	cfg.Attacks.MaxPerKind = 1
	return cfg
}

// Simulated traffic with every attack kind: each attack detected once,
// stored before it is acted on; nothing else detected.
func TestEndToEndSimAttacksDetectedOnce(t *testing.T) {
	e := newEnv(t, 4)
	msgs, truth, lim := simMessages(t, attackSim(), 7*time.Minute)
	events, traces := produce(t, e.broker.Addr(), msgs)
	t.Logf("produced %d events, %d traces, %d attacks", events, traces, len(truth))
	acts := &fakeActions{conn: e.conn}
	d := startDetector(t, e, testConfig(t, e, lim), acts)
	waitConsumed(t, d.svc, events, traces, 60*time.Second)
	ds := storedDetections(t, e.conn)
	checkAgainstTruth(t, ds, truth)
	got, errs := acts.snapshot()
	for _, err := range errs {
		t.Error(err)
	}
	// Every detection severe enough was acted on once; revocations only for
	// the critical, enforcement-failed ones.
	acted := map[uuid.UUID]int{}
	for _, a := range got {
		acted[a.d.ID]++
		if a.revoke != (a.d.Severity == event.SeverityCritical) {
			t.Errorf("%s %s: revoke=%v", a.d.RuleID, a.d.Severity, a.revoke)
		}
	}
	for _, d := range ds {
		if acted[d.ID] != 1 {
			t.Errorf("%s %s acted on %d times, want 1", d.RuleID, d.Severity, acted[d.ID])
		}
	}
	t.Logf("%d detections stored, %d actions", len(ds), len(got))
}

// 100k benign audit events (and their traces) produce no detection.
func TestEndToEndBenignTrafficNoDetections(t *testing.T) {
	e := newEnv(t, 4)
	cfg := sim.DefaultConfig()
	cfg.Seed = 11
	cfg.AgentsPerTenant = 10
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []sim.Message
	n := 0
	for m := range s.All() {
		msgs = append(msgs, m)
		if !m.IsTrace() {
			if n++; n == 100_000 {
				break
			}
		}
	}
	msgs = append(msgs, s.Drain()...)
	t0 := time.Now()
	d := startDetector(t, e, testConfig(t, e, s.Limits()), &fakeActions{conn: e.conn})
	events, traces := produce(t, e.broker.Addr(), msgs)
	t1 := time.Now()
	waitConsumed(t, d.svc, events, traces, 90*time.Second)
	t.Logf("produced in %v, consumed %v later", t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	if ds := storedDetections(t, e.conn); len(ds) != 0 {
		for _, x := range ds {
			t.Errorf("benign traffic detected: %s %s agent=%s: %s", x.RuleID, x.Severity, x.AgentID, x.Summary)
		}
	}
	t.Logf("%d events, %d traces: no detections", events, traces)
}

// The detector is killed (no flush, no commit) halfway through an attack
// sequence and restarted: the state it warms from ClickHouse (audit events
// written by ingest, its own detections) lets it finish every attack that
// spans the restart, and re-consuming what it had not committed creates no
// second detection.
//
// "committed": the first detector commits as it goes, so the restart
// re-consumes only a tail; "nothing_committed": it commits nothing, so the
// restart re-consumes everything it had detected.
func TestEndToEndKilledDetectorRestartsWarm(t *testing.T) {
	for _, replayAll := range []bool{false, true} {
		name := "committed"
		if replayAll {
			name = "nothing_committed"
		}
		t.Run(name, func(t *testing.T) { testRestartWarm(t, replayAll) })
	}
}

func testRestartWarm(t *testing.T, replayAll bool) {
	e := newEnv(t, 4)
	msgs, truth, lim := simMessages(t, attackSim(), 7*time.Minute)
	cut, split := splitPoint(t, msgs, truth)
	spanning := 0
	for _, at := range truth {
		if at.Start.Before(split) && at.End.After(split) {
			spanning++
		}
	}
	t.Logf("split at message %d of %d (%s); %d attacks span it", cut, len(msgs), split.Format(time.TimeOnly), spanning)

	// Ingest runs throughout: it is what the restarted detector warms from.
	startIngest(t, e)

	cfg := testConfig(t, e, lim)
	if replayAll {
		cfg.CommitInterval = time.Hour // nothing committed before the kill: all of it is re-consumed
	}
	ev1, tr1 := produce(t, e.broker.Addr(), msgs[:cut])
	acts := &fakeActions{conn: e.conn}
	d1 := startDetector(t, e, cfg, acts)
	waitConsumed(t, d1.svc, ev1, tr1, 60*time.Second)
	before := len(storedDetections(t, e.conn))
	d1.stop(true)
	waitRows(t, e.conn, "audit_events", ev1)

	produce(t, e.broker.Addr(), msgs[cut:])
	cfg.CommitInterval = 200 * time.Millisecond
	startDetector(t, e, cfg, acts)
	// It re-consumes what was not committed, then everything new: at least
	// ev2 and tr2 messages, and then no lag on any partition.
	waitCommittedToEnd(t, e, cfg.GroupID, 4, 90*time.Second)
	ds := storedDetections(t, e.conn)
	t.Logf("%d detections before the kill, %d after the restart", before, len(ds))
	checkAgainstTruth(t, ds, truth)
	var rows, ids uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count(), uniqExact(detection_id) FROM detections FINAL").Scan(&rows, &ids); err != nil {
		t.Fatal(err)
	}
	if rows != ids {
		t.Errorf("detections FINAL: %d rows for %d ids: a re-detection wrote a second row", rows, ids)
	}
	checkActedOnce(t, acts, "the restart")
}

// Two detectors share the partitions from the start (so neither learned
// anything at start-up); one leaves half-way; the other takes its
// partitions over and must carry on from what the first had learned (warmed
// from ClickHouse for the partitions it gains): every attack, including
// those that span the hand-over, detected once and acted on once.
func TestEndToEndTakenOverPartitionsAreWarmed(t *testing.T) {
	e := newEnv(t, 4)
	msgs, truth, lim := simMessages(t, attackSim(), 7*time.Minute)
	cut, _ := splitPoint(t, msgs, truth)
	startIngest(t, e)

	cfg := testConfig(t, e, lim)
	acts := &fakeActions{conn: e.conn}
	stay := startDetector(t, e, cfg, acts)
	leave := startDetector(t, e, cfg, acts)
	waitGeneration(t, stay.svc, leave.svc)
	ev1, _ := produce(t, e.broker.Addr(), msgs[:cut])
	waitCommittedToEnd(t, e, cfg.GroupID, 4, 90*time.Second)
	waitRows(t, e.conn, "audit_events", ev1)
	leave.stop(false)

	produce(t, e.broker.Addr(), msgs[cut:])
	waitCommittedToEnd(t, e, cfg.GroupID, 4, 90*time.Second)
	if n := metricValue(t, stay.svc.m.rewarms); n < 1 {
		t.Errorf("the remaining detector warmed %v times for partitions taken over, want at least 1", n)
	}
	checkAgainstTruth(t, storedDetections(t, e.conn), truth)
	checkActedOnce(t, acts, "the hand-over")
}

// waitGeneration waits until every detector consumes some partition: the
// group has formed with all of them.
func waitGeneration(t *testing.T, ds ...*Service) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		all := true
		for _, d := range ds {
			ch := make(chan prometheus.Metric, 64)
			d.m.lag.Collect(ch)
			if len(ch) == 0 { // a worker creates its partition's series when it starts
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the consumer group did not give every detector a partition within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// splitPoint is where the revoked token's reuse has not started yet, and a
// stale binding is half done, if possible: the index of the first message
// after it, and the time.
func splitPoint(t *testing.T, msgs []sim.Message, truth []sim.Attack) (int, time.Time) {
	t.Helper()
	var split time.Time
	for _, at := range truth {
		if at.Kind == sim.AttackRevokedTokenReuse {
			split = at.RevokeRequestedAt.Add(30 * time.Second)
		}
	}
	cut := slices.IndexFunc(msgs, func(m sim.Message) bool { return m.Time.After(split) })
	if cut <= 0 {
		t.Fatal("no split point")
	}
	return cut, split
}

// startIngest runs ingest on e until the test ends: what a detector warms
// from.
func startIngest(t *testing.T, e *env) {
	t.Helper()
	isvc, err := ingest.New(ingestConfig(e), e.conn, chstore.Config{Addr: []string{chtest.Addr()}, Database: e.db, Username: "default"}, testLog(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- isvc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// checkActedOnce: no action errors, and each detection acted on once
// across what (a restart, a hand-over).
func checkActedOnce(t *testing.T, acts *fakeActions, what string) {
	t.Helper()
	got, errs := acts.snapshot()
	for _, err := range errs {
		t.Error(err)
	}
	acted := map[uuid.UUID]int{}
	for _, a := range got {
		acted[a.d.ID]++
	}
	for id, n := range acted {
		if n != 1 {
			t.Errorf("detection %s acted on %d times across %s", id, n, what)
		}
	}
}

func ingestConfig(e *env) ingest.Config {
	var c ingest.Config
	c.RegisterFlagsWithPrefix("", newFlagSet())
	c.Brokers = config.StringSlice{e.broker.Addr()}
	c.SpansTopic, c.EventsTopic = "spans", "events"
	c.GroupID = "ingest-test"
	c.Batch.MaxAge = 200 * time.Millisecond
	c.SessionTimeout = 6 * time.Second
	c.HeartbeatInterval = 500 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	return c
}

func waitRows(t *testing.T, conn driver.Conn, table string, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if int(n) >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d rows, want %d", table, n, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricValue is the value of a counter (testutil.ToFloat64 would need a
// module this one does not require).
func metricValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// waitCommittedToEnd waits until the group's committed offset is the end
// of every partition of both topics: everything consumed has been stored
// and acted on (offsets are committed only then).
func waitCommittedToEnd(t *testing.T, e *env, group string, partitions int, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	c := &kafka.Client{Addr: kafka.TCP(e.broker.Addr())}
	parts := make([]int, partitions)
	reqs := make([]kafka.OffsetRequest, partitions)
	for p := range partitions {
		parts[p], reqs[p] = p, kafka.LastOffsetOf(p)
	}
	topics := []string{"events", "spans"}
	deadline := time.Now().Add(timeout)
	for {
		ends, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{"events": reqs, "spans": reqs}})
		if err != nil {
			t.Fatal(err)
		}
		com, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{"events": parts, "spans": parts}})
		if err != nil {
			t.Fatal(err)
		}
		behind := int64(0)
		for _, topic := range topics {
			committed := map[int]int64{} // absent: nothing committed yet
			for _, p := range com.Topics[topic] {
				committed[p.Partition] = max(p.CommittedOffset, 0)
			}
			for _, po := range ends.Topics[topic] {
				behind += po.LastOffset - committed[po.Partition]
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s is %d messages behind after %v", group, behind, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
