package ingest

import (
	"context"
	"slices"
	"testing"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
)

// Map columns must receive keys in sorted order so that rows with the same
// attributes are byte-identical on disk (see sortedMap).
func TestMapColumnsAreWrittenInKeyOrder(t *testing.T) {
	conn, _ := chtest.Database(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE TABLE m (i UInt32, a Map(LowCardinality(String), String)) ENGINE = MergeTree ORDER BY i"); err != nil {
		t.Fatal(err)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO m (i, a)")
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{}
	for _, k := range []string{"service.name", "a", "zz", "host.name", "k8s.pod.name", "tenant.id", "b", "cloud.region"} {
		attrs[k] = "v-" + k
	}
	var sm sortedMap
	for i := range 50 {
		if err := b.Column(0).AppendRow(uint32(i)); err != nil {
			t.Fatal(err)
		}
		if err := b.Column(1).AppendRow(sm.of(attrs)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT mapKeys(a), a FROM m ORDER BY i")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var keys []string
		var got map[string]string
		if err := rows.Scan(&keys, &got); err != nil {
			t.Fatal(err)
		}
		if !slices.IsSorted(keys) || len(keys) != len(attrs) {
			t.Fatalf("row %d keys %v: want the %d keys sorted", n, keys, len(attrs))
		}
		for k, v := range attrs {
			if got[k] != v {
				t.Fatalf("row %d: %s = %q, want %q", n, k, got[k], v)
			}
		}
		n++
	}
	if n != 50 {
		t.Fatalf("read %d rows, want 50", n)
	}
	// The empty and nil maps are the empty map.
	if sm.of(nil); sm.Next() {
		t.Fatal("nil map has keys")
	}
}
