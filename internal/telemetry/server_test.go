package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/telemetry"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// runServer starts s on a free port and stops it at the end of the test,
// failing the test if Run does not return nil.
func runServer(t *testing.T, s *telemetry.Server) (baseURL string, stop func() error) {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var stopped bool
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + s.Addr(), stop
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestTwoServersInOneProcessServeTheirOwnRegistries(t *testing.T) {
	client := newClient(t)
	var urls []string
	for _, name := range []string{"ingest", "detector"} {
		reg := telemetry.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "agentaudit_" + name + "_test_total", Help: "test"})
		reg.MustRegister(c)
		c.Add(3)
		s := telemetry.NewServer("127.0.0.1:0", reg, discardLogger())
		if s.Addr() != "127.0.0.1:0" {
			t.Errorf("Addr before Listen = %q, want the configured address", s.Addr())
		}
		url, _ := runServer(t, s)
		if strings.HasSuffix(url, ":0") {
			t.Fatalf("Addr after Listen = %q, want the bound port", url)
		}
		urls = append(urls, url)
	}
	if urls[0] == urls[1] {
		t.Fatalf("both servers on %s", urls[0])
	}
	for i, own := range []string{"agentaudit_ingest_test_total 3", "agentaudit_detector_test_total 3"} {
		other := []string{"agentaudit_detector_test_total", "agentaudit_ingest_test_total"}[i]
		code, body := get(t, client, urls[i]+"/metrics")
		if code != http.StatusOK || !strings.Contains(body, own) || strings.Contains(body, other) {
			t.Errorf("server %d /metrics: %d, want %q and not %q:\n%s", i, code, own, other, body)
		}
		if !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "promhttp_metric_handler_requests_total") {
			t.Errorf("server %d /metrics lacks runtime or handler metrics", i)
		}
		if code, body := get(t, client, urls[i]+"/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("server %d /healthz = %d %q, want 200 ok", i, code, body)
		}
		if code, _ := get(t, client, urls[i]+"/readyz"); code != http.StatusOK {
			t.Errorf("server %d /readyz = %d, want 200 without checks", i, code)
		}
	}
}

// failingCollector makes every gather fail, to see promhttp count the error.
type failingCollector struct{ desc *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("broken source"))
}

func TestMetricsErrorsAreLoggedAndCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(failingCollector{prometheus.NewDesc("agentaudit_test_broken", "test", nil, nil)})
	var logs bytes.Buffer
	s := telemetry.NewServer("127.0.0.1:0", reg, slog.New(slog.NewJSONHandler(&logs, nil)))
	h := s.Handler()

	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("/metrics = %d, want 200 (ContinueOnError)", rec.Code)
		}
		if body := rec.Body.String(); strings.Contains(body, `promhttp_metric_handler_errors_total{cause="gathering"} 1`) {
			if !strings.Contains(logs.String(), "broken source") {
				t.Errorf("gathering error not logged: %s", logs.String())
			}
			return
		}
	}
	t.Error("promhttp_metric_handler_errors_total{cause=\"gathering\"} not counted")
}

func readyz(t *testing.T, s *telemetry.Server) (int, telemetry.ReadinessReport) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var rep telemetry.ReadinessReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, rep
}

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	type check struct {
		name string
		fn   func(context.Context) error
	}
	for _, tc := range []struct {
		name       string
		checks     []check
		wantCode   int
		wantChecks []telemetry.CheckResult
	}{
		{name: "no checks is ready", wantCode: 200, wantChecks: []telemetry.CheckResult{}},
		{name: "all pass", checks: []check{{"clickhouse", ok}, {"kafka", ok}}, wantCode: 200,
			wantChecks: []telemetry.CheckResult{{Name: "clickhouse", Status: "ok"}, {Name: "kafka", Status: "ok"}}},
		{name: "one fails", checks: []check{
			{"clickhouse", func(context.Context) error { return errors.New("dial tcp: connection refused") }},
			{"kafka", ok},
		}, wantCode: 503, wantChecks: []telemetry.CheckResult{
			{Name: "clickhouse", Status: "failed", Error: "dial tcp: connection refused"},
			{Name: "kafka", Status: "ok"},
		}},
		{name: "check honouring its timeout fails", checks: []check{
			{"slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		}, wantCode: 503, wantChecks: []telemetry.CheckResult{{Name: "slow", Status: "failed", Error: "context deadline exceeded"}}},
		{name: "panicking check fails", checks: []check{
			{"buggy", func(context.Context) error { panic("boom") }},
		}, wantCode: 503, wantChecks: []telemetry.CheckResult{{Name: "buggy", Status: "failed", Error: "check panicked: boom"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), discardLogger(),
				telemetry.WithReadinessTimeout(50*time.Millisecond))
			for _, c := range tc.checks {
				s.AddReadinessCheck(c.name, c.fn)
			}
			code, rep := readyz(t, s)
			if code != tc.wantCode {
				t.Errorf("code = %d, want %d", code, tc.wantCode)
			}
			wantStatus := map[int]string{200: "ok", 503: "unavailable"}[tc.wantCode]
			if rep.Status != wantStatus || !equalResults(rep.Checks, tc.wantChecks) {
				t.Errorf("report = %+v, want status %s and %+v", rep, wantStatus, tc.wantChecks)
			}
		})
	}
}

func equalResults(a, b []telemetry.CheckResult) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		// want's Error is a substring: a timeout may be reported by the check
		// or by /readyz, whichever sees the deadline first.
		if a[i].Name != b[i].Name || a[i].Status != b[i].Status || !strings.Contains(a[i].Error, b[i].Error) || (a[i].Error == "") != (b[i].Error == "") {
			return false
		}
	}
	return true
}

