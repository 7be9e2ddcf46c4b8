package notify_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect/notify"
)

// A receiver that always fails: the message is given up after
// len(schedule) attempts, each recorded, the outbox says failed.
func TestRetriesExhaustedMarkFailed(t *testing.T) {
	conn, db := newDB(t)
	sec := secret(8)
	rcv := newReceiver(t, []string{sec}, func(string, int, http.Header) int { return http.StatusBadGateway })
	cfg := testConfig(t, rcv.srv.URL, sec)
	cfg.Schedule = notify.DurationList{0, 5 * time.Millisecond, 5 * time.Millisecond}
	cfg.Endpoints[0].Kinds = config.StringSlice{notify.KindNotify}
	s, reg := startSender(t, cfg, conn, db)
	if err := s.Act(context.Background(), detection(1, "tenant-a", "tok-1"), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "message failed in the outbox", func() bool {
		return count(t, conn, `SELECT count() FROM (SELECT argMax(state, version) AS s FROM webhook_outbox GROUP BY delivery_id) WHERE s = 'failed'`) == 1
	})
	waitFor(t, 10*time.Second, "attempts recorded", func() bool {
		return count(t, conn, "SELECT count() FROM webhook_deliveries") == 3
	})
	if c := count(t, conn, "SELECT count() FROM webhook_deliveries WHERE outcome = 'failed' AND attempt = 3"); c != 1 {
		t.Errorf("last attempt not recorded as failed")
	}
	if n := len(rcv.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if v := metric(t, reg, "agentaudit_webhook_dropped_total"); v != 1 {
		t.Errorf("dropped_total = %v, want 1 (retries_exhausted)", v)
	}
	if c := count(t, conn, "SELECT count() FROM revocations"); c != 0 {
		t.Errorf("a revocation was recorded without a revoke endpoint")
	}
}

// A request slower than the endpoint timeout counts as a timeout and is
// retried; the next attempt succeeds.
func TestTimeoutIsRetried(t *testing.T) {
	conn, db := newDB(t)
	sec := secret(9)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	rcv := newReceiver(t, []string{sec}, func(id string, n int, h http.Header) int {
		if n == 1 {
			select {
			case <-release:
			case <-time.After(2 * time.Second):
			}
		}
		return http.StatusOK
	})
	cfg := testConfig(t, rcv.srv.URL, sec)
	cfg.Endpoints[0].Timeout = 100 * time.Millisecond
	cfg.Endpoints[0].Kinds = config.StringSlice{notify.KindNotify}
	s, reg := startSender(t, cfg, conn, db)
	if err := s.Act(context.Background(), detection(1, "tenant-a", "tok-1"), false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "delivery after a timeout", func() bool {
		return count(t, conn, "SELECT count() FROM webhook_deliveries WHERE outcome = 'success' AND attempt = 2") == 1
	})
	if c := count(t, conn, "SELECT count() FROM webhook_deliveries WHERE attempt = 1 AND status_code = 0 AND error != ''"); c != 1 {
		t.Errorf("timed-out attempt not recorded with its error")
	}
	if v := metric(t, reg, "agentaudit_webhook_errors_total"); v != 1 {
		t.Errorf("errors_total = %v", v)
	}
}

// More pending messages than the in-memory queue holds: the rest wait in
// the outbox and are reloaded as the queue drains; all are delivered once.
func TestQueueOverflowReloadsFromOutbox(t *testing.T) {
	conn, db := newDB(t)
	sec := secret(10)
	rcv := newReceiver(t, []string{sec}, func(string, int, http.Header) int { return http.StatusOK })
	cfg := testConfig(t, rcv.srv.URL, sec)
	cfg.QueueSize = 2
	cfg.Endpoints[0].Kinds = config.StringSlice{notify.KindNotify}
	cfg.Endpoints[0].MaxConcurrency = 1
	// Act before Run: nothing is sent yet, so the queue fills up.
	s, err := notify.New(cfg, conn, db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 9
	for i := range n {
		if err := s.Act(context.Background(), detection(i, "tenant-a", fmt.Sprint("tok-", i)), false); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 20*time.Second, "all delivered", func() bool { return len(rcv.successes()) == n })
	for id, c := range rcv.successes() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}
