package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/retry"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
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
	// inserts holds how long the last closed batches took to be stored,
	// for aligning sealed batches with checkpoints (sealDeadline).
	inserts [8]time.Duration
	nInsert int

	// The tail stage seals and commits flushed batches in order while the
	// worker fills and inserts the next one (see tail).
	tail       chan flushed
	tailFailed chan struct{} // closed when the tail stage gave up
	failures   int           // consecutive failed inserts, for the backoff
}

// flushed is a batch whose rows ClickHouse acknowledged, on its way to the
// tail stage: its events to seal (nil when not sealing) and the offsets to
// commit past.
type flushed struct {
	sealed      []integrity.Leaf
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
	stored, ok := w.loadStored(gctx, from)
	if !ok {
		return
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
	w.tail, w.tailFailed = make(chan flushed, tailQueue), make(chan struct{})
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		w.runTail()
	}()
	defer func() {
		close(w.tail)
		<-tailDone
	}()

	ins := chstore.NewInserter(w.s.target)
	defer ins.Close()
	for w.batch(gctx, r, ins, &stored) {
	}
}

// The tail stage (seal, commit) may fall up to about 2*tailQueue batches
// behind the inserts (tailQueue waiting for it, tailQueue waiting for
// their leaves to be stored).
const tailQueue = 8

// Block limits: a batch is streamed to ClickHouse as one INSERT of blocks
// of at most this many rows or message bytes, so a worker holds one block,
// not the whole batch, however large batches are.
const (
	blockMaxRows  = 4096
	blockMaxBytes = 1 << 20
)

// streamBatch is the state of one batch: messages first..last of the
// partition, streamed as one INSERT.
type streamBatch struct {
	first, last  int64
	start        time.Time
	rows, bytes  int // rows appended (to insert), message bytes read
	blockBytes   int
	dead         []kafka.Message
	stored, skip int // messages decoded (not dead-lettered); rows skipped as stored already
	unknown      int // rows stored under the unknown tenant
	open         bool
	deadline     time.Time // when the batch ends by age (see fill)
	closed       time.Time // when it stopped taking messages
	waiting      int64     // messages in the partition after the last one read
}

// batch consumes one batch, from its first message until a batch limit,
// its age, or the end of the generation, streams it to ClickHouse as one
// INSERT (one part per table partition), writes its dead letters and hands
// it to the tail stage, which seals and commits. It reports whether the
// worker should go on.
//
// A failed INSERT is never resent: the worker waits until the server no
// longer runs it, reads again what ClickHouse holds of the partition from
// the batch's first offset (all of the batch, none, or per table partition
// some: an INSERT spanning two daily partitions is not atomic) and consumes
// the batch again from Kafka, skipping what is stored, exactly as a new
// owner of the partition would after a crash.
func (w *worker) batch(gctx context.Context, r *kafka.Reader, ins *chstore.Inserter, stored **storedSet) bool {
	table := w.c.table()
	msg, err := r.FetchMessage(gctx)
	if err != nil {
		if gctx.Err() != nil {
			return false
		}
		w.log.Warn("fetch", "err", err)
		retry.Sleep(gctx, w.s.cfg.Retry.Backoff(0))
		return true
	}
	b := &streamBatch{first: msg.Offset, start: time.Now(), open: true}
	b.deadline = b.start.Add(w.maxAge)
	if w.seal != nil {
		b.deadline = w.sealDeadline(b.start)
	}
	cols := w.c.columns()
	cols.reset()
	w.add(b, msg, stored)
	w.fill(gctx, r, b, stored)
	queryID := fmt.Sprintf("agentaudit-ingest-%s-%d-%d-%s", w.topic, w.partition, b.first, nonce())
	if cols.rows() > 0 {
		err := ins.Stream(w.stopCtx, table, cols.input, queryID, func(context.Context) (bool, error) {
			if !b.open {
				return false, nil
			}
			cols.reset()
			b.blockBytes = 0
			w.fill(gctx, r, b, stored)
			return cols.rows() > 0, nil
		})
		if err != nil {
			return w.recoverBatch(r, b, queryID, stored, err)
		}
		if w.seal != nil { // only sealDeadline reads them
			w.inserts[w.nInsert%len(w.inserts)] = time.Since(b.closed)
			w.nInsert++
		}
	}
	w.failures = 0
	n := b.rows
	for attempt := 0; len(b.dead) > 0; attempt++ {
		err := w.s.dlq.WriteMessages(w.stopCtx, b.dead...)
		if err == nil {
			break
		}
		if errors.Is(err, kafka.MessageSizeTooLarge) {
			b.dead = truncateDeadLetters(b.dead)
		}
		if w.stopCtx.Err() != nil {
			w.log.Warn("giving up dead letters of a stored batch; it will be consumed again", "err", err, "offset", b.first)
			return false
		}
		w.s.m.retries.WithLabelValues(table, "dead_letter").Inc()
		w.log.Warn("dead-letter write failed; retrying", "err", err, "messages", len(b.dead))
		retry.Sleep(w.stopCtx, w.s.cfg.Retry.Backoff(attempt))
	}
	m := w.s.m
	m.bytes.WithLabelValues(w.topic).Add(float64(b.bytes))
	m.messages.WithLabelValues(w.topic, "stored").Add(float64(b.stored))
	m.messages.WithLabelValues(w.topic, "dead_lettered").Add(float64(len(b.dead)))
	if b.skip > 0 {
		m.skipped.WithLabelValues(table).Add(float64(b.skip))
	}
	if b.unknown > 0 {
		m.unknown.Add(float64(b.unknown))
	}
	if n > 0 {
		m.rows.WithLabelValues(table).Add(float64(n))
		m.batchRows.WithLabelValues(table).Observe(float64(n))
	}
	f := flushed{first: b.first, last: b.last, start: b.start}
	if s, ok := w.c.(sealer); ok {
		f.sealed = s.takeSealed()
	}
	// Blocks while tailQueue batches wait for the tail stage: bounded
	// memory (their events to seal) and a bounded distance between the
	// stored rows and the committed offset.
	select {
	case w.tail <- f:
		return gctx.Err() == nil
	case <-w.tailFailed:
		return false
	}
}

