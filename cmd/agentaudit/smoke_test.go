package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/chdb"
)

// The README's first command, `agentaudit run` (what `make run` starts), on
// a fresh data directory: within 60 s the query API shows simulated events
// and at least one detection, and the local webhook receiver has logged a
// revocation whose signature it verified. Ctrl-C stops it cleanly, and
// starting again on the same directory resumes with the same data.
func TestSmokeAllInOneFromScratch(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	first := startAllInOne(t, dataDir)
	deadline := first.started.Add(60 * time.Second)

	var events, detections int
	for time.Now().Before(deadline) && (events == 0 || detections == 0 || !first.logged("revocation received")) {
		events = first.count(t, "/v1/events")
		detections = first.count(t, "/v1/detections")
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("after %s: %d events, %d detections on the first page; revocation logged: %v",
		time.Since(first.started).Round(time.Second), events, detections, first.logged("revocation received"))
	if events == 0 || detections == 0 || !first.logged("revocation received") {
		t.Fatalf("within 60 s: events=%d detections=%d verified revocation logged=%v\n%s",
			events, detections, first.logged("revocation received"), first.tail())
	}
	first.stop(t)
	stopped := time.Now().UTC()

	// Only events from before the restart count: the demo keeps producing.
	second := startAllInOne(t, dataDir)
	got := 0
	for end := time.Now().Add(30 * time.Second); got == 0 && time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		got = second.countUntil(t, "/v1/events", stopped)
	}
	if got == 0 {
		t.Fatalf("after a restart on the same data directory the API shows none of the earlier events\n%s", second.tail())
	}
	if second.apiKey != first.apiKey {
		t.Errorf("demo API key changed across restarts")
	}
	second.stop(t)
}

type allInOne struct {
	cmd     *exec.Cmd
	started time.Time
	apiBase string
	apiKey  string
	done    chan error
	mu      sync.Mutex
	out     strings.Builder
}

var (
	reAPI = regexp.MustCompile(`query API\s+(http://\S+)`)
	reKey = regexp.MustCompile(`API key\s+(\S+)`)
)

func startAllInOne(t *testing.T, dataDir string) *allInOne {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := func() string {
		p, err := chdb.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(p)
	}
	cmd := exec.Command(exe, "-data-dir="+dataDir,
		"-kafka.port=0", "-clickhouse.tcp-port=0", "-clickhouse.http-port=0",
		"-telemetry.listen-address=127.0.0.1:0", "-otlp-http.listen-address=127.0.0.1:0",
		"-sink.listen-address=127.0.0.1:0", "-query.listen-address=127.0.0.1:"+port())
	cmd.Env = append(os.Environ(), smokeChildEnv+"=1")
	a := &allInOne{cmd: cmd, started: time.Now(), done: make(chan error, 1)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{a}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.out.WriteString(line + "\n")
			if m := reAPI.FindStringSubmatch(line); m != nil {
				a.apiBase = m[1]
			}
			if m := reKey.FindStringSubmatch(line); m != nil {
				a.apiKey = m[1]
			}
			if a.apiBase != "" && a.apiKey != "" && strings.Contains(line, "demo ") {
				select {
				case <-ready:
				default:
					close(ready)
				}
			}
			a.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case err := <-a.done:
		t.Fatalf("agentaudit run exited during start: %v\n%s", err, a.tail())
	case <-time.After(3 * time.Minute):
		t.Fatalf("agentaudit run printed no start summary within 3 minutes\n%s", a.tail())
	}
	return a
}

type lockedWriter struct{ a *allInOne }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	return w.a.out.Write(p)
}

func (a *allInOne) logged(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Contains(a.out.String(), s)
}

func (a *allInOne) tail() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.out.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// count returns how many items the first page of path (over the last hour)
// holds, 0 on any error (the services may still be starting).
func (a *allInOne) count(t *testing.T, path string) int {
	t.Helper()
	return a.countUntil(t, path, time.Now().UTC().Add(time.Minute))
}

// countUntil is count over the hour before to.
func (a *allInOne) countUntil(t *testing.T, path string, to time.Time) int {
	t.Helper()
	q := url.Values{"from": {to.Add(-time.Hour).Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
	req, _ := http.NewRequest(http.MethodGet, a.apiBase+path+"?"+q.Encode(), nil)
	req.Header.Set("X-API-Key", a.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0
	}
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return len(page.Items)
}

// stop sends SIGINT (Ctrl-C) and expects a clean exit.
func (a *allInOne) stop(t *testing.T) {
	t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("agentaudit run after Ctrl-C: %v\n%s", err, a.tail())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("agentaudit run did not stop within 90 s of Ctrl-C\n%s", a.tail())
	}
}
