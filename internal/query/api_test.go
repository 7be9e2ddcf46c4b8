package query

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestRoutesReturnTheSeededData(t *testing.T) {
	e := newEnv(t, nil)
	a := seed(t, e.conn, e.db, "tenant-a", "a", 40, base)
	seed(t, e.conn, e.db, "tenant-b", "b", 40, base)
	rq := rangeQS()

	t.Run("search filters", func(t *testing.T) {
		for _, tc := range []struct {
			qs   string
			want int
		}{
			{"", 40},
			{"&decision=deny", 4},
			{"&agent=agent-a-1", 20},
			{"&token=tok-a-2&decision=allow", 16}, // odd events; the denied ones (9, 19, …) are all odd
			{"&trace_id=trace-a-0", 10},
			{"&tool=crm.lookup", 40},
			{"&q=CONTACTS/1", 11}, // 1, 10..19
			{"&q=nothing-like-this", 0},
			{"&rule=scope_escalation.out_of_delegation", 1},
			{"&tenant=tenant-a", 40},
		} {
			var page Page[Event]
			if code := e.getJSON("auditor-a", "/v1/events?limit=1000&"+rq+tc.qs, &page); code != 200 {
				t.Fatalf("%s: status %d", tc.qs, code)
			}
			if len(page.Items) != tc.want {
				t.Errorf("%s: %d events, want %d", tc.qs, len(page.Items), tc.want)
			}
			for i := 1; i < len(page.Items); i++ {
				if page.Items[i].TS.After(page.Items[i-1].TS) {
					t.Fatalf("%s: not newest first at %d", tc.qs, i)
				}
			}
		}
		var page Page[Event]
		e.getJSON("auditor-a", "/v1/events?limit=1000&rule=scope_escalation.out_of_delegation&"+rq, &page)
		if len(page.Items) == 1 && page.Items[0].EventID != a.events[4].String() {
			t.Errorf("rule filter returned %s, want the evidence %s", page.Items[0].EventID, a.events[4])
		}
	})

	t.Run("pages walk every row once", func(t *testing.T) {
		seen := map[string]bool{}
		path := "/v1/events?limit=7&" + rq
		pages := 0
		for {
			var page Page[Event]
			if code := e.getJSON("auditor-a", path, &page); code != 200 {
				t.Fatalf("status %d", code)
			}
			pages++
			for _, ev := range page.Items {
				if seen[ev.EventID] {
					t.Fatalf("event %s served twice", ev.EventID)
				}
				seen[ev.EventID] = true
			}
			if page.NextCursor == "" {
				break
			}
			path = "/v1/events?limit=7&" + rq + "&cursor=" + url.QueryEscape(page.NextCursor)
		}
		if len(seen) != 40 || pages != 6 {
			t.Errorf("%d events in %d pages, want 40 in 6", len(seen), pages)
		}
	})

	t.Run("cursor bound to its filters", func(t *testing.T) {
		var page Page[Event]
		e.getJSON("auditor-a", "/v1/events?limit=5&"+rq, &page)
		code, body, _ := e.get("auditor-a", "/v1/events?limit=5&decision=deny&"+rq+"&cursor="+url.QueryEscape(page.NextCursor))
		if code != 400 || !strings.Contains(string(body), ProblemInvalidCursor) {
			t.Errorf("cursor reused with other filters: %d %s", code, body)
		}
		tampered := page.NextCursor[:5] + "x" + page.NextCursor[6:]
		if code, _, _ := e.get("auditor-a", "/v1/events?limit=5&"+rq+"&cursor="+url.QueryEscape(tampered)); code != 400 {
			t.Errorf("tampered cursor: %d", code)
		}
	})

	t.Run("timeline", func(t *testing.T) {
		var tl Timeline
		if code := e.getJSON("auditor-a", "/v1/agents/agent-a-1/timeline?limit=1000&"+rq, &tl); code != 200 {
			t.Fatalf("status %d", code)
		}
		kinds := map[string]int{}
		for i, it := range tl.Items {
			kinds[it.Kind]++
			if i > 0 && it.TS.After(tl.Items[i-1].TS) {
				t.Fatalf("not newest first at %d", i)
			}
		}
		// agent-a-1 has the even events (20) and every span (4 traces × 3).
		if kinds["event"] != 20 || kinds["span"] != 12 {
			t.Errorf("timeline kinds %v, want 20 events and 12 spans", kinds)
		}
		if len(tl.Delegation) != 1 || tl.Delegation[0].ParentIdentity != "alice@a.example" || tl.Delegation[0].Events != 20 {
			t.Errorf("delegation chain %+v", tl.Delegation)
		}
		// A first page smaller than the agent's events gets its chain from a
		// statement over the range; one that holds them all computes it from
		// its rows. Both must say the same.
		var small Timeline
		if code := e.getJSON("auditor-a", "/v1/agents/agent-a-1/timeline?limit=5&"+rq, &small); code != 200 {
			t.Fatalf("status %d", code)
		}
		if !reflect.DeepEqual(small.Delegation, tl.Delegation) {
			t.Errorf("delegation chain of a 5-item page %+v, of the whole range %+v", small.Delegation, tl.Delegation)
		}
		// Paging the timeline in 5s gives the same sequence.
		var all []TimelineItem
		path := "/v1/agents/agent-a-1/timeline?limit=5&" + rq
		for {
			var p Timeline
			if code := e.getJSON("auditor-a", path, &p); code != 200 {
				t.Fatalf("status %d", code)
			}
			all = append(all, p.Items...)
			if p.NextCursor == "" {
				break
			}
			path = "/v1/agents/agent-a-1/timeline?limit=5&" + rq + "&cursor=" + url.QueryEscape(p.NextCursor)
		}
		if len(all) != len(tl.Items) {
			t.Fatalf("paged timeline has %d items, want %d", len(all), len(tl.Items))
		}
		for i := range all {
			if all[i].ID != tl.Items[i].ID {
				t.Fatalf("paged timeline differs at %d", i)
			}
		}
	})

	t.Run("trace", func(t *testing.T) {
		var tr Trace
		if code := e.getJSON("auditor-a", "/v1/traces/trace-a-1", &tr); code != 200 {
			t.Fatalf("status %d", code)
		}
		if tr.SpanCount != 3 || len(tr.Roots) != 1 || len(tr.Roots[0].Children) != 2 || len(tr.Events) != 10 {
			t.Errorf("trace: %d spans, %d roots, events %d", tr.SpanCount, len(tr.Roots), len(tr.Events))
		}
		if code, body, _ := e.get("auditor-a", "/v1/traces/no-such-trace"); code != 404 || !strings.Contains(string(body), ProblemNotFound) {
			t.Errorf("missing trace: %d %s", code, body)
		}
		// The trace index was fed by the inserts (materialized views of
		// migration 0010), for this tenant only.
		var hours, other uint64
		if err := e.conn.QueryRow(context.Background(), "SELECT countIf(tenant_id = 'tenant-a'), countIf(tenant_id != 'tenant-a') FROM "+e.db+".trace_index WHERE trace_id = 'trace-a-1'").Scan(&hours, &other); err != nil {
			t.Fatal(err)
		}
		if hours == 0 || other != 0 {
			t.Errorf("trace_index rows of trace-a-1: %d of tenant-a, %d of others", hours, other)
		}
		// Without its index rows the trace is still found (read over every
		// partition), identical; so it is with an explicit range.
		exec(t, e.conn, "ALTER TABLE "+e.db+".trace_index DELETE WHERE trace_id = 'trace-a-1' SETTINGS mutations_sync = 2")
		for _, path := range []string{"/v1/traces/trace-a-1", "/v1/traces/trace-a-1?" + rq} {
			var again Trace
			if code := e.getJSON("auditor-a", path, &again); code != 200 {
				t.Fatalf("%s: status %d", path, code)
			}
			if !reflect.DeepEqual(again, tr) {
				t.Errorf("%s differs from the indexed read", path)
			}
		}
	})

	t.Run("detections, deliveries, revocations", func(t *testing.T) {
		var page Page[Detection]
		e.getJSON("auditor-a", "/v1/detections?"+rq, &page)
		if len(page.Items) != 1 || page.Items[0].SuppressedCount != 3 {
			t.Fatalf("detections %+v, want the latest version only (suppressed_count 3)", page.Items)
		}
		var d Detection
		if code := e.getJSON("auditor-a", "/v1/detections/"+a.detection.String(), &d); code != 200 || d.SuppressedCount != 3 {
			t.Errorf("one detection: %d %+v", code, d)
		}
		var ds struct{ Items []Delivery }
		e.getJSON("auditor-a", "/v1/detections/"+a.detection.String()+"/deliveries", &ds)
		if len(ds.Items) != 2 || ds.Items[0].Outcome != "retry" || ds.Items[1].Outcome != "success" {
			t.Errorf("deliveries %+v", ds.Items)
		}
		var rs struct{ Items []Revocation }
		e.getJSON("auditor-a", "/v1/tokens/tok-a-1/revocations", &rs)
		if len(rs.Items) != 1 || rs.Items[0].DetectionID != a.detection.String() {
			t.Errorf("revocations %+v", rs.Items)
		}
		if code, _, _ := e.get("auditor-a", "/v1/detections/not-a-uuid"); code != 400 {
			t.Errorf("bad uuid: %d", code)
		}
	})

	t.Run("report", func(t *testing.T) {
		var r Report
		if code := e.getJSON("auditor-a", "/v1/reports?bucket=day&group_by=agent&"+rq, &r); code != 200 {
			t.Fatalf("status %d", code)
		}
		var events, denied, spans, in, dets uint64
		for _, row := range r.Rows {
			events += row.Events
			denied += row.Denied
			spans += row.Spans
			in += row.InputTokens
			dets += row.Detections
		}
		if events != 40 || denied != 4 || spans != 12 || in != 4*(10+20+30) || dets != 1 {
			t.Errorf("report totals events=%d denied=%d spans=%d input_tokens=%d detections=%d: %+v", events, denied, spans, in, dets, r.Rows)
		}
	})

	t.Run("export ndjson and csv", func(t *testing.T) {
		code, body, h := e.get("auditor-a", "/v1/export/events?"+rq)
		if code != 200 || h.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("ndjson: %d %s", code, h.Get("Content-Type"))
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		var lines []map[string]any
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, m)
		}
		if len(lines) != 40 {
			t.Fatalf("ndjson: %d lines", len(lines))
		}
		// Resume after line 10 with its cursor: the rest, exactly.
		code, body, _ = e.get("auditor-a", "/v1/export/events?"+rq+"&cursor="+url.QueryEscape(lines[9]["cursor"].(string)))
		if n := bytes.Count(body, []byte("\n")); code != 200 || n != 30 {
			t.Errorf("resumed export: %d, %d lines", code, n)
		}
		if !strings.Contains(string(body), lines[10]["event_id"].(string)) || strings.Contains(string(body), lines[9]["event_id"].(string)) {
			t.Error("resumed export does not start right after the cursor")
		}
		code, body, h = e.get("auditor-a", "/v1/export/events?format=csv&"+rq)
		recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if code != 200 || err != nil || len(recs) != 41 || recs[0][0] != "event_id" || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") {
			t.Errorf("csv: %d %v %d records", code, err, len(recs))
		}
	})

	t.Run("query audit records every call", func(t *testing.T) {
		before := time.Now()
		e.get("auditor-a", "/v1/events?decision=deny&agent=agent-a-2&"+rq) // a filter set no other call uses
		var page Page[AuditRecord]
		waitFor(t, "the audit row", func() bool {
			page = Page[AuditRecord]{}
			e.getJSON("admin-all", "/v1/admin/query-audit?route=/v1/events&principal=auditor-a&"+rq[:0]+
				"from="+before.Add(-time.Second).UTC().Format(time.RFC3339Nano)+"&to="+time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano), &page)
			return len(page.Items) > 0 && page.Items[0].Filters["agent"] == "agent-a-2"
		})
		r := page.Items[0]
		if r.Status != 200 || r.Rows != 4 || r.TenantID != "tenant-a" || r.Role != "auditor" || r.AuthMethod != "api_key" {
			t.Errorf("audit row %+v", r)
		}
	})
}

func TestAuthErrorsAndRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimit.RequestsPerSecond, c.RateLimit.Burst = 0.5, 3 })
	rq := rangeQS()
	code, body, h := e.get("", "/v1/events?"+rq)
	if code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "Bearer") || h.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(body), ProblemUnauthenticated) {
		t.Errorf("no credentials: %d %q %q %s", code, h.Get("WWW-Authenticate"), h.Get("Content-Type"), body)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/v1/events?"+rq, nil)
	req.Header.Set("Authorization", "Bearer not-a-key")
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("bad key: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if code, body, _ := e.get("auditor-c", "/v1/events?tenant=tenant-a&"+rq); code != 403 || !strings.Contains(string(body), ProblemTenantDenied) {
		t.Errorf("tenant denial: %d %s", code, body)
	}
	// Burst 3 (one token was spent above): then 429 with Retry-After.
	var last http.Header
	for range 3 {
		code, _, last = e.get("auditor-c", "/v1/events?"+rq)
	}
	if code != 429 || last.Get("Retry-After") == "" || last.Get("RateLimit-Limit") != "3" || last.Get("RateLimit-Remaining") != "0" {
		t.Errorf("rate limit: %d Retry-After=%q RateLimit-Limit=%q Remaining=%q", code, last.Get("Retry-After"), last.Get("RateLimit-Limit"), last.Get("RateLimit-Remaining"))
	}
	var m dto.Metric
	if err := e.srv.m.rateLimited.Write(&m); err != nil || m.GetCounter().GetValue() < 1 {
		got := m.GetCounter().GetValue()
		t.Errorf("rate limited counter %v", got)
	}
	// Another principal has its own bucket.
	if code, _, _ := e.get("auditor-a", "/v1/events?"+rq); code != 200 {
		t.Errorf("other principal: %d", code)
	}
	if code, body, _ := e.get("auditor-a", "/v1/nope"); code != 404 || !strings.Contains(string(body), ProblemRouteNotFound) {
		t.Errorf("no route: %d %s", code, body)
	}
}