func TestReadyzDoesNotWaitForACheckIgnoringItsContext(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // let the check's goroutine end before goleak looks
	s := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), discardLogger(),
		telemetry.WithReadinessTimeout(50*time.Millisecond))
	s.AddReadinessCheck("stuck", func(context.Context) error { <-release; return nil })
	start := time.Now()
	code, rep := readyz(t, s)
	if code != 503 || len(rep.Checks) != 1 || !strings.HasPrefix(rep.Checks[0].Error, "no answer within 50ms") {
		t.Errorf("readyz = %d %+v, want 503 with a timeout", code, rep)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("readyz took %v", d)
	}
}

func TestReadyzLogsOnlyTransitions(t *testing.T) {
	var logs bytes.Buffer
	s := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), slog.New(slog.NewJSONHandler(&logs, nil)))
	failing := true
	s.AddReadinessCheck("kafka", func(context.Context) error {
		if failing {
			return errors.New("no brokers")
		}
		return nil
	})
	readyz(t, s)
	readyz(t, s)
	failing = false
	readyz(t, s)
	readyz(t, s)
	out := logs.String()
	if n := strings.Count(out, "readiness check failing"); n != 1 {
		t.Errorf("logged failing %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "readiness check recovered"); n != 1 {
		t.Errorf("logged recovery %d times, want once:\n%s", n, out)
	}
}

func TestSetNotReadyOverridesChecksUntilSetReady(t *testing.T) {
	s := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), discardLogger())
	probed := 0
	s.AddReadinessCheck("clickhouse", func(context.Context) error { probed++; return nil })

	s.SetNotReady("warming detector state")
	code, rep := readyz(t, s)
	if code != 503 || rep.Reason != "warming detector state" || probed != 0 {
		t.Errorf("not ready: %d %+v, %d probes; want 503 with the reason and no probes", code, rep, probed)
	}
	s.SetReady()
	if code, rep := readyz(t, s); code != 200 || probed != 1 {
		t.Errorf("ready again: %d %+v, want 200 after one probe", code, rep)
	}
}

func TestRunShutsDownOnCancelAndMarksNotReady(t *testing.T) {
	s := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), discardLogger())
	url, stop := runServer(t, s)
	client := newClient(t)
	if code, _ := get(t, client, url+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d before shutdown", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if _, err := client.Get(url + "/healthz"); err == nil {
		t.Error("server still answers after Run returned")
	}
	if code, rep := readyz(t, s); code != 503 || rep.Reason != "shutting down" {
		t.Errorf("after shutdown /readyz = %d %+v, want 503 shutting down", code, rep)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded, want an error")
	}
}

func TestRunBoundsShutdownOfHangingRequests(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), discardLogger(),
		telemetry.WithReadinessTimeout(time.Minute), telemetry.WithShutdownTimeout(100*time.Millisecond))
	entered := make(chan struct{})
	s.AddReadinessCheck("hang", func(ctx context.Context) error {
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	client := newClient(t)
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		if resp, err := client.Get("http://" + s.Addr() + "/readyz"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v, want a shutdown deadline error", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("shutdown took %v with a 100ms timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	<-reqDone
}

func TestListenFailsOnAddressInUse(t *testing.T) {
	a := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), discardLogger())
	runServer(t, a)
	b := telemetry.NewServer(a.Addr(), prometheus.NewRegistry(), discardLogger())
	if err := b.Listen(); err == nil || !strings.Contains(err.Error(), a.Addr()) {
		t.Errorf("Listen on a used address = %v, want an error naming it", err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Error("Run on a used address succeeded")
	}
}

func TestAddReadinessCheckPanicsOnDuplicateName(t *testing.T) {
	s := telemetry.NewServer("127.0.0.1:0", prometheus.NewRegistry(), discardLogger())
	s.AddReadinessCheck("kafka", func(context.Context) error { return nil })
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "kafka") {
			t.Errorf("recover() = %v, want a panic naming kafka", r)
		}
	}()
	s.AddReadinessCheck("kafka", func(context.Context) error { return nil })
}
