// Command querybench measures the query API (make bench-query): it loads
// 10M audit events and 10M GenAI spans (100 tenants, 10,000 agents, 30 days)
// into the embedded ClickHouse with INSERT … SELECT FROM numbers() (generated
// server-side; kept in -dir and reused while the parameters match), starts
// the query API in this process and drives it over HTTP with a keep-alive
// client, -concurrency requests in flight. Per run and query kind it prints
// p50/p99; the last lines are the medians of the runs.
//
// The data is shaped so every query kind finds rows: event group g (10
// consecutive numbers) is one trace of one agent of one tenant, and span
// group g carries the same trace id, agent and tenant, so a trace holds 10
// spans and 10 audit events.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/procstat"
	"github.com/agentaudit/agentaudit/internal/query"
	"github.com/agentaudit/agentaudit/internal/query/auth"
	"github.com/agentaudit/agentaudit/schema"
)

type params struct {
	events, spans   int64
	tenants, agents int
	days            int
	runs, requests  int
	concurrency     int
	serverBin, dir  string
	chunk           int64
	base            time.Time
	keep            bool
	maxThreads      int
	cpuProfile      string
	kinds           string
}

func main() {
	var p params
	flag.Int64Var(&p.events, "events", 10_000_000, "audit events to load")
	flag.Int64Var(&p.spans, "spans", 10_000_000, "spans to load")
	flag.IntVar(&p.tenants, "tenants", 100, "tenants")
	flag.IntVar(&p.agents, "agents", 10_000, "agents (each bound to one tenant)")
	flag.IntVar(&p.days, "days", 30, "days the data spans")
	flag.IntVar(&p.runs, "runs", 3, "runs; medians are reported")
	flag.IntVar(&p.requests, "requests", 400, "requests per query kind per run")
	flag.IntVar(&p.concurrency, "concurrency", 8, "requests in flight")
	flag.StringVar(&p.serverBin, "agentaudit", "bin/agentaudit", "agentaudit binary (serves ClickHouse)")
	flag.StringVar(&p.dir, "dir", ".cache/bench-query", "working directory (the loaded data is kept here)")
	flag.Int64Var(&p.chunk, "chunk", 2_000_000, "rows per INSERT … SELECT")
	flag.BoolVar(&p.keep, "keep", true, "reuse loaded data when the parameters match")
	flag.IntVar(&p.maxThreads, "max-query-threads", 0, "the API's -query.max-query-threads")
	flag.StringVar(&p.kinds, "kinds", "timeline,search,trace,report", "query kinds to measure (comma-separated)")
	flag.StringVar(&p.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (API server and client) over the measured runs")
	flag.Parse()
	p.base = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "querybench:", err)
		os.Exit(1)
	}
}

const db = "agentaudit_bench"

