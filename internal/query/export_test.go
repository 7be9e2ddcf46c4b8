package query

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestExportMillionRowsInConstantMemory exports 1,000,000 events as NDJSON
// over real HTTP and samples this process's resident set (the query server
// runs in the test process; ClickHouse is a child process) from
// /proc/self/statm every 10 ms, plus the Go runtime's total mapped memory
// (runtime/metrics /memory/classes/total:bytes). The RSS must stay under
// 150 MB for the whole export.
func TestExportMillionRowsInConstantMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatal("needs /proc/self/statm (linux)")
	}
	e := newEnv(t, nil)
	const n = 1_000_000
	// Generated server-side: 1M events over 20 days for tenant-a.
	exec(t, e.conn, `INSERT INTO `+e.db+`.audit_events (event_id, ts, tenant_id, agent_id, parent_identity, token_id, token_type,
		delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id, policy_decision, trace_id, span_id, attributes)
		SELECT generateUUIDv4(number), fromUnixTimestamp64Nano(toInt64(?) + toInt64(number) * 1728000000), 'tenant-a',
			concat('agent-', toString(number % 1000)), 'alice@a.example', concat('tok-', toString(number % 5000)), 'oauth',
			['crm:read', 'mail:send'], ['crm:read'], 'crm.lookup', hex(SHA256(toString(number))),
			concat('crm://a/contacts/', toString(number)), 'tenant-a', if(number % 10 = 9, 'deny', 'allow'),
			lower(hex(cityHash64(intDiv(number, 8)))), lower(hex(number)), map('k', 'v')
		FROM numbers(?)`, base.UnixNano(), n)
	runtime.GC()
	baseline := rss(t)
	var peak, peakRuntime atomic.Int64
	peak.Store(baseline)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s := []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}}
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if r := rss(t); r > peak.Load() {
					peak.Store(r)
				}
				rtmetrics.Read(s)
				if v := int64(s[0].Value.Uint64()); v > peakRuntime.Load() {
					peakRuntime.Store(v)
				}
			}
		}
	}()
	start := time.Now()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", e.http.URL+"/v1/export/events?from="+
		base.Add(-time.Hour).Format(time.RFC3339)+"&to="+base.Add(21*24*time.Hour).Format(time.RFC3339), nil)
	req.Header.Set("X-API-Key", keyOf("auditor-a"))
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
	}
	close(stop)
	<-sampled
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("exported %d rows in %v (%.0f rows/s); RSS baseline %.1f MB, peak %.1f MB; Go runtime mapped peak %.1f MB",
		lines, took.Round(time.Millisecond), float64(lines)/took.Seconds(), mb(baseline), mb(peak.Load()), mb(peakRuntime.Load()))
	if lines != n {
		t.Errorf("exported %d rows, want %d", lines, n)
	}
	if peak.Load() >= 150<<20 {
		t.Errorf("RSS peaked at %.1f MB during the export, limit 150 MB", mb(peak.Load()))
	}
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// rss reads the resident set size of this process.
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Error(err)
		return 0
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