// fill reads messages into the current block until it is full, or the
// batch is: by rows, bytes, age or the end of the generation (gctx), which
// close the batch (b.open = false).
//
// The age limit is for latency, and under a backlog it buys none: when the
// batch reaches its age while at least backlogMessages more messages are
// already waiting in the partition, ending it would not deliver them any
// sooner, only make more, smaller inserts. Such a batch goes on, by one
// max age at a time, up to its row and byte limits or maxAgeStretch ages.
func (w *worker) fill(gctx context.Context, r *kafka.Reader, b *streamBatch, stored **storedSet) {
	for w.fillUntil(gctx, r, b, stored) {
		b.deadline = time.Now().Add(w.maxAge)
	}
	if !b.open {
		b.closed = time.Now()
	}
}

// sealDeadline is when a batch of sealed events opened at start ends by
// age: in time for its leaves to reach the Checkpointer's next tick, which
// stores them and signs. A batch ending at a fixed age instead would wait
// for the tick after it was stored, anywhere up to a whole interval, and
// make more inserts than ticks. So the batch ends one slow insert before
// the tick (1.5 times the slowest of the worker's last inserts, within
// [minSealLead, interval/2]: a batch that misses its tick waits a whole
// interval more), or before the following tick when that is less than
// minSealAge away. Each partition then writes one insert per tick, and an
// event waits for at most one interval before its batch is stored and then
// about one insert for its checkpoint.
func (w *worker) sealDeadline(start time.Time) time.Time {
	next, interval := w.s.checkpointer.NextTick()
	if next.IsZero() {
		return start.Add(w.maxAge)
	}
	slowest := slices.Max(w.inserts[:])
	if w.nInsert == 0 {
		slowest = firstInsertGuess // the first inserts of a process are slower
	}
	lead := min(max(slowest*3/2, minSealLead), interval/2)
	d := next.Add(-lead)
	for d.Sub(start) < minSealAge {
		d = d.Add(interval)
	}
	return d
}

// Bounds of sealDeadline.
const (
	minSealLead      = 50 * time.Millisecond
	firstInsertGuess = 100 * time.Millisecond
	minSealAge       = 10 * time.Millisecond
)

