package migrate_test

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/schema"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { chtest.Main(m) }

func shipped(t *testing.T) []migrate.Migration {
	t.Helper()
	ms, err := migrate.Load(schema.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 {
		t.Fatalf("only %d migrations shipped", len(ms))
	}
	return ms
}

func opts(db string) migrate.Options {
	return migrate.Options{Database: db, StoragePolicy: chdb.StoragePolicy}
}

func TestApplyCreatesTablesOnTieredStorageAndRecordsChecksums(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	ms := shipped(t)
	ran, err := migrate.Apply(ctx, conn, ms, opts(db))
	if err != nil {
		t.Fatal(err)
	}
	if len(ran) != len(ms) {
		t.Fatalf("ran %d of %d", len(ran), len(ms))
	}
	for _, table := range []string{"spans", "audit_events"} {
		var policy, sortKey string
		if err := conn.QueryRow(ctx, "SELECT storage_policy, sorting_key FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&policy, &sortKey); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if policy != chdb.StoragePolicy || !strings.HasPrefix(sortKey, "tenant_id,") {
			t.Fatalf("%s: policy %q, sorting key %q", table, policy, sortKey)
		}
	}
	st, err := migrate.Status(ctx, conn, opts(db))
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range st {
		if a.Version != ms[i].Version || a.Checksum != ms[i].Checksum {
			t.Fatalf("recorded %+v, shipped %+v", a, ms[i])
		}
	}
}

func TestApplyTwiceIsNoOp(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, shipped(t), opts(db)); err != nil {
		t.Fatal(err)
	}
	before := showTables(t, db)
	ran, err := migrate.Apply(ctx, conn, shipped(t), opts(db))
	if err != nil || len(ran) != 0 {
		t.Fatalf("second run: ran %d, err %v", len(ran), err)
	}
	var records uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM schema_migrations").Scan(&records); err != nil {
		t.Fatal(err)
	}
	if int(records) != len(shipped(t)) {
		t.Fatalf("%d records after two runs", records)
	}
	if after := showTables(t, db); after != before {
		t.Fatalf("schema changed on second run:\n%s\n---\n%s", before, after)
	}
}

func TestChangedAppliedMigrationIsRefused(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	fsys := fstest.MapFS{
		"m/0001_a.sql": {Data: []byte("CREATE TABLE IF NOT EXISTS {{.DB}}.a (x UInt8) ENGINE = MergeTree ORDER BY x")},
	}
	ms, _ := migrate.Load(fsys, "m")
	if _, err := migrate.Apply(ctx, conn, ms, opts(db)); err != nil {
		t.Fatal(err)
	}
	fsys["m/0001_a.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE IF NOT EXISTS {{.DB}}.a (x UInt16) ENGINE = MergeTree ORDER BY x")}
	fsys["m/0002_b.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE IF NOT EXISTS {{.DB}}.b (x UInt8) ENGINE = MergeTree ORDER BY x")}
	ms, _ = migrate.Load(fsys, "m")
	ran, err := migrate.Apply(ctx, conn, ms, opts(db))
	if !errors.Is(err, migrate.ErrChecksumMismatch) || len(ran) != 0 {
		t.Fatalf("ran %d, err %v", len(ran), err)
	}
	t.Logf("error: %v", err)
	if tables := showTables(t, db); strings.Contains(tables, "CREATE TABLE "+db+".b") {
		t.Fatal("a later migration ran despite the refusal")
	}
}

