package chstore

import (
	"context"
	"errors"
	"testing"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
	"github.com/agentaudit/agentaudit/internal/config"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// auto means no compression to this machine only.
func TestWireCompressionAutoIsOffOnlyForLoopback(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:9000":         "none",
		"127.8.9.10:9000":        "none",
		"[::1]:9000":             "none",
		"localhost:9000":         "none",
		"10.0.0.5:9000":          "lz4",
		"clickhouse:9000":        "lz4",
		"ch.example.com:9440":    "lz4",
		"[2001:db8::1]:9000":     "lz4",
		"not a host port at all": "lz4",
	} {
		c := Config{Compression: "auto"}
		if got := c.wireCompression(addr); got != want {
			t.Errorf("auto to %s: %s, want %s", addr, got, want)
		}
	}
	for _, m := range []string{"lz4", "zstd", "none"} {
		c := Config{Compression: m}
		if got := c.wireCompression("127.0.0.1:9000"); got != m {
			t.Errorf("explicit %s to loopback: %s", m, got)
		}
	}
	c := Config{Addr: []string{"x:1"}, Database: "d", DialTimeout: 1, MaxOpenConns: 1, Compression: "gzip"}
	if err := c.Validate(); !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("compression gzip: %v, want invalid", err)
	}
}

// Every wire compression inserts through the Inserter and reads back
// through Open against the real server.
func TestEveryWireCompressionRoundTrips(t *testing.T) {
	ctx := context.Background()
	conn, db := chtest.Database(t)
	if err := conn.Exec(ctx, "CREATE TABLE "+db+".t (k UInt64, v String) ENGINE = MergeTree ORDER BY k"); err != nil {
		t.Fatal(err)
	}
	for i, m := range []string{"none", "lz4", "zstd"} {
		cfg := Config{Addr: []string{chtest.Addr()}, Database: db, Username: "default", DialTimeout: 5e9, MaxOpenConns: 2, Compression: m}
		in := NewInserter(cfg)
		var k proto.ColUInt64
		var v proto.ColStr
		for j := range 1000 {
			k.Append(uint64(i*1000 + j))
			v.Append(m)
		}
		err := in.Insert(ctx, "t", proto.Input{{Name: "k", Data: &k}, {Name: "v", Data: &v}}, "")
		in.Close()
		if err != nil {
			t.Fatalf("insert with %s: %v", m, err)
		}
		rc, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		err = rc.QueryRow(ctx, "SELECT count() FROM t WHERE v = ?", m).Scan(&n)
		rc.Close()
		if err != nil || n != 1000 {
			t.Fatalf("read back with %s: %d rows (%v), want 1000", m, n, err)
		}
	}
}
