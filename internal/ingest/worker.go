package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/retry"
)

// rowID is a row's origin within its topic partition.
type rowID struct {
	offset int64
	index  uint32
}

// storedSet is what ClickHouse already holds of a partition at and after its
// committed offset: rows an earlier owner inserted but did not commit.
type storedSet struct {
	rows map[rowID]struct{}
	max  int64 // highest stored offset; past it nothing is skipped
}

func (s *storedSet) has(offset int64, index uint32) bool {
	if s == nil || offset > s.max {
		return false
	}
	_, ok := s.rows[rowID{offset, index}]
	return ok
}

// loadStored asks ClickHouse which rows of the partition at or after offset
// from are stored. The minmax index on src_offset keeps this cheap: old parts
// are skipped without reading them.
func loadStored(ctx context.Context, conn driver.Conn, table string, partition int, from int64) (*storedSet, error) {
	rows, err := conn.Query(ctx, "SELECT src_offset, src_index FROM "+table+" WHERE src_partition = ? AND src_offset >= ?", uint16(partition), uint64(from))
	if err != nil {
		return nil, fmt.Errorf("read stored rows of %s partition %d: %w", table, partition, err)
	}
	defer rows.Close()
	s := &storedSet{rows: map[rowID]struct{}{}, max: -1}
	for rows.Next() {
		var off uint64
		var idx uint32
		if err := rows.Scan(&off, &idx); err != nil {
			return nil, fmt.Errorf("read stored rows of %s: %w", table, err)
		}
		s.rows[rowID{int64(off), idx}] = struct{}{}
		s.max = max(s.max, int64(off))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stored rows of %s: %w", table, err)
	}
	if len(s.rows) == 0 {
		return nil, nil
	}
	return s, nil
}

// worker owns one topic partition for the lifetime of a generation.
type worker struct {
	s         *Service
	c         codec
	gen       *kafka.Generation
	topic     string
	partition int
	committed int64 // committed offset at assignment, or kafka.FirstOffset
	maxAge    time.Duration

	log     *slog.Logger
	stopCtx context.Context // outlives the generation by ShutdownTimeout, for the last flush
	seal    *integrity.Log  // the partition's integrity log; nil when not sealing

	// The tail stage seals and commits flushed batches in order while the
	// worker fills and inserts the next one (see tail).
	tail       chan flushed
	tailFailed chan struct{} // closed when the tail stage gave up
}

// flushed is a batch whose rows ClickHouse acknowledged, on its way to the
// tail stage: its events to seal (nil when not sealing) and the offsets to
// commit past.
type flushed struct {
	sealed      []integrity.Sealed
	first, last int64
	start       time.Time // when its flush began
}

