package chdb_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func TestServerIsClickHouse26_7(t *testing.T) {
	if !strings.HasPrefix(chtest.Version(), "26.7.") {
		t.Fatalf("server version %q, want 26.7.x", chtest.Version())
	}
}

type row struct {
	ts      time.Time
	id      uuid.UUID
	tenant  string
	attrs   map[string]string
	scopes  []string
	counter uint64
}

// A 100,000-row batch through clickhouse-go with the column types the schema
// relies on comes back exactly: nanosecond timestamps, maps, low-cardinality
// strings, arrays and UUIDs.
func TestBatchRoundTripsTypesExactly(t *testing.T) {
	conn, _ := chtest.Database(t)
	ctx := context.Background()
	err := conn.Exec(ctx, `CREATE TABLE rt (
		ts DateTime64(9, 'UTC'),
		id UUID,
		tenant LowCardinality(String),
		attrs Map(LowCardinality(String), String),
		scopes Array(String),
		counter UInt64
	) ENGINE = MergeTree ORDER BY (tenant, ts, id)`)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	base := time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)
	want := make(map[uint64]row, n)
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO rt")
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(n) {
		r := row{
			ts:      base.Add(time.Duration(i)*time.Millisecond + time.Duration(i%1000)), // distinct nanoseconds
			id:      uuid.New(),
			tenant:  fmt.Sprintf("tenant-%d", i%37),
			attrs:   map[string]string{"k": fmt.Sprint(i), "ünï\x00cøde": "v\"'\\;--"},
			scopes:  []string{"read", fmt.Sprintf("write:%d", i%5)},
			counter: i,
		}
		if i%1000 == 0 {
			r.attrs = map[string]string{}
			r.scopes = []string{}
		}
		want[i] = r
		if err := batch.Append(r.ts, r.id, r.tenant, r.attrs, r.scopes, r.counter); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT ts, id, tenant, attrs, scopes, counter FROM rt")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var got row
		if err := rows.Scan(&got.ts, &got.id, &got.tenant, &got.attrs, &got.scopes, &got.counter); err != nil {
			t.Fatal(err)
		}
		w, ok := want[got.counter]
		if !ok {
			t.Fatalf("unexpected row %d", got.counter)
		}
		if !got.ts.Equal(w.ts) || got.id != w.id || got.tenant != w.tenant || !maps.Equal(got.attrs, w.attrs) || strings.Join(got.scopes, ",") != strings.Join(w.scopes, ",") {
			t.Fatalf("row %d differs:\n got %+v\nwant %+v", got.counter, got, w)
		}
		delete(want, got.counter)
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != n || len(want) != 0 {
		t.Fatalf("read %d rows, %d missing", seen, len(want))
	}
}

// A server killed with SIGKILL and started again on the same directory still
// has the data it acknowledged.
func TestChildKilledAndRestartedKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := chtest.TempDir(t)
	p, err := chtest.StartChild(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(p.ClientOptions("default"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE DATABASE d",
		"CREATE TABLE d.t (n UInt64) ENGINE = MergeTree ORDER BY n",
		"INSERT INTO d.t SELECT number FROM numbers(12345)",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(q, err)
		}
	}
	conn.Close()
	p.Kill()
	if p.Err() == nil {
		t.Fatal("a killed server must report why it stopped")
	}
	t.Logf("after SIGKILL: %v", firstLine(p.Err()))

	p2, err := chtest.StartChild(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop(ctx)
	conn2, err := clickhouse.Open(p2.ClientOptions("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	var count, sum uint64
	if err := conn2.QueryRow(ctx, "SELECT count(), sum(n) FROM d.t").Scan(&count, &sum); err != nil {
		t.Fatal(err)
	}
	if count != 12345 || sum != 12345*12344/2 {
		t.Fatalf("after restart: count=%d sum=%d", count, sum)
	}
	conn2.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p2.Stop(sctx); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
}

// The embedded server ships the hot/cold storage policy retention uses.
func TestServerHasTieredStoragePolicy(t *testing.T) {
	conn, _ := chtest.Database(t)
	var volumes []string
	err := conn.QueryRow(context.Background(),
		"SELECT groupArray(volume_name) FROM (SELECT volume_name FROM system.storage_policies WHERE policy_name = {p:String} ORDER BY volume_priority)",
		clickhouse.Named("p", chdb.StoragePolicy)).Scan(&volumes)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(volumes, ",") != "hot,cold" {
		t.Fatalf("volumes of %s: %v", chdb.StoragePolicy, volumes)
	}
}

func TestLibraryErrorsAreClearAndFast(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		setup func(t *testing.T) (cacheDir string)
		want  error
	}{
		{"explicit library missing", func(t *testing.T) string {
			t.Setenv("AGENTAUDIT_LIBCHDB", filepath.Join(t.TempDir(), "libchdb.so"))
			return t.TempDir()
		}, chdb.ErrLibraryAbsent},
		{"explicit library is a different build", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "libchdb.so")
			if err := os.WriteFile(p, []byte("not the engine"), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AGENTAUDIT_LIBCHDB", p)
			return t.TempDir()
		}, chdb.ErrLibraryHash},
		{"nothing cached and npm unavailable", func(t *testing.T) string {
			t.Setenv("AGENTAUDIT_LIBCHDB", "")
			t.Setenv("PATH", t.TempDir())
			return t.TempDir()
		}, chdb.ErrNPMMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cache := tc.setup(t)
			start := time.Now()
			_, err := chdb.StartProcess(ctx, chdb.Options{DataDir: t.TempDir(), CacheDir: cache}, []string{"/bin/false"}, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %s to fail", d)
			}
			t.Logf("error: %v", err)
		})
	}
}

