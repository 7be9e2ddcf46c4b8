package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// The lag gauge follows committed offsets: it grows while ClickHouse refuses
// a partition's rows (nothing can be committed) and falls back to zero once
// they are stored.
func TestLagGrowsWhileStalledAndReturnsToZero(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	cfg := e.cfg
	cfg.LagInterval = 100 * time.Millisecond
	reg := promRegistry()
	log := slog.New(slog.NewJSONHandler(testLogWriter(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := New(cfg, e.conn, e.target(), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	now := time.Now().UTC()
	events := func(from, n int) []kafka.Message {
		var ms []kafka.Message
		for i := from; i < from+n; i++ {
			ms = append(ms, kafka.Message{Key: []byte(fmt.Sprint(i)), Value: testEvent(uint64(i), "acme", now)})
		}
		return ms
	}
	lag := func() float64 { return metricSum(t, reg, "agentaudit_ingest_consumer_lag_messages", "topic", "events") }
	waitLag := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for lag() != want {
			if time.Now().After(deadline) {
				t.Fatalf("events lag = %v, want %v", lag(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	produce(t, e.broker.Addr(), "events", events(0, 40)...)
	waitCounts(t, e.conn, "audit_events", 40, 30*time.Second)
	waitLag(0)

	// ClickHouse refuses the rows: the table is gone for now.
	if err := e.conn.Exec(ctx, "RENAME TABLE audit_events TO audit_events_away"); err != nil {
		t.Fatal(err)
	}
	produce(t, e.broker.Addr(), "events", events(40, 25)...)
	waitLag(25)

	if err := e.conn.Exec(ctx, "RENAME TABLE audit_events_away TO audit_events"); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, e.conn, "audit_events", 65, 60*time.Second)
	waitLag(0)
}