func (w *worker) run(gctx context.Context) {
	w.log = w.s.log.With("topic", w.topic, "partition", w.partition)
	stopCtx, cancelStop := context.WithCancel(context.Background())
	defer cancelStop()
	context.AfterFunc(gctx, func() { time.AfterFunc(w.s.cfg.ShutdownTimeout, cancelStop) })
	w.stopCtx = stopCtx
	table := w.c.table()

	from := max(w.committed, 0)
	var stored *storedSet
	for attempt := 0; ; attempt++ {
		var err error
		stored, err = loadStored(gctx, w.s.conn, table, w.partition, from)
		if err == nil {
			break
		}
		if gctx.Err() != nil {
			return
		}
		w.s.m.retries.WithLabelValues(table, "recover").Inc()
		w.log.Warn("cannot read what ClickHouse holds of this partition yet; retrying", "err", err)
		retry.Sleep(gctx, w.s.cfg.Retry.Backoff(attempt))
	}
	if stored != nil {
		w.log.Info("partition has rows stored past its committed offset; they will not be written again",
			"offset", from, "stored_rows", len(stored.rows), "stored_max_offset", stored.max)
	}
	if ec, ok := w.c.(*eventCodec); ok && w.s.signer != nil {
		for attempt := 0; ; attempt++ {
			l, err := integrity.OpenLog(gctx, w.s.conn, w.s.signer, w.partition)
			if err == nil {
				w.seal, ec.sealing = l, true
				untrack := w.s.checkpointer.Track(l)
				defer func() {
					// Runs after the tail stage drained: the last leaves get
					// their checkpoint before the partition is given up.
					untrack()
					w.checkpoint()
				}()
				break
			}
			if gctx.Err() != nil {
				return
			}
			w.s.m.retries.WithLabelValues(table, "recover").Inc()
			w.log.Warn("cannot open the partition's integrity log yet; retrying", "err", err)
			retry.Sleep(gctx, w.s.cfg.Retry.Backoff(attempt))
		}
	}

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:       w.s.cfg.Brokers,
		Topic:         w.topic,
		Partition:     w.partition,
		MinBytes:      1,
		MaxBytes:      w.s.cfg.FetchMaxBytes,
		MaxWait:       250 * time.Millisecond,
		QueueCapacity: 100,
	})
	defer r.Close()
	start := w.committed
	if start < 0 {
		start = kafka.FirstOffset
	}
	if err := r.SetOffset(start); err != nil {
		w.log.Error("set offset", "err", err)
		return
	}
	w.tail, w.tailFailed = make(chan flushed), make(chan struct{})
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		w.runTail()
	}()
	defer func() {
		close(w.tail)
		<-tailDone
	}()

	var (
		b          = newBatch(w.c, w.s.inserters)
		dead       []kafka.Message
		first      = int64(-1)
		last       int64
		bytes      int
		batchStart time.Time
	)
	reset := func() {
		b.reset()
		dead = dead[:0]
		first, bytes = -1, 0
	}
	for {
		fctx, cancel := gctx, context.CancelFunc(func() {})
		if first >= 0 {
			fctx, cancel = context.WithDeadline(gctx, batchStart.Add(w.maxAge))
		}
		msg, err := r.FetchMessage(fctx)
		cancel()
		if err != nil {
			switch {
			case gctx.Err() != nil:
				// The generation ended (rebalance or shutdown): flush what
				// was read, within ShutdownTimeout, and give the partition up.
				if first >= 0 {
					w.flush(b, dead, first, last)
				}
				return
			case errors.Is(err, context.DeadlineExceeded):
				if !w.flush(b, dead, first, last) {
					return
				}
				reset()
			default:
				w.log.Warn("fetch", "err", err)
				retry.Sleep(gctx, w.s.cfg.Retry.Backoff(0))
			}
			continue
		}
		if first < 0 {
			first, batchStart = msg.Offset, time.Now()
		}
		last = msg.Offset
		bytes += len(msg.Value)
		w.s.m.bytes.WithLabelValues(w.topic).Add(float64(len(msg.Value)))

		a, err := b.add(fmt.Sprintf("%s/%d", w.topic, w.partition), msg, stored)
		if a.skipped > 0 {
			w.s.m.skipped.WithLabelValues(w.c.table()).Add(float64(a.skipped))
		}
		if a.unknownTenant > 0 {
			w.s.m.unknown.Add(float64(a.unknownTenant))
		}
		if err != nil {
			dead = append(dead, w.deadLetter(msg, err))
			w.s.m.messages.WithLabelValues(w.topic, "dead_lettered").Inc()
		} else {
			w.s.m.messages.WithLabelValues(w.topic, "stored").Inc()
		}
		if stored != nil && msg.Offset >= stored.max {
			stored = nil
		}
		if b.rows() >= w.s.cfg.Batch.MaxRows || bytes >= w.s.cfg.Batch.MaxBytes {
			if !w.flush(b, dead, first, last) {
				return
			}
			reset()
		}
	}
}

// flush makes the batch durable and hands it to the tail stage, which
// seals and commits past it. It retries until it succeeds or the worker's
// stop context ends; it never lets an offset be committed whose rows or dead
// letters are not acknowledged. It reports whether the batch was handed on
// (false: the worker must stop, the batch will be consumed again).
func (w *worker) flush(b *batch, dead []kafka.Message, first, last int64) bool {
	ctx := w.stopCtx
	table := w.c.table()
	start := time.Now()
	for attempt := 0; len(dead) > 0; attempt++ {
		err := w.s.dlq.WriteMessages(ctx, dead...)
		if err == nil {
			break
		}
		if errors.Is(err, kafka.MessageSizeTooLarge) {
			dead = truncateDeadLetters(dead)
		}
		if ctx.Err() != nil {
			return false
		}
		w.s.m.retries.WithLabelValues(table, "dead_letter").Inc()
		w.log.Warn("dead-letter write failed; retrying", "err", err, "messages", len(dead))
		retry.Sleep(ctx, w.s.cfg.Retry.Backoff(attempt))
	}
	if n := b.rows(); n > 0 {
		// Every attempt carries the batch's deduplication token, so a retry
		// of an insert that was applied but not acknowledged is deduplicated
		// by ClickHouse.
		for attempt := 0; ; attempt++ {
			err := b.send(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				w.log.Warn("giving up an unflushed batch; it will be consumed again", "err", err, "offset", first, "rows", n)
				return false
			}
			w.s.m.retries.WithLabelValues(table, "insert").Inc()
			w.log.Warn("insert failed; retrying", "err", err, "rows", n, "attempt", attempt+1)
			retry.Sleep(ctx, w.s.cfg.Retry.Backoff(attempt))
		}
		w.s.m.rows.WithLabelValues(table).Add(float64(n))
		w.s.m.batchRows.WithLabelValues(table).Observe(float64(n))
	}
	f := flushed{first: first, last: last, start: start}
	if s, ok := w.c.(sealer); ok {
		f.sealed = s.takeSealed()
	}
	// Blocks while the tail stage still works on the previous batch: at
	// most one batch is between insert and commit.
	select {
	case w.tail <- f:
		return true
	case <-w.tailFailed:
		return false
	}
}