// A child that dies during start is reported at once with its log, not
// waited out until the start timeout.
func TestChildDyingAtStartIsReported(t *testing.T) {
	start := time.Now()
	_, err := chdb.StartProcess(context.Background(), chdb.Options{DataDir: t.TempDir(), StartTimeout: time.Minute},
		[]string{"/bin/sh", "-c", "echo engine exploded >&2; exit 3", "sh"}, nil)
	if err == nil || !strings.Contains(err.Error(), "engine exploded") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
}

// The in-process engine serves real clients, lets Go recover a nil-pointer
// panic (ClickHouse's signal handlers are off), stops cleanly while a client
// connection is still open, and refuses a second engine in the process.
func TestInProcessEngine(t *testing.T) {
	ctx := context.Background()
	s, err := chdb.StartInProcess(ctx, chdb.Options{DataDir: chtest.TempDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(s.ClientOptions("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "26.7.") {
		t.Fatalf("version %s", v)
	}
	if r := recoverNilDeref(); r == nil {
		t.Fatal("nil dereference did not panic")
	}
	if _, err := chdb.StartInProcess(ctx, chdb.Options{DataDir: chtest.TempDir(t)}); !errors.Is(err, chdb.ErrEngineInUse) {
		t.Fatalf("second engine: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s with a client connected", time.Since(start))
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
}

func recoverNilDeref() (r any) {
	defer func() { r = recover() }()
	var p *int
	return *p
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// A client whose connection is reset mid-INSERT (what the kernel does when
// the client process is SIGKILLed) must not take the server down. Bare
// libchdb terminates on it; the relay in front of the engine prevents that.
func TestClientResetMidInsertLeavesServerUp(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE TABLE r (s String, m Map(String, String)) ENGINE = MergeTree ORDER BY s"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		raw, err := net.Dial("tcp", chtest.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c, err := clickhouse.Open(&clickhouse.Options{
			Addr: []string{chtest.Addr()}, Auth: clickhouse.Auth{Database: db},
			DialContext: func(context.Context, string) (net.Conn, error) { return raw, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.PrepareBatch(ctx, "INSERT INTO r")
		if err != nil {
			t.Fatal(err)
		}
		for j := range 50_000 {
			_ = b.Append(fmt.Sprint(i, j), map[string]string{"k": "v"})
		}
		go func() { _ = b.Send() }()
		time.Sleep(time.Duration(5+i*10) * time.Millisecond)
		_ = raw.(*net.TCPConn).SetLinger(0) // close with RST, as a killed process does
		_ = raw.Close()
		// Give a crash (what bare libchdb does here) time to happen before
		// checking the server is still up; there is no event to wait on.
		time.Sleep(200 * time.Millisecond)
		if err := conn.Ping(ctx); err != nil {
			t.Fatalf("server down after reset %d: %v", i+1, err)
		}
	}
}
