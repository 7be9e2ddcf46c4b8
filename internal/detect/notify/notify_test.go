package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

// A receiver answers each message 500, then 429 with Retry-After: 1, then
// 200. Every message is delivered exactly once with the same webhook-id on
// all three attempts, each attempt is a webhook_deliveries row, the
// Retry-After is honoured, and every signature verifies (with the sink and
// with an independent HMAC).
func TestRetries500Then429Then200DeliverEachMessageOnce(t *testing.T) {
	conn, db := newDB(t)
	sec := secret(1)
	rcv := newReceiver(t, []string{sec}, func(id string, n int, h http.Header) int {
		switch n {
		case 1:
			return http.StatusInternalServerError
		case 2:
			h.Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	cfg := testConfig(t, rcv.srv.URL, sec)
	s, reg := startSender(t, cfg, conn, db)

	const n = 5
	want := map[string]bool{}
	for i := range n {
		d := detection(i, "tenant-a", fmt.Sprintf("tok-%d", i))
		if err := s.Act(context.Background(), d, true); err != nil {
			t.Fatal(err)
		}
		want[notify.DeliveryID(d.ID, "siem", notify.KindRevoke)] = true
		want[notify.DeliveryID(d.ID, "siem", notify.KindNotify)] = true
		if _, ok := s.Revoked(d.TokenID); !ok {
			t.Fatalf("Revoked(%s) = false after a revoking Act", d.TokenID)
		}
	}
	waitFor(t, 20*time.Second, "every message delivered", func() bool { return len(rcv.successes()) == len(want) })
	// Records are written after the response; wait for the last ones.
	waitFor(t, 10*time.Second, "every attempt recorded", func() bool {
		return count(t, conn, "SELECT count() FROM webhook_deliveries") == uint64(3*len(want))
	})

	for id, c := range rcv.successes() {
		if !want[id] || c != 1 {
			t.Errorf("webhook-id %s: %d successful deliveries (expected: %v)", id, c, want[id])
		}
	}
	byID := map[string][]received{}
	for _, q := range rcv.requests() {
		byID[q.id] = append(byID[q.id], q)
		if q.sinkStatus != http.StatusNoContent && q.sinkStatus != 0 {
			t.Errorf("sink rejected %s attempt: %d", q.id, q.sinkStatus)
		}
		if !hmacValid(q, sec) {
			t.Errorf("independent HMAC check failed for %s", q.id)
		}
	}
	for id, qs := range byID {
		if len(qs) != 3 {
			t.Fatalf("%s: %d requests, want 3", id, len(qs))
		}
		if gap := qs[2].at.Sub(qs[1].at); gap < 900*time.Millisecond {
			t.Errorf("%s: third attempt %s after the 429 with Retry-After: 1", id, gap)
		}
		if string(qs[0].body) != string(qs[2].body) {
			t.Errorf("%s: body changed between attempts", id)
		}
	}

	rows, err := conn.Query(context.Background(), `SELECT delivery_id, groupArray(attempt), groupArray(status_code), groupArray(outcome)
		FROM (SELECT * FROM webhook_deliveries ORDER BY attempt) GROUP BY delivery_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id string
		var attempts, codes []uint16
		var outcomes []string
		if err := rows.Scan(&id, &attempts, &codes, &outcomes); err != nil {
			t.Fatal(err)
		}
		seen++
		if fmt.Sprint(attempts, codes, outcomes) != "[1 2 3] [500 429 200] [retry retry success]" {
			t.Errorf("%s: attempts %v codes %v outcomes %v", id, attempts, codes, outcomes)
		}
	}
	if seen != len(want) {
		t.Errorf("%d delivery ids in webhook_deliveries, want %d", seen, len(want))
	}
	if c := count(t, conn, `SELECT count() FROM (SELECT argMax(state, version) AS s FROM webhook_outbox GROUP BY delivery_id) WHERE s = 'delivered'`); c != uint64(len(want)) {
		t.Errorf("%d outbox rows delivered, want %d", c, len(want))
	}
	if c := count(t, conn, "SELECT count() FROM revocations"); c != n {
		t.Errorf("%d revocations, want %d", c, n)
	}
	if v := metric(t, reg, "agentaudit_webhook_sent_total"); v != float64(len(want)) {
		t.Errorf("sent_total %v", v)
	}
	if got := series(t, reg, "agentaudit_webhook_errors_total"); got != 2 {
		t.Errorf("%d error series, want status_5xx and status_429", got)
	}
	waitFor(t, 5*time.Second, "queue empty", func() bool {
		return metric(t, reg, "agentaudit_webhook_queue_length") == 0
	})
}

// A 410 disables the endpoint: one attempt, nothing more sent, the state
// persisted so a new Sender on the same database stays away from it.
func TestGoneDisablesEndpointAcrossRestarts(t *testing.T) {
	conn, db := newDB(t)
	sec := secret(2)
	rcv := newReceiver(t, []string{sec}, func(string, int, http.Header) int { return http.StatusGone })
	cfg := testConfig(t, rcv.srv.URL, sec)
	cfg.Endpoints[0].Kinds = config.StringSlice{notify.KindNotify}
	s, reg, stop := runSender(t, cfg, conn, db)
	if err := s.Act(context.Background(), detection(1, "tenant-a", "tok-1"), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "endpoint disabled", func() bool {
		return metric(t, reg, "agentaudit_webhook_endpoint_disabled") == 1
	})
	waitFor(t, 10*time.Second, "attempt recorded", func() bool {
		return count(t, conn, "SELECT count() FROM webhook_deliveries WHERE outcome = 'disabled' AND status_code = 410") == 1
	})
	if err := s.Act(context.Background(), detection(2, "tenant-a", "tok-2"), false); err != nil {
		t.Fatal(err)
	}
	if c := count(t, conn, "SELECT count() FROM webhook_endpoint_state WHERE endpoint = 'siem' AND disabled = 1"); c != 1 {
		t.Fatalf("endpoint state rows: %d", c)
	}
	stop()
	s2, reg2, stop2 := runSender(t, cfg, conn, db)
	if err := s2.Act(context.Background(), detection(3, "tenant-a", "tok-3"), false); err != nil {
		t.Fatal(err)
	}
	if v := metric(t, reg2, "agentaudit_webhook_endpoint_disabled"); v != 1 {
		t.Errorf("restarted sender: endpoint_disabled = %v", v)
	}
	if n := len(rcv.requests()); n != 1 {
		t.Errorf("receiver got %d requests, want only the one answered 410", n)
	}
	// A new URL for the endpoint re-enables it.
	ok := newReceiver(t, []string{sec}, func(string, int, http.Header) int { return http.StatusNoContent })
	cfg.Endpoints[0].URL = ok.srv.URL
	stop2()
	s3, _ := startSender(t, cfg, conn, db)
	if err := s3.Act(context.Background(), detection(4, "tenant-a", "tok-4"), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "delivery to the new URL", func() bool { return len(ok.successes()) == 1 })
}

// Two secrets (rotation): each request carries two signatures; a receiver
// knowing only the old or only the new secret accepts it; one knowing
// neither answers 401 and the sender keeps retrying.
func TestRotationSignsWithEverySecret(t *testing.T) {
	conn, db := newDB(t)
	oldSec, newSec, other := secret(3), secret(4), secret(5)
	rcv := newReceiver(t, []string{oldSec}, func(string, int, http.Header) int { return http.StatusOK })
	cfg := testConfig(t, rcv.srv.URL, newSec, oldSec)
	s, _ := startSender(t, cfg, conn, db)
	if err := s.Act(context.Background(), detection(1, "tenant-a", "tok-1"), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "two deliveries", func() bool { return len(rcv.successes()) == 2 })
	for _, q := range rcv.requests() {
		if q.sinkStatus != http.StatusNoContent {
			t.Errorf("sink with the old secret: %d", q.sinkStatus)
		}
		if !hmacValid(q, newSec) || !hmacValid(q, oldSec) || hmacValid(q, other) {
			t.Errorf("signatures %q: want valid for new and old secret only", q.sigs)
		}
		h := http.Header{}
		h.Set(webhooksink.HeaderID, q.id)
		h.Set(webhooksink.HeaderTimestamp, q.ts)
		h.Set(webhooksink.HeaderSignature, q.sigs)
		for _, c := range []struct {
			secret string
			ok     bool
		}{{newSec, true}, {oldSec, true}, {other, false}} {
			v, err := webhooksink.NewVerifier([]string{c.secret}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := v.Verify(h, q.body); (err == nil) != c.ok {
				t.Errorf("verify with secret %s: err %v, want ok=%v", c.secret[:8], err, c.ok)
			}
		}
	}
}

// At most one revocation per token per window, also across restarts (the
// state is warmed from ClickHouse); an older revocation outside the window
// does not block a new one; notifications are never deduplicated here.
func TestRevocationDedupPerTokenAndWindow(t *testing.T) {
	conn, db := newDB(t)
	sec := secret(6)
	rcv := newReceiver(t, []string{sec}, func(string, int, http.Header) int { return http.StatusOK })
	cfg := testConfig(t, rcv.srv.URL, sec)
	ctx := context.Background()
	// tok-old was revoked 2 h ago: outside the 1 h window.
	old := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	if err := conn.Exec(ctx, "INSERT INTO revocations (tenant_id, token_id, ts, rule_id) VALUES (?, ?, ?, ?)", "tenant-a", "tok-old", old, "x"); err != nil {
		t.Fatal(err)
	}
	s, _, stop := runSender(t, cfg, conn, db)
	if at, ok := s.Revoked("tok-old"); !ok || !at.Equal(old) {
		t.Fatalf("Revoked(tok-old) = %v %v, want the warmed time %v", at, ok, old)
	}
	for i := range 3 {
		if err := s.Act(ctx, detection(i, "tenant-a", "tok-1"), true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Act(ctx, detection(9, "tenant-a", "tok-old"), true); err != nil {
		t.Fatal(err)
	}
	// 4 notifications + revoke tok-1 once + revoke tok-old again.
	waitFor(t, 10*time.Second, "6 deliveries", func() bool { return len(rcv.successes()) == 6 })

	// A restarted sender remembers tok-1's revocation, and acting again on
	// a delivered detection sends nothing new. One request at a time and
	// messages are sent in due order, so a resend of detection 0 would
	// arrive before detection 5's notification.
	cfg.Endpoints[0].MaxConcurrency = 1
	stop()
	s2, _ := startSender(t, cfg, conn, db)
	if _, ok := s2.Revoked("tok-1"); !ok {
		t.Fatal("restarted sender forgot tok-1's revocation")
	}
	if err := s2.Act(ctx, detection(0, "tenant-a", "tok-1"), false); err != nil {
		t.Fatal(err)
	}
	if err := s2.Act(ctx, detection(5, "tenant-a", "tok-1"), true); err != nil {
		t.Fatal(err)
	}
	last := notify.DeliveryID(detection(5, "tenant-a", "tok-1").ID, "siem", notify.KindNotify)
	waitFor(t, 10*time.Second, "detection 5 notified", func() bool { return rcv.successes()[last] == 1 })
	if n := len(rcv.requests()); n != 7 {
		t.Errorf("%d requests, want 7", n)
	}

	revokes := map[string]int{}
	for _, q := range rcv.requests() {
		var p notify.Payload
		if err := json.Unmarshal(q.body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Type == notify.TypeRevoke {
			revokes[p.Data.TokenID]++
		}
	}
	if fmt.Sprint(revokes) != "map[tok-1:1 tok-old:1]" {
		t.Errorf("revoke messages per token: %v", revokes)
	}
	if c := count(t, conn, "SELECT count() FROM revocations WHERE token_id = 'tok-1'"); c != 1 {
		t.Errorf("%d revocation rows for tok-1", c)
	}
	for id, c := range rcv.successes() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}
