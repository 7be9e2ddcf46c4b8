package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/kafkabroker"
	"github.com/agentaudit/agentaudit/internal/sim"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func TestRun(t *testing.T) {
	b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	truth := filepath.Join(t.TempDir(), "truth.json")
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	args := []string{
		"-brokers", b.Addr(), "-create-topics", "3", "-traces", "4000", "-seed", "42",
		"-attacks", "all", "-attack-interval", "20s", "-start", "2026-03-01T12:00:00Z",
		"-compression", "lz4", "-truth", truth,
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if err := run(ctx, args, &stdout, log); err != nil {
		t.Fatal(err)
	}
	var summary struct {
		Traces, Spans, Events int64
		Attacks               map[sim.AttackKind]int
		Produced              map[string]sim.TopicCounts
	}
	if err := json.Unmarshal(stdout.Bytes(), &summary); err != nil {
		t.Fatalf("summary %q: %v", stdout.String(), err)
	}
	if summary.Traces != 4000 || summary.Produced[sim.DefaultSpansTopic].Messages != 4000 ||
		summary.Produced[sim.DefaultEventsTopic].Messages != summary.Events || summary.Produced[sim.DefaultSpansTopic].Spans != summary.Spans {
		t.Errorf("summary %s", stdout.String())
	}
	var attacks []sim.Attack
	raw, err := os.ReadFile(truth)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &attacks); err != nil {
		t.Fatal(err)
	}
	if len(attacks) == 0 || attacks[0].ID != 1 || len(attacks[0].EventIDs) == 0 {
		t.Errorf("ground truth %s", raw)
	}
	t.Logf("summary %s, %d attacks in the ground truth", bytes.TrimSpace(stdout.Bytes()), len(attacks))

	if err := run(ctx, []string{"-attacks", "ddos"}, io.Discard, log); err == nil {
		t.Error("unknown attack accepted")
	}
}
