package chstore

import (
	"context"
	"testing"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
)

// A stream of blocks stores every row of every block exactly once, the
// last block included: ch-go sends input again as a "tail" when OnInput
// reports io.EOF with rows still in it. The table is a plain MergeTree with
// optimize_on_insert off (as Stream sets it), so nothing folds a duplicate.
func TestStreamStoresEachBlockOnce(t *testing.T) {
	ctx := context.Background()
	conn, db := chtest.Database(t)
	if err := conn.Exec(ctx, "CREATE TABLE "+db+".s (n UInt64) ENGINE = MergeTree ORDER BY n"); err != nil {
		t.Fatal(err)
	}
	in := NewInserter(Config{Addr: []string{chtest.Addr()}, Database: db, Username: "default", DialTimeout: 5e9, MaxOpenConns: 1, Compression: "none"})
	defer in.Close()
	for _, blocks := range []int{1, 3} {
		if err := conn.Exec(ctx, "TRUNCATE TABLE "+db+".s"); err != nil {
			t.Fatal(err)
		}
		var col proto.ColUInt64
		next := uint64(0)
		fill := func() {
			for range 100 {
				col.Append(next)
				next++
			}
		}
		fill()
		sent := 1
		err := in.Stream(ctx, "s", proto.Input{{Name: "n", Data: &col}}, "", func(context.Context) (bool, error) {
			if sent == blocks {
				return false, nil // the block sent last is still in col, as ingest leaves it
			}
			col.Reset()
			fill()
			sent++
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var rows, distinct uint64
		if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(n) FROM "+db+".s").Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if want := uint64(100 * blocks); rows != want || distinct != want {
			t.Errorf("%d blocks streamed: %d rows, %d distinct, want %d of each", blocks, rows, distinct, want)
		}
	}
}
