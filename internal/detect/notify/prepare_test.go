package notify_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/event"
)

// PrepareBatch writes the outbox but sends nothing until released. A
// process that dies between the outbox insert and the detections insert
// leaves prepared rows behind: the restarted sender sends those whose
// detection is stored and holds the others until the detector prepares
// the same detection again (after storing it), then sends them once.
func TestPreparedRowsWaitForTheirDetection(t *testing.T) {
	ctx := context.Background()
	conn, db := newDB(t)
	sec := secret(5)
	rcv := newReceiver(t, []string{sec}, func(string, int, http.Header) int { return http.StatusNoContent })
	cfg := testConfig(t, rcv.srv.URL, sec)
	cfg.Endpoints[0].Kinds = config.StringSlice{notify.KindNotify}

	// The process that "dies": prepares two detections, releases neither.
	s1, _, stop1 := runSender(t, cfg, conn, db)
	stored, lost := detection(1, "tenant-a", "tok-1"), detection(2, "tenant-a", "tok-2")
	for _, d := range []event.Detection{stored, lost} {
		if _, err := s1.PrepareBatch(ctx, []notify.Action{{Detection: d}}); err != nil {
			t.Fatal(err)
		}
	}
	stop1()
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("%d requests for prepared, unreleased messages", n)
	}
	if c := count(t, conn, "SELECT count() FROM webhook_outbox WHERE state = 'prepared'"); c != 2 {
		t.Fatalf("%d prepared outbox rows, want 2", c)
	}
	// Only the first detection's insert was acknowledged.
	if err := conn.Exec(ctx, "INSERT INTO detections (detection_id, ts, event_ts, rule_id, severity, tenant_id, version) VALUES (?, ?, ?, ?, ?, ?, ?)",
		stored.ID, stored.Time, stored.EventTime, stored.RuleID, string(stored.Severity), stored.TenantID, stored.Version); err != nil {
		t.Fatal(err)
	}

	s2, reg, _ := runSender(t, cfg, conn, db)
	storedID, lostID := notify.DeliveryID(stored.ID, "siem", notify.KindNotify), notify.DeliveryID(lost.ID, "siem", notify.KindNotify)
	waitFor(t, 10*time.Second, "the stored detection's message", func() bool { return rcv.successes()[storedID] == 1 })
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return metric(t, reg, "agentaudit_webhook_queue_length") == 0 })
	if got := rcv.successes(); got[lostID] != 0 {
		t.Fatalf("the message of a detection that was never stored was sent: %v", got)
	}

	// The detector re-detects it (same id), stores it and prepares it again.
	release, err := s2.PrepareBatch(ctx, []notify.Action{{Detection: lost}})
	if err != nil {
		t.Fatal(err)
	}
	release()
	waitFor(t, 10*time.Second, "the held message", func() bool { return rcv.successes()[lostID] == 1 })
	waitFor(t, 10*time.Second, "both delivered in the outbox", func() bool {
		return count(t, conn, `SELECT count() FROM (SELECT argMax(state, version) AS s FROM webhook_outbox GROUP BY delivery_id) WHERE s = 'delivered'`) == 2
	})
	for id, n := range rcv.successes() {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if n := len(rcv.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

// With several detector instances, a starting sender loads only the
// pending outbox rows its instance wrote (and rows without an owner): two
// instances do not both send every pending message.
func TestOutboxLoaderTakesOnlyItsInstancesRows(t *testing.T) {
	ctx := context.Background()
	conn, db := newDB(t)
	sec := secret(6)
	rcv := newReceiver(t, []string{sec}, func(string, int, http.Header) int { return http.StatusNoContent })
	base := testConfig(t, rcv.srv.URL, sec)
	base.Endpoints[0].Kinds = config.StringSlice{notify.KindNotify}
	cfgFor := func(instance string) notify.Config { c := base; c.Instance = instance; return c }

	// Each instance wrote a pending row and died before sending it (Act
	// before Run only writes the outbox).
	det := map[string]event.Detection{"a": detection(1, "tenant-a", "tok-1"), "b": detection(2, "tenant-a", "tok-2")}
	for inst, d := range det {
		s, err := notify.New(cfgFor(inst), conn, db, nil, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Act(ctx, d, false); err != nil {
			t.Fatal(err)
		}
	}
	id := func(inst string) string { return notify.DeliveryID(det[inst].ID, "siem", notify.KindNotify) }

	_, regB, _ := runSender(t, cfgFor("b"), conn, db)
	waitFor(t, 10*time.Second, "instance b's message", func() bool { return rcv.successes()[id("b")] == 1 })
	waitFor(t, 10*time.Second, "b's queue empty", func() bool { return metric(t, regB, "agentaudit_webhook_queue_length") == 0 })
	if got := rcv.successes(); got[id("a")] != 0 {
		t.Fatalf("instance b sent instance a's pending message: %v", got)
	}
	if n := len(rcv.requests()); n != 1 {
		t.Fatalf("%d requests after instance b started, want 1", n)
	}

	_, _, _ = runSender(t, cfgFor("a"), conn, db)
	waitFor(t, 10*time.Second, "instance a's message", func() bool { return rcv.successes()[id("a")] == 1 })
	waitFor(t, 10*time.Second, "both delivered in the outbox", func() bool {
		return count(t, conn, `SELECT count() FROM (SELECT argMax(state, version) AS s FROM webhook_outbox GROUP BY delivery_id) WHERE s = 'delivered'`) == 2
	})
	if n := len(rcv.requests()); n != 2 {
		t.Errorf("%d requests, want 2 (each message once)", n)
	}
}