func run(p params) error {
	ctx := context.Background()
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	ch, err := chdb.StartProcess(ctx, chdb.Options{DataDir: filepath.Join(p.dir, "clickhouse")}, []string{p.serverBin, "clickhouse"}, nil)
	if err != nil {
		return err
	}
	defer ch.Stop(ctx)
	admin, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, ReadTimeout: time.Hour})
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := load(ctx, admin, p); err != nil {
		return err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{ch.Addr()}, Auth: clickhouse.Auth{Database: db},
		MaxOpenConns: 2 * p.concurrency, MaxIdleConns: 2 * p.concurrency, ReadTimeout: time.Minute,
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
	})
	if err != nil {
		return err
	}
	defer conn.Close()

	// One auditor key per tenant, as a real deployment would have.
	var keys strings.Builder
	for t := range p.tenants {
		fmt.Fprintf(&keys, "- {name: auditor-%d, key_sha256: %s, role: auditor, tenants: [tenant-%d]}\n", t, auth.HashKey(apiKey(t)), t)
	}
	var cfg query.Config
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	cfg.RegisterFlagsWithPrefix("", fs)
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.APIKeys = config.Secret(keys.String())
	cfg.CursorKey = "bench"
	cfg.MaxQueryThreads = p.maxThreads
	cfg.RateLimit.RequestsPerSecond, cfg.RateLimit.Burst = 1e6, 1e6
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := query.New(ctx, cfg, conn, db, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() { stop(); <-done }()
	base := "http://" + srv.Addr()
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: p.concurrency, MaxIdleConnsPerHost: p.concurrency, IdleConnTimeout: time.Minute}}

	kinds := strings.Split(p.kinds, ",")
	for _, k := range kinds {
		if !slices.Contains([]string{"timeline", "search", "trace", "report"}, k) {
			return fmt.Errorf("unknown query kind %q", k)
		}
	}
	results := map[string][][2]float64{} // kind → per run {p50, p99}
	rng := rand.New(rand.NewPCG(1, 2))
	// Warm-up: caches, connections, the marks of every part.
	if _, err := measure(ctx, client, base, p, rng, "search", 32); err != nil {
		return err
	}
	if p.cpuProfile != "" {
		f, err := os.Create(p.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for r := 1; r <= p.runs; r++ {
		for _, k := range kinds {
			// CPU time per request of ClickHouse (the child) and of this
			// process (API server + client): with more requests in flight
			// than cores, latency follows CPU per request.
			chCPU0, goCPU0 := procstat.CPUTime(ch.PID()), procstat.CPUTime(os.Getpid())
			lat, err := measure(ctx, client, base, p, rng, k, p.requests)
			if err != nil {
				return err
			}
			chCPU, goCPU := procstat.CPUTime(ch.PID())-chCPU0, procstat.CPUTime(os.Getpid())-goCPU0
			p50, p99 := pct(lat, 50), pct(lat, 99)
			results[k] = append(results[k], [2]float64{p50, p99})
			fmt.Printf("run %d: %-8s requests=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f ch_cpu_ms_per_req=%.1f go_cpu_ms_per_req=%.1f\n",
				r, k, len(lat), p50, p99, pct(lat, 100), perReq(chCPU, len(lat)), perReq(goCPU, len(lat)))
		}
	}
	med := func(k string, i int) float64 {
		var xs []float64
		for _, r := range results[k] {
			xs = append(xs, r[i])
		}
		return pct(xs, 50)
	}
	if err := floor(ctx, conn, p, rng); err != nil {
		return err
	}
	fmt.Printf("query_timeline_p50_ms=%.1f\n", med("timeline", 0))
	fmt.Printf("query_timeline_p99_ms=%.1f\n", med("timeline", 1))
	fmt.Printf("query_search_p50_ms=%.1f\n", med("search", 0))
	fmt.Printf("query_search_p99_ms=%.1f\n", med("search", 1))
	fmt.Printf("query_trace_p50_ms=%.1f\n", med("trace", 0))
	fmt.Printf("query_report_p50_ms=%.1f\n", med("report", 0))
	return nil
}

// floor measures what any route pays at least: one statement that touches
// a table, the smallest such (count of one agent's rows in one day, by
// primary key), sent straight to ClickHouse (no API) with the same number
// in flight. A route's p50 cannot be below this on the same machine.
func floor(ctx context.Context, conn driver.Conn, p params, rng *rand.Rand) error {
	for _, t := range []struct{ table, ts string }{{"audit_events", "ts"}, {"spans", "start_time"}} {
		q := "SELECT count() FROM " + t.table + " WHERE tenant_id = ? AND agent_id = ? AND " + t.ts + " >= ? AND " + t.ts + " < ?"
		var (
			mu  sync.Mutex
			lat []float64
			wg  sync.WaitGroup
		)
		errs := make(chan error, p.concurrency)
		args := make([][]any, p.requests)
		for i := range args {
			agent := rng.IntN(p.agents)
			day := p.base.Add(time.Duration(rng.IntN(p.days-1)) * 24 * time.Hour)
			args[i] = []any{fmt.Sprintf("tenant-%d", agent%p.tenants), fmt.Sprintf("agent-%d", agent), day, day.Add(24 * time.Hour)}
		}
		next := make(chan []any, len(args))
		for _, a := range args {
			next <- a
		}
		close(next)
		for range p.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for a := range next {
					t0 := time.Now()
					var n uint64
					if err := conn.QueryRow(ctx, q, a...).Scan(&n); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return fmt.Errorf("floor on %s: %w", t.table, err)
		}
		fmt.Printf("floor: one indexed count on %s, %d in flight, no API: p50_ms=%.1f p99_ms=%.1f\n", t.table, p.concurrency, pct(lat, 50), pct(lat, 99))
	}
	return nil
}

func perReq(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / 1000 / float64(n)
}

func apiKey(tenant int) string { return fmt.Sprintf("bench-key-%d-0123456789", tenant) }

// request builds one random request of kind k and the tenant it reads.
func request(p params, rng *rand.Rand, k string) (string, int) {
	groups := p.events / 10
	g := rng.Int64N(groups)
	agent := int(g % int64(p.agents))
	tenant := agent % p.tenants
	day := p.base.Add(time.Duration(rng.IntN(p.days-7)) * 24 * time.Hour)
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	switch k {
	case "timeline": // one agent, one day, first page of 100
		return fmt.Sprintf("/v1/agents/agent-%d/timeline?from=%s&to=%s&limit=100", agent, rfc(day), rfc(day.Add(24*time.Hour))), tenant
	case "search": // a tenant's week, denials, first page of 100
		return fmt.Sprintf("/v1/events?from=%s&to=%s&decision=deny&limit=100", rfc(day), rfc(day.Add(7*24*time.Hour))), tenant
	case "trace":
		return fmt.Sprintf("/v1/traces/%s", traceID(g)), tenant
	case "report": // a tenant's week by day and tool
		return fmt.Sprintf("/v1/reports?from=%s&to=%s&bucket=day&group_by=tool", rfc(day), rfc(day.Add(7*24*time.Hour))), tenant
	}
	panic(k)
}

// traceID must match the SQL of load: lower(hex(cityHash64(g))) padded.
func traceID(g int64) string { return fmt.Sprintf("trace-%d", g) }

func measure(ctx context.Context, c *http.Client, base string, p params, rng *rand.Rand, kind string, n int) ([]float64, error) {
	type job struct {
		path   string
		tenant int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var lat []float64
	var firstErr error
	var wg sync.WaitGroup
	for range p.concurrency {
		wg.Go(func() {
			for j := range jobs {
				req, _ := http.NewRequestWithContext(ctx, "GET", base+j.path, nil)
				req.Header.Set("X-API-Key", apiKey(j.tenant))
				t0 := time.Now()
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("%s: status %d", j.path, resp.StatusCode)
					}
				}
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, float64(d.Microseconds())/1000)
				mu.Unlock()
			}
		})
	}
	for range n {
		path, tenant := request(p, rng, kind)
		jobs <- job{path, tenant}
	}
	close(jobs)
	wg.Wait()
	return lat, firstErr
}