// TestQueryAuditFlushedOnShutdown: with a flush interval far beyond the
// test, the rows of every call reach query_audit only because Run flushes
// the queue on shutdown — and all of them do.
func TestQueryAuditFlushedOnShutdown(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Audit.FlushInterval, c.Audit.BatchSize = time.Hour, 100_000 })
	const calls = 57
	for i := range calls {
		who := []string{"auditor-a", "", "admin-all"}[i%3] // unauthenticated calls are audited too
		e.get(who, "/v1/events?"+rangeQS())
	}
	var n uint64
	if err := e.conn.QueryRow(t.Context(), "SELECT count() FROM "+e.db+".query_audit").Scan(&n); err != nil || n != 0 {
		t.Fatalf("before shutdown: %d rows (%v), want 0 (nothing flushed yet)", n, err)
	}
	e.http.Close()
	e.stop()
	var anon uint64
	if err := e.conn.QueryRow(t.Context(), "SELECT count(), countIf(principal = '' AND status = 401) FROM "+e.db+".query_audit").Scan(&n, &anon); err != nil {
		t.Fatal(err)
	}
	if n != calls || anon != calls/3 {
		t.Errorf("after shutdown: %d rows (%d anonymous 401s), want %d (%d)", n, anon, calls, calls/3)
	}
}
