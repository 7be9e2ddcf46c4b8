package notify_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

const childEnv = "AGENTAUDIT_NOTIFY_CHILD"

// childSchedule is the retry schedule of the killed and of the restarted
// sender: short, so the restarted one retries within the test.
var childSchedule = notify.DurationList{0, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond,
	100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}

// runChild is a sender process: it acts on N detections (revoking), prints
// "acted N" once Act returned for all, and runs until killed.
func runChild() int {
	addr, db, url, sec := os.Getenv("CHILD_CH_ADDR"), os.Getenv("CHILD_DB"), os.Getenv("CHILD_URL"), os.Getenv("CHILD_SECRET")
	n, _ := strconv.Atoi(os.Getenv("CHILD_N"))
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := buildConfig(url, sec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.Schedule = childSchedule
	cfg.Endpoints[0].MaxConcurrency = 1
	cfg.Endpoints[0].Timeout = 5 * time.Minute // the hanging request stays in flight until the kill
	log, err := telemetry.NewLogger(os.Stderr, "info", "json")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := notify.New(cfg, conn, db, log, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() { _ = s.Run(context.Background()) }()
	for i := range n {
		if err := s.Act(context.Background(), detection(i, "tenant-a", fmt.Sprintf("tok-%d", i)), true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Printf("acted %d\n", n)
	select {} // until SIGKILL
}

// A sender process is SIGKILLed with one request in flight and every other
// message never attempted; a new sender on the same database delivers every
// message exactly once.
func TestKilledSenderDeliversAllPendingAfterRestart(t *testing.T) {
	conn, db := newDB(t)
	sec := secret(7)
	release := make(chan struct{})
	var phase2 atomic.Bool
	rcv := newReceiver(t, []string{sec}, func(id string, n int, h http.Header) int {
		if !phase2.Load() {
			<-release // hang: the request is in flight when the sender dies
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var releaseOnce sync.Once
	// Registered after the receiver, so it runs before the server's Close,
	// which would wait forever for a hanging handler if the test failed early.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	const n = 20
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "child.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_CH_ADDR="+chtest.Addr(), "CHILD_DB="+db,
		"CHILD_URL="+rcv.srv.URL, "CHILD_SECRET="+sec, "CHILD_N="+strconv.Itoa(n))
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	acted := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "acted") {
				acted <- sc.Text()
			}
		}
		_ = cmd.Wait()
		close(waited)
	}()
	select {
	case line := <-acted:
		t.Logf("child: %s", line)
	case <-time.After(60 * time.Second):
		b, _ := os.ReadFile(logPath)
		t.Fatalf("child did not act in time; log:\n%s", b)
	}
	waitFor(t, 30*time.Second, "a request in flight", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.counts) >= 1
	})
	rcv.mu.Lock()
	if len(rcv.counts) != 1 {
		t.Errorf("%d messages attempted before the kill, want 1 (one in flight, the rest never attempted)", len(rcv.counts))
	}
	rcv.mu.Unlock()
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-waited
	phase2.Store(true)
	releaseOnce.Do(func() { close(release) }) // the dead sender's request gets its 503 now

	cfg := testConfig(t, rcv.srv.URL, sec)
	cfg.Schedule = childSchedule
	s, _ := startSender(t, cfg, conn, db)
	waitFor(t, 30*time.Second, "every message delivered after restart", func() bool { return len(rcv.successes()) == 2*n })
	for i := range n {
		d := detection(i, "tenant-a", fmt.Sprintf("tok-%d", i))
		for _, kind := range []string{notify.KindRevoke, notify.KindNotify} {
			if c := rcv.successes()[notify.DeliveryID(d.ID, "siem", kind)]; c != 1 {
				t.Errorf("detection %d %s: %d successful deliveries", i, kind, c)
			}
		}
		if _, ok := s.Revoked(d.TokenID); !ok {
			t.Errorf("restarted sender does not know %s was revoked", d.TokenID)
		}
	}
	waitFor(t, 10*time.Second, "successes recorded", func() bool {
		return count(t, conn, "SELECT count() FROM webhook_deliveries WHERE outcome = 'success'") == 2*n
	})
}