func pct(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s)-1) * q / 100)
	return s[i]
}

// load creates the database and fills it unless the same parameters were
// loaded before (recorded in bench_meta).
func load(ctx context.Context, conn driver.Conn, p params) error {
	sig := fmt.Sprintf("v1 events=%d spans=%d tenants=%d agents=%d days=%d base=%s", p.events, p.spans, p.tenants, p.agents, p.days, p.base.Format(time.RFC3339))
	if p.keep {
		var got string
		if err := conn.QueryRow(ctx, "SELECT sig FROM "+db+".bench_meta LIMIT 1").Scan(&got); err == nil && got == sig {
			fmt.Printf("data: reusing %s (%s)\n", db, sig)
			// Migrations added since the data was loaded run on it, as
			// they would on a deployment's existing data.
			return migrateDB(ctx, conn)
		}
	}
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC"); err != nil {
		return err
	}
	if err := migrateDB(ctx, conn); err != nil {
		return err
	}
	span := int64(p.days) * 24 * int64(time.Hour)
	// Group g = number / 10: one trace of agent g % agents, tenant
	// agent % tenants, starting at a random instant of the range.
	common := fmt.Sprintf(`intDiv(number, 10) AS g, g %% %d AS agent, agent %% %d AS tenant,
		toInt64(%d) + toInt64(cityHash64(g) %% %d) + toInt64(number %% 10) * 1000000000 AS tsn`,
		p.agents, p.tenants, p.base.UnixNano(), span)
	t0 := time.Now()
	for off := int64(0); off < p.events; off += p.chunk {
		n := min(p.chunk, p.events-off)
		if err := conn.Exec(ctx, `INSERT INTO `+db+`.audit_events (event_id, ts, tenant_id, agent_id, parent_identity, token_id, token_type,
			delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id, policy_decision, trace_id, span_id, attributes, schema_version)
			SELECT generateUUIDv4(number), fromUnixTimestamp64Nano(tsn, 'UTC'), concat('tenant-', toString(tenant)), concat('agent-', toString(agent)),
				concat('user-', toString(agent % 37), '@tenant-', toString(tenant), '.example'), concat('tok-', toString(agent), '-', toString(intDiv(g, 5000))),
				['session', 'oauth', 'm2m', 'api_key'][1 + agent % 4], ['crm:read', 'mail:send'], if(number % 50 = 7, ['admin:write'], ['crm:read']),
				['crm.lookup', 'mail.send', 'db.query', 'web.fetch', 'files.read'][1 + (number % 5)], lower(hex(SHA256(toString(number)))),
				concat('res://tenant-', toString(tenant), '/', toString(number % 1000)), concat('tenant-', toString(tenant)),
				if(number % 50 = 7, 'deny', 'allow'), concat('trace-', toString(g)), concat('span-', toString(number)), map('env', 'bench'), '1'
			FROM (SELECT number, `+common+` FROM numbers(?, ?))`, off, n); err != nil {
			return fmt.Errorf("load audit events: %w", err)
		}
		fmt.Printf("loaded %d/%d audit events (%s)\n", off+n, p.events, time.Since(t0).Round(time.Second))
	}
	for off := int64(0); off < p.spans; off += p.chunk {
		n := min(p.chunk, p.spans-off)
		if err := conn.Exec(ctx, `INSERT INTO `+db+`.spans (tenant_id, start_time, duration_ns, trace_id, span_id, parent_span_id,
			name, kind, status_code, service_name, operation_name, provider_name, agent_id, agent_name, tool_name, request_model, input_tokens, output_tokens)
			SELECT concat('tenant-', toString(tenant)), fromUnixTimestamp64Nano(tsn, 'UTC'), 5000000,
				concat('trace-', toString(g)), concat('s-', toString(number)), if(number % 10 = 0, '', concat('s-', toString(g * 10))),
				if(number % 10 = 0, 'invoke_agent planner', 'execute_tool'), 'internal', 'ok', 'agent-runtime',
				if(number % 10 = 0, 'invoke_agent', if(number % 10 < 5, 'chat', 'execute_tool')), 'openai',
				concat('agent-', toString(agent)), 'planner', if(number % 10 >= 5, ['crm.lookup', 'mail.send', 'db.query', 'web.fetch', 'files.read'][1 + (number % 5)], ''),
				'gpt-4o', number % 1000, number % 300
			FROM (SELECT number, `+common+` FROM numbers(?, ?))`, off, n); err != nil {
			return fmt.Errorf("load spans: %w", err)
		}
		fmt.Printf("loaded %d/%d spans (%s)\n", off+n, p.spans, time.Since(t0).Round(time.Second))
	}
	for _, t := range []string{"audit_events", "spans"} {
		t1 := time.Now()
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+"."+t+" FINAL"); err != nil {
			return fmt.Errorf("optimize %s: %w", t, err)
		}
		fmt.Printf("optimized %s (%s)\n", t, time.Since(t1).Round(time.Second))
	}
	if err := conn.Exec(ctx, "CREATE TABLE "+db+".bench_meta (sig String) ENGINE = MergeTree ORDER BY tuple()"); err != nil {
		return err
	}
	if err := conn.Exec(ctx, "INSERT INTO "+db+".bench_meta VALUES (?)", sig); err != nil {
		return err
	}
	fmt.Printf("data: loaded in %s\n", time.Since(t0).Round(time.Second))
	return nil
}

// migrateDB applies the migrations not yet applied to the bench database.
func migrateDB(ctx context.Context, conn driver.Conn) error {
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		return err
	}
	t0 := time.Now()
	applied, err := migrate.Apply(ctx, conn, ms, migrate.Options{Database: db})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range applied {
		fmt.Printf("data: applied migration %04d_%s\n", m.Version, m.Name)
	}
	if len(applied) > 0 {
		fmt.Printf("data: migrations took %s\n", time.Since(t0).Round(time.Millisecond))
	}
	return nil
}
