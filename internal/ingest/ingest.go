// Package ingest consumes OTLP spans and audit events from Kafka and writes
// them to ClickHouse, every row exactly once.
//
// # Delivery
//
// One worker per assigned partition (kafka-go ConsumerGroup generations)
// decodes messages into a batch and flushes it by rows, bytes or age. A flush
// (1) publishes the batch's invalid messages to the dead-letter topic,
// (2) inserts the rows with an insert_deduplication_token derived from the
// partition and offset range, retrying with backoff until ClickHouse
// acknowledges, and only then (3) commits the offset after the batch. While a
// flush retries, the worker does not fetch: a slow or absent ClickHouse stops
// consumption instead of filling memory.
//
// # Exactly-once rows
//
// Each row carries its origin (src_partition, src_offset, src_index). When a
// worker takes a partition (start, restart after a crash, rebalance) it reads
// from ClickHouse which rows at or after the committed offset are already
// stored and skips exactly those while re-consuming. This covers a crash
// between insert and commit, and an INSERT that was applied only in part (an
// INSERT spanning several daily partitions writes one part per partition and
// is not atomic). Retries of the same batch within a process reuse the same
// deduplication token, so an insert that succeeded but whose acknowledgement
// was lost is not applied twice. A plain count() therefore equals what was
// produced, with no FINAL and no merge needed.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
)

// Service is the ingest consumer.
type Service struct {
	cfg    Config
	conn   driver.Conn
	log    *slog.Logger
	m      *metrics
	dlq    *kafka.Writer
	codecs map[string]codec  // by topic
	signer *integrity.Signer // nil: audit events are not sealed
	// checkpointer signs the partitions' integrity logs while Run runs.
	checkpointer *integrity.Checkpointer
	// target is where workers insert, each over a connection of its own.
	target chstore.Config
	// joined is set once Run joined the consumer group and started the
	// workers of its first generation.
	joined atomic.Bool
}

// ErrNotJoined is Joined's error before the service joined its group.
var ErrNotJoined = errors.New("ingest has not joined its consumer group yet")

// Joined is a readiness check: nil once Run joined the consumer group and
// started the workers of its partitions (an instance of a group with more
// members than partitions may own none), ErrNotJoined before.
func (s *Service) Joined(context.Context) error {
	if !s.joined.Load() {
		return ErrNotJoined
	}
	return nil
}

// SealWith makes the service seal every stored audit event into the
// integrity log of its partition (see internal/integrity), signing
// checkpoints with signer. Call before Run.
func (s *Service) SealWith(signer *integrity.Signer) { s.signer = signer }

// New builds the service. conn must have target's database as its default;
// inserts go over connections of their own to target (see
// chstore.Inserter), recovery queries over conn.
func New(cfg Config, conn driver.Conn, target chstore.Config, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:    cfg,
		conn:   conn,
		target: target,
		log:    log,
		m:      newMetrics(reg),
		dlq: &kafka.Writer{
			Addr:                   kafka.TCP(cfg.Brokers...),
			Balancer:               &kafka.Hash{},
			RequiredAcks:           kafka.RequireAll,
			BatchTimeout:           5 * time.Millisecond,
			AllowAutoTopicCreation: true,
			MaxAttempts:            3,
		},
		codecs: map[string]codec{},
	}
	if cfg.SpansTopic != "" {
		c, err := newSpanCodec(cfg)
		if err != nil {
			return nil, err
		}
		s.codecs[cfg.SpansTopic] = c
	}
	if cfg.EventsTopic != "" {
		c, err := newEventCodec(cfg)
		if err != nil {
			return nil, err
		}
		s.codecs[cfg.EventsTopic] = c
	}
	return s, nil
}

// Run consumes until ctx is cancelled, then flushes, commits and returns.
func (s *Service) Run(ctx context.Context) error {
	topics := make([]string, 0, len(s.codecs))
	for t := range s.codecs {
		topics = append(topics, t)
	}
	group, err := s.cfg.NewGroup(topics, s.log)
	if err != nil {
		return err
	}
	if s.signer != nil {
		// Deferred first, so it stops last: after every worker signed its
		// final checkpoint.
		s.checkpointer = integrity.NewCheckpointer(s.conn, s.signer, s.log)
		cpCtx, stopCheckpoints := context.WithCancel(context.Background())
		cpDone := make(chan struct{})
		go func() {
			defer close(cpDone)
			s.checkpointer.Run(cpCtx)
		}()
		defer func() {
			stopCheckpoints()
			<-cpDone
		}()
	}
	defer s.dlq.Close()
	s.ensureDeadLetterTopics(ctx)
	// Closing the group ends the current generation, which cancels the
	// workers' contexts and waits until every worker has flushed and returned.
	stop := context.AfterFunc(ctx, func() { group.Close() })
	defer stop()
	defer group.Close()
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		s.watchLag(ctx, topics)
	}()
	defer func() { <-lagDone }()
	s.log.Info("ingest consuming", "topics", topics, "group", s.cfg.GroupID)
	for {
		gen, err := group.Next(ctx)
		if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
			return nil
		}
		if err != nil {
			s.log.Warn("join consumer group", "err", err)
			continue
		}
		s.m.generations.Inc()
		n := 0
		for topic, parts := range gen.Assignments {
			for _, pa := range parts {
				// Each worker gets its own codec: codecs keep scratch space.
				c, err := s.newCodec(topic)
				if err != nil {
					return err
				}
				w := &worker{s: s, c: c, gen: gen, topic: topic, partition: pa.ID, committed: pa.Offset, maxAge: s.cfg.Batch.MaxAge}
				if topic == s.cfg.EventsTopic {
					w.maxAge = s.cfg.Batch.EventsMaxAge
				}
				gen.Start(w.run)
				n++
			}
		}
		s.joined.Store(true)
		s.log.Info("consumer group generation", "generation", gen.ID, "partitions", n)
	}
}

func (s *Service) newCodec(topic string) (codec, error) {
	switch s.codecs[topic].(type) {
	case *spanCodec:
		return newSpanCodec(s.cfg)
	case *eventCodec:
		return newEventCodec(s.cfg)
	}
	return nil, fmt.Errorf("no codec for topic %s", topic)
}