// runTail seals (when sealing) and then commits each flushed batch, in
// order, until w.tail is closed. Leaves are written after the rows are
// acknowledged and offsets committed after the leaves: a committed offset
// whose event has no leaf would never be sealed (verify would call the row
// inserted). Running beside the worker, this stage's round trips overlap the
// filling and insert of the next batch instead of adding to them.
func (w *worker) runTail() {
	ctx := w.stopCtx
	table := w.c.table()
	for f := range w.tail {
		for attempt := 0; len(f.sealed) > 0; attempt++ {
			err := w.seal.Append(ctx, f.sealed)
			if err == nil {
				break
			}
			if ctx.Err() != nil || errors.Is(err, integrity.ErrOutOfOrder) {
				w.log.Warn("giving up sealing a batch; it will be consumed again", "err", err, "offset", f.first)
				close(w.tailFailed)
				for range w.tail { // nothing after it may be committed
				}
				return
			}
			w.s.m.retries.WithLabelValues(table, "seal").Inc()
			w.log.Warn("sealing into the integrity log failed; retrying", "err", err, "events", len(f.sealed), "attempt", attempt+1)
			retry.Sleep(ctx, w.s.cfg.Retry.Backoff(attempt))
		}
		err := w.gen.CommitOffsets(map[string]map[int]int64{w.topic: {w.partition: f.last + 1}})
		w.s.m.flushSeconds.WithLabelValues(table).Observe(time.Since(f.start).Seconds())
		if err != nil {
			// Not a loss: the rows are stored and recognised on redelivery.
			w.s.m.commits.WithLabelValues(w.topic, "failed").Inc()
			w.log.Warn("offset commit failed", "err", err, "offset", f.last+1)
			continue
		}
		w.s.m.commits.WithLabelValues(w.topic, "ok").Inc()
	}
}

// Dead-letter headers. The value and key are the original message's.
const (
	HeaderError           = "agentaudit.error"
	HeaderReason          = "agentaudit.reason"
	HeaderSourceTopic     = "agentaudit.source.topic"
	HeaderSourcePartition = "agentaudit.source.partition"
	HeaderSourceOffset    = "agentaudit.source.offset"
	HeaderTruncated       = "agentaudit.truncated"
)

func (w *worker) deadLetter(msg kafka.Message, err error) kafka.Message {
	reason := "decode_failed"
	var ee *event.Error
	if errors.As(err, &ee) {
		reason = string(ee.Reason)
	}
	w.s.m.deadLetters.WithLabelValues(w.topic, reason).Inc()
	text := err.Error()
	if len(text) > 1024 {
		text = text[:1024]
	}
	headers := append([]kafka.Header(nil), msg.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(text)},
		kafka.Header{Key: HeaderReason, Value: []byte(reason)},
		kafka.Header{Key: HeaderSourceTopic, Value: []byte(w.topic)},
		kafka.Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(w.partition))},
		kafka.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(msg.Offset, 10))},
	)
	return kafka.Message{Topic: w.topic + w.s.cfg.DeadLetterSuffix, Key: msg.Key, Value: msg.Value, Headers: headers, Time: msg.Time}
}

// truncateDeadLetters keeps the first 64 KiB of values the dead-letter topic
// refused as too large, marked with a header; the source offset header still
// points at the full message in the source topic.
func truncateDeadLetters(dead []kafka.Message) []kafka.Message {
	const keep = 64 << 10
	out := make([]kafka.Message, len(dead))
	for i, m := range dead {
		if len(m.Value) > keep {
			m.Value = m.Value[:keep]
			m.Headers = append(m.Headers, kafka.Header{Key: HeaderTruncated, Value: []byte("true")})
		}
		out[i] = m
	}
	return out
}

// checkpoint signs the leaves of the partition's log that no checkpoint
// covers yet, when the worker gives the partition up. A failure is not
// fatal: the leaves are stored, and the next owner signs them.
func (w *worker) checkpoint() {
	if _, err := w.seal.Checkpoint(w.stopCtx, true); err != nil {
		w.log.Warn("integrity checkpoint failed; the next owner of the partition will sign", "err", err)
	}
}