// A migration that fails half-way is not recorded; once fixed, the next run
// re-executes it from the start and the idempotent statements converge.
func TestFailedMigrationIsRepairedByNextRun(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	fsys := fstest.MapFS{
		"m/0001_two.sql": {Data: []byte(`CREATE TABLE IF NOT EXISTS {{.DB}}.first (x UInt8) ENGINE = MergeTree ORDER BY x;
CREATE TABLE IF NOT EXISTS {{.DB}}.second (x UInt8) ENGINE = NoSuchEngine ORDER BY x;`)},
	}
	ms, _ := migrate.Load(fsys, "m")
	if _, err := migrate.Apply(ctx, conn, ms, opts(db)); err == nil || !strings.Contains(err.Error(), "statement 2 of 2") {
		t.Fatalf("want failure at statement 2, got %v", err)
	}
	if st, _ := migrate.Status(ctx, conn, opts(db)); len(st) != 0 {
		t.Fatalf("failed migration recorded: %+v", st)
	}
	fsys["m/0001_two.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE IF NOT EXISTS {{.DB}}.first (x UInt8) ENGINE = MergeTree ORDER BY x;
CREATE TABLE IF NOT EXISTS {{.DB}}.second (x UInt8) ENGINE = MergeTree ORDER BY x;`)}
	ms, _ = migrate.Load(fsys, "m")
	if ran, err := migrate.Apply(ctx, conn, ms, opts(db)); err != nil || len(ran) != 1 {
		t.Fatalf("repair run: ran %d, err %v", len(ran), err)
	}
	tables := showTables(t, db)
	if !strings.Contains(tables, ".first") || !strings.Contains(tables, ".second") {
		t.Fatalf("tables after repair:\n%s", tables)
	}
}

// Every statement of every shipped migration can run again over its own
// result: that is what makes a half-applied migration repairable.
func TestShippedStatementsAreIdempotent(t *testing.T) {
	conn, db := chtest.Database(t)
	ctx := context.Background()
	for _, m := range shipped(t) {
		stmts, err := migrate.Render(m, opts(db))
		if err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			for i, s := range stmts {
				if err := conn.Exec(ctx, s); err != nil {
					t.Fatalf("%04d_%s statement %d, round %d: %v", m.Version, m.Name, i+1, round+1, err)
				}
			}
		}
	}
}

func TestLoadRejectsBadNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":          {"m/1_x.sql": {Data: []byte("SELECT 1")}},
		"duplicate version": {"m/0001_a.sql": {Data: []byte("SELECT 1")}, "m/0001_b.sql": {Data: []byte("SELECT 1")}},
	} {
		if _, err := migrate.Load(fsys, "m"); !errors.Is(err, migrate.ErrBadMigration) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSplitStatements(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"SELECT 1; SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT ';' -- a; comment\n; SELECT 2", []string{"SELECT ';' -- a; comment", "SELECT 2"}},
		{"/* x; y */ SELECT `a;b`", []string{"/* x; y */ SELECT `a;b`"}},
		{"SELECT 'it\\'s;'", []string{"SELECT 'it\\'s;'"}},
		{"-- only a comment\n;\n", nil},
	}
	for _, c := range cases {
		got := migrate.SplitStatements(c.in)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

// The cluster rendering (ON CLUSTER, Replicated engines) is pinned by golden
// files; run with -update after changing a migration.
func TestClusterRenderingGolden(t *testing.T) {
	for _, m := range shipped(t) {
		stmts, err := migrate.Render(m, migrate.Options{Database: "agentaudit", Cluster: "audit_cluster", StoragePolicy: "tiered"})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(stmts, ";\n\n") + ";\n"
		path := filepath.Join("testdata", "cluster", filepath.Base(m.Name)+".sql")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update)", err)
		}
		if got != string(want) {
			t.Fatalf("%s differs from golden; run go test -update and review the diff", path)
		}
		creates := strings.Contains(got, "CREATE TABLE")
		if !strings.Contains(got, "ON CLUSTER `audit_cluster`") || creates && !strings.Contains(got, "ReplicatedReplacingMergeTree(") {
			t.Fatalf("%s: not rendered for a cluster:\n%s", m.Name, got)
		}
	}
}

func showTables(t *testing.T, db string) string {
	t.Helper()
	conn := chtest.Open(t, db)
	rows, err := conn.Query(context.Background(), "SELECT create_table_query FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + "\n")
	}
	return b.String()
}