// fillUntil is fill up to b.deadline; it reports whether the batch reached
// its age with a backlog behind it and should go on.
func (w *worker) fillUntil(gctx context.Context, r *kafka.Reader, b *streamBatch, stored **storedSet) bool {
	cols := w.c.columns()
	fctx, cancel := context.WithDeadline(gctx, b.deadline)
	defer cancel()
	for b.open && cols.rows() < blockMaxRows && b.blockBytes < blockMaxBytes {
		if b.rows >= w.s.cfg.Batch.MaxRows || b.bytes >= w.s.cfg.Batch.MaxBytes {
			b.open = false
			return false
		}
		msg, err := r.FetchMessage(fctx)
		if err != nil {
			if gctx.Err() != nil {
				b.open = false
				return false
			}
			if fctx.Err() != nil {
				if b.waiting >= backlogMessages && time.Since(b.start) < maxAgeStretch*w.maxAge {
					return true
				}
				b.open = false
				return false
			}
			w.log.Warn("fetch", "err", err)
			retry.Sleep(fctx, w.s.cfg.Retry.Backoff(0))
			continue
		}
		w.add(b, msg, stored)
	}
	return false
}

// A batch at its age with at least backlogMessages waiting behind it goes
// on, up to maxAgeStretch times its max age (see fill).
const (
	backlogMessages = 1000
	maxAgeStretch   = 8
)

// add decodes msg into the current block (or the batch's dead letters).
func (w *worker) add(b *streamBatch, msg kafka.Message, stored **storedSet) {
	b.last = msg.Offset
	b.waiting = msg.HighWaterMark - msg.Offset - 1
	b.bytes += len(msg.Value)
	b.blockBytes += len(msg.Value)
	before := w.c.columns().rows()
	a, err := w.c.appendTo(msg, *stored)
	if err != nil {
		b.dead = append(b.dead, w.deadLetter(msg, err))
	} else {
		b.stored++
	}
	b.rows += w.c.columns().rows() - before
	b.skip += a.skipped
	b.unknown += a.unknownTenant
	if *stored != nil && msg.Offset >= (*stored).max {
		*stored = nil
	}
}

// recoverBatch handles a failed INSERT of b (see batch): it waits until the
// server no longer runs the query, reloads what is stored from b.first and
// rewinds the reader there. It reports whether the worker should go on.
func (w *worker) recoverBatch(r *kafka.Reader, b *streamBatch, queryID string, stored **storedSet, cause error) bool {
	ctx, table := w.stopCtx, w.c.table()
	if ctx.Err() != nil {
		w.log.Warn("giving up an unflushed batch; it will be consumed again", "err", cause, "offset", b.first)
		return false
	}
	w.s.m.retries.WithLabelValues(table, "insert").Inc()
	w.log.Warn("insert failed; consuming the batch again", "err", cause, "offset", b.first, "attempt", w.failures+1)
	retry.Sleep(ctx, w.s.cfg.Retry.Backoff(w.failures))
	w.failures++
	for attempt := 0; ; attempt++ {
		running, err := chstore.QueryRunning(ctx, w.s.conn, queryID)
		if err == nil && !running {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			w.log.Warn("cannot ask ClickHouse about the failed insert yet; retrying", "err", err)
		}
		retry.Sleep(ctx, w.s.cfg.Retry.Backoff(attempt))
	}
	s, ok := w.loadStored(ctx, b.first)
	if !ok {
		return false
	}
	*stored = s
	w.c.columns().reset()
	if sl, ok := w.c.(sealer); ok {
		sl.takeSealed()
	}
	if err := r.SetOffset(b.first); err != nil {
		w.log.Error("rewind to the failed batch", "err", err, "offset", b.first)
		return false
	}
	return true
}

// nonce is a random hex string for query ids.
func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runTail seals (when sealing) and then commits each flushed batch, in
// order, until w.tail is closed. Leaves are written after the rows are
// acknowledged and offsets committed after the leaves: a committed offset
// whose event has no leaf would never be sealed (verify would call the row
// inserted). Running beside the worker, this stage's round trips overlap
// the filling and insert of the next batches instead of adding to them.
func (w *worker) runTail() {
	if w.seal != nil {
		w.runSealingTail()
		return
	}
	for f := range w.tail {
		// Take every batch already queued behind f: one commit covers them.
		last := f.last
	more:
		for {
			select {
			case g, ok := <-w.tail:
				if !ok {
					break more
				}
				last = g.last
			default:
				break more
			}
		}
		w.commit(last, f.start)
	}
}

