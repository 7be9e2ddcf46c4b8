// Command agentsim streams simulated multi-tenant AI-agent traffic (OTLP
// traces and audit events, optionally with attacks) into Kafka. See
// internal/sim.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentaudit/agentaudit/internal/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(ctx, os.Args[1:], os.Stdout, log); err != nil {
		log.Error("agentsim failed", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	cfg := sim.DefaultConfig()
	fs := flag.NewFlagSet("agentsim", flag.ContinueOnError)
	brokers := fs.String("brokers", "localhost:9092", "Kafka bootstrap brokers, comma-separated")
	fs.StringVar(&cfg.SpansTopic, "spans-topic", cfg.SpansTopic, "topic for OTLP traces")
	fs.StringVar(&cfg.EventsTopic, "events-topic", cfg.EventsTopic, "topic for audit events")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "RNG seed: the same seed and flags give the same traffic")
	fs.IntVar(&cfg.Tenants, "tenants", cfg.Tenants, "number of tenants")
	fs.IntVar(&cfg.AgentsPerTenant, "agents", cfg.AgentsPerTenant, "agents per tenant")
	rate := fs.Float64("rate", 0, "traces per second, paced in real time (0 = as fast as possible)")
	fs.IntVar(&cfg.MaxTraces, "traces", 0, "stop after this many traces (0 = no limit)")
	duration := fs.Duration("duration", 0, "stop after this long (0 = no limit)")
	fs.StringVar(&cfg.SpanEncoding, "encoding", cfg.SpanEncoding, "span encoding: otlp_proto or otlp_json")
	attacks := fs.String("attacks", "none", "attack kinds, comma-separated, or all or none")
	fs.DurationVar(&cfg.Attacks.Interval, "attack-interval", cfg.Attacks.Interval, "simulated time between two attacks of a kind")
	partitions := fs.Int("create-topics", 0, "create both topics with this many partitions first (0 = don't)")
	compression := fs.String("compression", "none", "none, gzip, snappy, lz4 or zstd")
	start := fs.String("start", "", "simulated start time, RFC 3339 (default: now)")
	truthFile := fs.String("truth", "", "write the attacks' ground truth (JSON) to this file at the end")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.Attacks.Kinds, err = sim.ParseAttackKinds(*attacks); err != nil {
		return err
	}
	cfg.Start = time.Now().UTC().Truncate(time.Millisecond)
	if *start != "" {
		if cfg.Start, err = time.Parse(time.RFC3339Nano, *start); err != nil {
			return fmt.Errorf("-start: %w", err)
		}
	}
	if *rate > 0 {
		cfg.TraceRate = *rate
	}
	s, err := sim.New(cfg)
	if err != nil {
		return err
	}
	addrs := strings.Split(*brokers, ",")
	if *partitions > 0 {
		if err := sim.CreateTopics(ctx, addrs, *partitions, cfg.SpansTopic, cfg.EventsTopic); err != nil {
			return err
		}
	}
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: addrs, Compression: *compression})
	if err != nil {
		return err
	}
	defer p.Close()
	log.Info("agentsim started", "brokers", *brokers, "seed", cfg.Seed, "tenants", cfg.Tenants, "agents", cfg.AgentsPerTenant,
		"rate", *rate, "traces", cfg.MaxTraces, "duration", *duration, "attacks", cfg.Attacks.Kinds, "limits", s.Limits())
	began := time.Now()
	err = sim.Stream(ctx, s, p, sim.StreamOptions{RealTime: *rate > 0, Duration: *duration})
	st, counts := s.Stats(), p.Counts()
	summary := map[string]any{
		"seconds": time.Since(began).Seconds(), "traces": st.Traces, "spans": st.Spans, "events": st.Events,
		"span_bytes": st.SpanBytes, "event_bytes": st.EventBytes, "bytes_per_span": st.BytesPerSpan(),
		"attacks": st.Attacks, "produced": counts,
	}
	log.Info("agentsim finished", "summary", summary)
	if err := json.NewEncoder(stdout).Encode(summary); err != nil {
		return err
	}
	if *truthFile != "" {
		b, jerr := json.MarshalIndent(s.Truth(), "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(*truthFile, append(b, '\n'), 0o644)
		}
		if jerr != nil {
			return fmt.Errorf("write ground truth: %w", jerr)
		}
	}
	return err
}
