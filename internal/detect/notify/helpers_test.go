package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
	"github.com/agentaudit/agentaudit/schema"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		// This test binary re-executed as a sender process (see restart_test.go).
		os.Exit(runChild())
	}
	chtest.Main(&leakCheck{m})
}

// leakCheck runs goleak after the tests (chtest.Main owns os.Exit).
type leakCheck struct{ m interface{ Run() int } }

func (l *leakCheck) Run() int {
	before := goleak.IgnoreCurrent() // the shared ClickHouse server's goroutines
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(before); err != nil {
			fmt.Println("goleak:", err)
			return 1
		}
	}
	return code
}

// secret returns a deterministic whsec_ secret.
func secret(seed byte) string {
	return webhooksink.FormatSecret(bytes.Repeat([]byte{seed}, 32))
}

// newDB is a fresh database with the schema applied.
func newDB(t testing.TB) (driver.Conn, string) {
	t.Helper()
	conn, db := chtest.Database(t)
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Apply(context.Background(), conn, ms, migrate.Options{Database: db}); err != nil {
		t.Fatal(err)
	}
	return conn, db
}

// testConfig has one endpoint "siem" for url with the given secrets and a
// millisecond retry schedule.
func testConfig(t testing.TB, url string, secrets ...string) notify.Config {
	t.Helper()
	c, err := buildConfig(url, secrets...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func buildConfig(url string, secrets ...string) (notify.Config, error) {
	var c notify.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlagsWithPrefix("notify.", fs)
	c.Schedule = notify.DurationList{0, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	ep := notify.Endpoint{Name: "siem", URL: url, Kinds: config.StringSlice{notify.KindRevoke, notify.KindNotify}, MaxConcurrency: 4, Timeout: 2 * time.Second}
	for _, s := range secrets {
		ep.Secrets = append(ep.Secrets, config.Secret(s))
	}
	c.Endpoints = []notify.Endpoint{ep}
	return c, config.Validate(&c)
}

// detection i of tenant about token.
func detection(i int, tenant, token string) event.Detection {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return event.Detection{
		ID:   uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "detection-%d-%s-%s", i, tenant, token)),
		Time: now, EventTime: now.Add(-time.Millisecond),
		RuleID: "scope_escalation.out_of_delegation", Severity: event.SeverityCritical,
		TenantID: tenant, AgentID: "agent-7", ParentIdentity: "user:alice@example.com",
		TokenID: token, TokenType: "oauth", ToolName: "db.delete", ResourceTenantID: tenant,
		EvidenceEventIDs: []uuid.UUID{uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "event-%d", i))},
		TraceID:          "4bf92f3577b34da6a3ce929d0e0e4736",
		Summary:          "required scopes db:delete not in delegation db:read; action was allowed",
		Attributes:       map[string]string{"required_scopes": "db:delete"},
		Version:          1,
	}
}

// received is one request a receiver got.
type received struct {
	id, ts, sigs string
	body         []byte
	at           time.Time
	status       int // what the receiver answered
	sinkStatus   int // what a webhooksink.Sink with the receiver's secrets answered
}

// receiver is an httptest server whose answer to the n-th request (1-based)
// of a webhook-id is script(id, n). Every request is also passed to a Sink
// holding sinkSecrets, and its verdict recorded.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []received
	counts map[string]int
	script func(id string, n int, h http.Header) int
	sink   *webhooksink.Sink
}

func newReceiver(t *testing.T, sinkSecrets []string, script func(id string, n int, h http.Header) int) *receiver {
	t.Helper()
	sink, err := webhooksink.New(webhooksink.Options{Secrets: sinkSecrets})
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{counts: map[string]int{}, script: script, sink: sink}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		rec := httptest.NewRecorder()
		sreq := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		sreq.Header = req.Header.Clone()
		r.sink.ServeHTTP(rec, sreq)
		id := req.Header.Get(webhooksink.HeaderID)
		r.mu.Lock()
		r.counts[id]++
		n := r.counts[id]
		r.mu.Unlock()
		status := r.script(id, n, w.Header()) // may block: not under the lock
		r.mu.Lock()
		r.reqs = append(r.reqs, received{id: id, ts: req.Header.Get(webhooksink.HeaderTimestamp),
			sigs: req.Header.Get(webhooksink.HeaderSignature), body: body, at: time.Now(),
			status: status, sinkStatus: rec.Code})
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

// successes counts 2xx answers per webhook-id.
func (r *receiver) successes() map[string]int {
	out := map[string]int{}
	for _, q := range r.requests() {
		if q.status >= 200 && q.status < 300 {
			out[q.id]++
		}
	}
	return out
}

// hmacValid checks a request's signature header independently of
// webhooksink: some v1 signature equals base64(HMAC-SHA256(key, id.ts.body)).
func hmacValid(q received, whsec string) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec, "whsec_"))
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(q.id + "." + q.ts + "."))
	m.Write(q.body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, s := range strings.Split(q.sigs, " ") {
		if s == want {
			return true
		}
	}
	return false
}

// waitFor polls cond every 10 ms until it holds or timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startSender builds and runs a Sender; t.Cleanup cancels it and waits.
func startSender(t *testing.T, cfg notify.Config, conn driver.Conn, db string) (*notify.Sender, *prometheus.Registry) {
	t.Helper()
	s, reg, _ := runSender(t, cfg, conn, db)
	return s, reg
}

// runSender is startSender that also returns stop, which cancels Run and
// waits for it (a clean restart; t.Cleanup calls it too).
func runSender(t *testing.T, cfg notify.Config, conn driver.Conn, db string) (*notify.Sender, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := notify.New(cfg, conn, db, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, reg, stop
}

// count runs a count query with bound args.
func count(t *testing.T, conn driver.Conn, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// metric sums every series of the metric family name in reg (0 if absent).
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// series counts the series of the metric family name in reg.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
