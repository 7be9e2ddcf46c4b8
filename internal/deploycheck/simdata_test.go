package deploycheck

import (
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/chdb"
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

// simData is a database with the schema, simulated agent traffic ingested
// through the real ingest pipeline, and detector output derived from the
// simulator's ground truth.
type simData struct {
	conn    driver.Conn
	db      string
	start   time.Time // first simulated event
	stats   sim.Stats
	attacks []sim.Attack
	metrics map[string][]string // what ingest registered: name → labels
}

// loadSimData fills a fresh database. The simulated clock starts 20 minutes
// ago, so "last hour" dashboards see all of it.
func loadSimData(t *testing.T) *simData {
	t.Helper()
	ctx := context.Background()
	began := time.Now()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	// The embedded server ships the same tiered policy as docker-compose.
	if _, err := migrate.Apply(ctx, conn, ms, migrate.Options{Database: db, StoragePolicy: chdb.StoragePolicy}); err != nil {
		t.Fatal(err)
	}

	t.Logf("schema applied in %v", time.Since(began).Round(time.Millisecond))
	cfg := sim.DefaultConfig()
	cfg.Seed = 7
	cfg.Start = time.Now().UTC().Add(-20 * time.Minute).Truncate(time.Second)
	cfg.MaxTraces = 1500
	cfg.Attacks.Kinds = sim.AllAttackKinds
	cfg.Attacks.Warmup = 10 * time.Second
	cfg.Attacks.Interval = 16 * time.Second
	cfg.Attacks.Quiet = 20 * time.Second
	cfg.Attacks.RevokeReuseDelay = 10 * time.Second
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []sim.Message
	for m := range s.All() {
		msgs = append(msgs, m)
	}
	stats, attacks := s.Stats(), s.Truth()
	if len(attacks) == 0 {
		t.Fatal("the simulator produced no attacks")
	}

	t.Logf("simulated %d messages at %v", len(msgs), time.Since(began).Round(time.Millisecond))
	broker, err := kafkabroker.StartFake(kafkabroker.FakeOptions{
		Topics: map[string]int{cfg.SpansTopic: 2, cfg.EventsTopic: 2}, AutoCreateTopics: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: []string{broker.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Produce(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	t.Logf("produced at %v", time.Since(began).Round(time.Millisecond))
	// The real ingest service, with its defaults, consumes what was produced.
	var icfg ingest.Config
	fs := newFlagSet()
	icfg.RegisterFlagsWithPrefix("", fs)
	icfg.Brokers = config.StringSlice{broker.Addr()}
	icfg.SpansTopic, icfg.EventsTopic = cfg.SpansTopic, cfg.EventsTopic
	icfg.Batch.MaxAge = 200 * time.Millisecond
	icfg.SessionTimeout, icfg.HeartbeatInterval = 6*time.Second, 500*time.Millisecond
	rec := NewRecorder()
	svc, err := ingest.New(icfg, conn, chstore.Config{Addr: []string{chtest.Addr()}, Database: db, Username: "default"}, slog.New(slog.NewTextHandler(io.Discard, nil)), rec)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	// Seconds normally; the deadline is for a machine shared with others.
	deadline := time.Now().Add(120 * time.Second)
	for {
		spans, events := count(t, conn, "spans"), count(t, conn, "audit_events")
		if spans == uint64(stats.Spans) && events == uint64(stats.Events) {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("ingest wrote %d/%d spans and %d/%d events in 120 s", spans, stats.Spans, events, stats.Events)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ingested at %v", time.Since(began).Round(time.Millisecond))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ingest: %v", err)
	}
	t.Logf("ingest stopped at %v", time.Since(began).Round(time.Millisecond))

	d := &simData{conn: conn, db: db, start: cfg.Start, stats: stats, attacks: attacks, metrics: rec.Metrics()}
	d.insertDetectorOutput(t)
	t.Logf("loaded %d spans, %d audit events, %d attacks (%v) into %s", stats.Spans, stats.Events, len(attacks), stats.Attacks, db)
	return d
}

func count(t *testing.T, conn driver.Conn, table string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type detectionRule struct {
	rule     string
	severity event.Severity
	revoke   bool // the rule revokes the token
}

// detectionRules is what a detector reports for each attack kind.
func detectionRules() map[sim.AttackKind]detectionRule {
	return map[sim.AttackKind]detectionRule{
		sim.AttackScopeEscalation:         {"scope_escalation.out_of_delegation", event.SeverityCritical, true},
		sim.AttackScopeProbing:            {"scope_escalation.probing", event.SeverityHigh, false},
		sim.AttackDelegationExceedsParent: {"scope_escalation.exceeds_parent", event.SeverityHigh, true},
		sim.AttackScopeGrowth:             {"scope_escalation.baseline_growth", event.SeverityMedium, false},
		sim.AttackCrossTenant:             {"cross_tenant.resource", event.SeverityCritical, true},
		sim.AttackStaleBinding:            {"cross_tenant.stale_binding", event.SeverityHigh, false},
		sim.AttackRevokedTokenReuse:       {"credential.revoked_reuse", event.SeverityCritical, true},
		sim.AttackRateBurst:               {"rate.burst", event.SeverityMedium, false},
	}
}

// insertDetectorOutput writes what a detector and its notifier would have
// written for the simulator's attacks: one detection each, a notification
// webhook for every detection and, for the revoking rules, a revocation
// and its webhook: delivered at once, after a retry, or given up.
func (d *simData) insertDetectorOutput(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	tokenTypes := map[string]string{}
	rows, err := d.conn.Query(ctx, "SELECT token_id, any(token_type) FROM audit_events GROUP BY token_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, typ string
		if err := rows.Scan(&id, &typ); err != nil {
			t.Fatal(err)
		}
		tokenTypes[id] = typ
	}
	rows.Close()

	dets, err := d.conn.PrepareBatch(ctx, "INSERT INTO detections (detection_id, ts, event_ts, rule_id, severity, tenant_id, agent_id, parent_identity, token_id, token_type, tool_name, resource_tenant_id, evidence_event_ids, trace_id, summary, suppressed_count, attributes, version)")
	if err != nil {
		t.Fatal(err)
	}
	revs, err := d.conn.PrepareBatch(ctx, "INSERT INTO revocations (tenant_id, token_id, token_type, agent_id, ts, detection_id, delivery_id, rule_id, reason)")
	if err != nil {
		t.Fatal(err)
	}
	dels, err := d.conn.PrepareBatch(ctx, "INSERT INTO webhook_deliveries (delivery_id, detection_id, ts, tenant_id, endpoint, kind, token_id, attempt, status_code, outcome, latency_ms, error, next_attempt_at)")
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(d.attacks, func(i, j int) bool { return d.attacks[i].ID < d.attacks[j].ID })
	revoked, rules := 0, detectionRules()
	for _, at := range d.attacks {
		r, ok := rules[at.Kind]
		if !ok {
			t.Fatalf("attack kind %s has no detection rule in this test", at.Kind)
		}
		det := event.Detection{
			ID:               uuid.NewHash(sha1.New(), uuid.NameSpaceOID, []byte(fmt.Sprintf("%s/%d", at.Kind, at.ID)), 5),
			Time:             at.End.Add(2 * time.Second),
			EventTime:        at.End,
			RuleID:           r.rule,
			Severity:         r.severity,
			TenantID:         at.TenantID,
			AgentID:          at.AgentID,
			ParentIdentity:   at.ParentIdentity,
			TokenID:          at.TokenID,
			TokenType:        tokenTypes[at.TokenID],
			ResourceTenantID: at.OtherTenantID,
			Summary:          fmt.Sprintf("%s by agent %s (scopes %v)", at.Kind, at.AgentID, at.Scopes),
			Attributes:       map[string]string{"attack_id": fmt.Sprint(at.ID)},
			Version:          1,
		}
		for _, id := range at.EventIDs {
			u, err := uuid.Parse(id)
			if err != nil {
				t.Fatalf("attack %d: event id %q: %v", at.ID, id, err)
			}
			det.EvidenceEventIDs = append(det.EvidenceEventIDs, u)
		}
		if len(at.TraceIDs) > 0 {
			det.TraceID = at.TraceIDs[0]
		}
		// Positional: clickhouse-go's AppendStruct rejects the named string
		// type event.Severity ("converting event.Severity to String is
		// unsupported"), so it is appended as a string.
		if err := dets.Append(det.ID, det.Time, det.EventTime, det.RuleID, string(det.Severity), det.TenantID, det.AgentID,
			det.ParentIdentity, det.TokenID, det.TokenType, det.ToolName, det.ResourceTenantID, det.EvidenceEventIDs,
			det.TraceID, det.Summary, det.SuppressedCount, det.Attributes, det.Version); err != nil {
			t.Fatal(err)
		}
		notify := "ntf-" + det.ID.String()
		appendDelivery(t, dels, notify, det, det.Time.Add(150*time.Millisecond), "oncall", "notify", 1, 200, "success", "")
		if !r.revoke {
			continue
		}
		revoked++
		delivery := "rev-" + det.ID.String()
		at0 := det.Time.Add(100 * time.Millisecond)
		if err := revs.Append(det.TenantID, det.TokenID, det.TokenType, det.AgentID, at0, det.ID, delivery, det.RuleID, det.Summary); err != nil {
			t.Fatal(err)
		}
		switch revoked % 3 {
		case 0: // delivered at once
			appendDelivery(t, dels, delivery, det, at0, "idp", "revoke", 1, 200, "success", "")
		case 1: // 503, then delivered
			appendDelivery(t, dels, delivery, det, at0, "idp", "revoke", 1, 503, "retry", "status 503")
			appendDelivery(t, dels, delivery, det, at0.Add(2*time.Second), "idp", "revoke", 2, 200, "success", "")
		case 2: // the identity provider keeps failing: given up
			for a := uint16(1); a <= 3; a++ {
				outcome := "retry"
				if a == 3 {
					outcome = "failed"
				}
				appendDelivery(t, dels, delivery, det, at0.Add(time.Duration(a)*time.Second), "idp", "revoke", a, 500, outcome, "status 500")
			}
		}
	}
	for _, b := range []driver.Batch{dets, revs, dels} {
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
}

func appendDelivery(t *testing.T, b driver.Batch, id string, det event.Detection, ts time.Time, endpoint, kind string, attempt, status uint16, outcome, errMsg string) {
	t.Helper()
	var next *time.Time
	if outcome == "retry" {
		n := ts.Add(time.Second)
		next = &n
	}
	latency := 20 + float64(attempt)*15
	if err := b.Append(id, det.ID, ts, det.TenantID, endpoint, kind, det.TokenID, attempt, status, outcome, latency, errMsg, next); err != nil {
		t.Fatal(err)
	}
}