// inflight is a flushed batch whose leaves wait for the Checkpointer.
type inflight struct {
	done        <-chan error
	first, last int64
	start       time.Time
}

// runSealingTail hands each flushed batch's leaves to the Checkpointer as
// soon as it arrives (the Checkpointer stores the leaves of every
// partition in one insert per tick) and commits a batch once its leaves
// and those of every batch before it are stored. Several batches may wait
// for the same tick: up to tailQueue of them, then the worker waits.
func (w *worker) runSealingTail() {
	ctx := w.stopCtx
	in := w.tail
	var q []inflight
	for in != nil || len(q) > 0 {
		var head <-chan error
		var stop <-chan struct{} // only batches waiting for leaves are given up
		if len(q) > 0 {
			head, stop = q[0].done, ctx.Done()
		}
		recv := in
		if len(q) >= tailQueue {
			recv = nil // backpressure: the worker blocks on w.tail
		}
		select {
		case f, ok := <-recv:
			if !ok {
				in = nil
				continue
			}
			q = append(q, inflight{done: w.s.checkpointer.Submit(ctx, w.seal, f.sealed), first: f.first, last: f.last, start: f.start})
			continue
		case err := <-head:
			if err != nil {
				w.abandonTail(err, q[0].first)
				return
			}
		case <-stop:
			w.abandonTail(ctx.Err(), q[0].first)
			return
		}
		// The head is sealed; so may be those behind it: one commit.
		n := 1
		var failed error
	ready:
		for ; n < len(q); n++ {
			select {
			case failed = <-q[n].done:
				if failed != nil {
					break ready
				}
			default:
				break ready
			}
		}
		w.commit(q[n-1].last, q[0].start)
		if failed != nil {
			w.abandonTail(failed, q[n].first)
			return
		}
		q = q[n:]
	}
}

// abandonTail stops the tail after a batch could not be sealed: nothing
// after it may be committed, and the worker stops (the partition is
// consumed again from the committed offset by its next owner).
func (w *worker) abandonTail(err error, offset int64) {
	w.log.Warn("giving up sealing a batch; it will be consumed again", "err", err, "offset", offset)
	close(w.tailFailed)
	for range w.tail {
	}
}

// commit commits the partition's offset past last; start is when the
// first batch it covers began to flush.
func (w *worker) commit(last int64, start time.Time) {
	table := w.c.table()
	err := w.gen.CommitOffsets(map[string]map[int]int64{w.topic: {w.partition: last + 1}})
	w.s.m.flushSeconds.WithLabelValues(table).Observe(time.Since(start).Seconds())
	if err != nil {
		// Not a loss: the rows are stored and recognised on redelivery.
		w.s.m.commits.WithLabelValues(w.topic, "failed").Inc()
		w.log.Warn("offset commit failed", "err", err, "offset", last+1)
		return
	}
	w.s.m.commits.WithLabelValues(w.topic, "ok").Inc()
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

// loadStored is loadStored for the worker's partition from offset from,
// retried until it succeeds or ctx ends (then ok is false).
func (w *worker) loadStored(ctx context.Context, from int64) (s *storedSet, ok bool) {
	table := w.c.table()
	for attempt := 0; ; attempt++ {
		s, err := loadStored(ctx, w.s.conn, table, w.partition, from)
		if err == nil {
			return s, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		w.s.m.retries.WithLabelValues(table, "recover").Inc()
		w.log.Warn("cannot read what ClickHouse holds of this partition yet; retrying", "err", err)
		retry.Sleep(ctx, w.s.cfg.Retry.Backoff(attempt))
	}
}

// checkpoint signs the leaves of the partition's log that no checkpoint
// covers yet, when the worker gives the partition up. A failure is not
// fatal: the leaves are stored, and the next owner signs them.
func (w *worker) checkpoint() {
	if _, err := w.seal.Checkpoint(w.stopCtx, true); err != nil {
		w.log.Warn("integrity checkpoint failed; the next owner of the partition will sign", "err", err)
	}
}
