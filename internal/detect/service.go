package detect

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/retry"
)

// Service is the detector: consumer, engine and sink.
type Service struct {
	cfg     Config
	conn    driver.Conn
	log     *slog.Logger
	m       *metrics
	engine  *Engine
	actions Actions
	sink    *sink
	dialer  *kafka.Dialer // of the partition readers (newDialer)

	// aborted makes Run return without the final store, act and commit,
	// as a killed process would (tests).
	aborted atomic.Bool
}

// New builds the detector. conn must have the agentaudit database as its
// default; actions receives stored detections.
func New(cfg Config, conn driver.Conn, actions Actions, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rules, err := LoadRules(cfg.RulesFile)
	if err != nil {
		return nil, err
	}
	m := newMetrics(reg)
	s := &Service{cfg: cfg, conn: conn, log: log, m: m, actions: actions, engine: newEngine(rules, cfg.State, m, nil), dialer: newDialer()}
	s.sink = &sink{s: s, in: make(chan item, 4096)}
	return s, nil
}

// Engine returns the service's engine (tests, the benchmark).
func (s *Service) Engine() *Engine { return s.engine }

// Run warms the state from ClickHouse, then consumes until ctx is
// cancelled; it then stores, acts on and commits what was consumed.
func (s *Service) Run(ctx context.Context) error {
	if s.cfg.WarmLookback > 0 {
		for attempt := 0; ; attempt++ {
			st, err := s.engine.Warm(ctx, s.conn, s.cfg.WarmLookback)
			if err == nil {
				s.log.Info("state warmed from clickhouse", "agents", st.Agents, "bindings", st.Bindings, "parents", st.Parents,
					"revoked", st.Revoked, "open_detections", st.Detections, "rate_buckets", st.RateBuckets, "traces", st.Traces)
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("warm state from clickhouse failed; retrying", "err", err)
			retry.Sleep(ctx, s.cfg.Retry.Backoff(attempt))
		}
	}
	topics := []string{s.cfg.EventsTopic}
	if s.cfg.SpansTopic != "" {
		topics = append(topics, s.cfg.SpansTopic)
	}
	group, err := s.cfg.NewGroup(topics, s.log)
	if err != nil {
		return err
	}
	// The sink outlives the workers by ShutdownTimeout so that their last
	// outcomes are stored and acted on before the final commit.
	sinkCtx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSink()
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); s.sink.run(sinkCtx) }()
	defer func() { stopSink(); <-sinkDone }()

	stopGauges := s.gauges(ctx)
	defer stopGauges()

	stop := context.AfterFunc(ctx, func() { group.Close() })
	defer stop()
	defer group.Close()
	s.log.Info("detector consuming", "topics", topics, "group", s.cfg.GroupID)
	// owned: the partitions of the previous generation. Partitions this
	// instance did not consume before were consumed by another instance,
	// whose state this one lacks: it is warmed from ClickHouse for them
	// before any worker starts (the start-up warm covered the first).
	var owned map[string]bool
	for {
		gen, err := group.Next(ctx)
		if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
			return nil
		}
		if err != nil {
			s.log.Warn("join consumer group", "err", err)
			continue
		}
		now := map[string]bool{}
		gained := 0
		for topic, parts := range gen.Assignments {
			for _, pa := range parts {
				k := topic + "/" + strconv.Itoa(pa.ID)
				now[k] = true
				if owned != nil && !owned[k] {
					gained++
				}
			}
		}
		if gained > 0 && s.cfg.WarmLookback > 0 {
			s.warmGained(ctx, gen, gained)
		}
		owned = now
		n := 0
		for topic, parts := range gen.Assignments {
			for _, pa := range parts {
				w := &worker{s: s, gen: gen, topic: topic, partition: pa.ID, committed: pa.Offset}
				gen.Start(w.run)
				n++
			}
		}
		s.log.Info("consumer group generation", "generation", gen.ID, "partitions", n)
	}
}

// warmGained warms the engine for partitions taken over from another
// instance (see Engine.WarmMissing). It gives up when the generation ends:
// the next one warms again if it still gains partitions.
func (s *Service) warmGained(ctx context.Context, gen *kafka.Generation, gained int) {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Generation.Start runs fn until the generation ends; its context is
	// cancelled then, which ends this warm-up too.
	gen.Start(func(genCtx context.Context) {
		select {
		case <-genCtx.Done():
			cancel()
		case <-gctx.Done():
		}
	})
	for attempt := 0; ; attempt++ {
		st, err := s.engine.WarmMissing(gctx, s.conn, s.cfg.WarmLookback)
		if err == nil {
			s.m.rewarms.Inc()
			s.log.Info("state warmed for partitions taken over", "partitions", gained, "agents", st.Agents, "bindings", st.Bindings,
				"revoked", st.Revoked, "open_detections", st.Detections, "rate_buckets", st.RateBuckets, "traces", st.Traces)
			return
		}
		if gctx.Err() != nil {
			return
		}
		s.log.Warn("warm state for partitions taken over failed; retrying", "err", err)
		retry.Sleep(gctx, s.cfg.Retry.Backoff(attempt))
	}
}

func (s *Service) gauges(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			for k, v := range s.engine.StateSizes() {
				s.m.stateActors.WithLabelValues(k).Set(float64(v))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// item is one outcome on its way to the store and the action sink.
type item struct {
	o   Outcome
	seq uint64
	at  time.Time // Kafka timestamp of the triggering message
}

// sink stores outcomes in batches and then acts on them, in order. seq
// numbers outcomes as submitted; done is the highest seq stored and acted.
type sink struct {
	s         *Service
	in        chan item
	mu        sync.Mutex // orders seq assignment with channel order
	submitted atomic.Uint64
	done      atomic.Uint64
}

func (k *sink) submit(ctx context.Context, o Outcome, at time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	it := item{o: o, seq: k.submitted.Load() + 1, at: at}
	select {
	case k.in <- it:
		k.submitted.Store(it.seq)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k *sink) run(ctx context.Context) {
	var batch []item
	for {
		batch = batch[:0]
		select {
		case it := <-k.in:
			batch = append(batch, it)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < k.s.cfg.InsertMaxRows {
			select {
			case it := <-k.in:
				batch = append(batch, it)
			default:
				break more
			}
		}
		if !k.flush(ctx, batch) {
			return
		}
		k.done.Store(batch[len(batch)-1].seq)
	}
}

// flush stores the batch (latest version per detection), then acts. It
// retries each step until it succeeds or ctx ends (false).
func (k *sink) flush(ctx context.Context, batch []item) bool {
	s := k.s
	type acc struct {
		d              event.Detection
		notify, revoke bool
		isNew          bool
		at             time.Time
	}
	idx := map[[16]byte]int{}
	var accs []acc
	for _, it := range batch {
		id := it.o.Detection.ID
		i, ok := idx[id]
		if !ok {
			i = len(accs)
			idx[id] = i
			accs = append(accs, acc{at: it.at})
		}
		a := &accs[i]
		if it.o.Detection.Version >= a.d.Version {
			a.d = it.o.Detection
		}
		a.notify = a.notify || it.o.Notify
		a.revoke = a.revoke || it.o.Revoke
		a.isNew = a.isNew || it.o.New
	}
	rows := make([]event.Detection, len(accs))
	for i := range accs {
		rows[i] = accs[i].d
	}
	// With a BatchActions sink the outbox rows are written while the
	// detections are stored, and released for sending only once both
	// inserts are acknowledged: one ClickHouse round trip on the way to
	// the webhook instead of two, and still no webhook before its
	// detection is stored (notify.Sender.PrepareBatch says what a crash
	// between the two leaves behind).
	began := time.Now()
	ba, batched := s.actions.(BatchActions)
	var release func()
	prepared := make(chan bool, 1)
	var acts []notify.Action
	if batched {
		for i := range accs {
			if a := &accs[i]; a.notify || a.revoke {
				acts = append(acts, notify.Action{Detection: a.d, Revoke: a.revoke, MessageTime: a.at})
			}
		}
	}
	if len(acts) > 0 {
		pctx := clickhouse.Context(ctx, clickhouse.WithSettings(insertSettings(s.cfg.InsertNice)))
		go func() {
			for attempt := 0; ; attempt++ {
				rel, err := ba.PrepareBatch(pctx, acts)
				if err == nil {
					release = rel
					prepared <- true
					return
				}
				if ctx.Err() != nil {
					prepared <- false
					return
				}
				s.m.actErrors.Inc()
				s.log.Warn("action sink failed; retrying", "err", err, "actions", len(acts))
				retry.Sleep(ctx, s.cfg.Retry.Backoff(attempt))
			}
		}()
	} else {
		prepared <- true
	}
	stored := true
	for attempt := 0; ; attempt++ {
		err := insertDetections(ctx, s.conn, rows, s.cfg.InsertNice)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			stored = false
			break
		}
		s.m.insertErrs.Inc()
		s.log.Warn("insert detections failed; retrying", "err", err, "batch_rows", len(rows))
		retry.Sleep(ctx, s.cfg.Retry.Backoff(attempt))
	}
	if ok := <-prepared; !ok || !stored {
		return false
	}
	now := time.Now()
	s.m.store.Observe(now.Sub(began).Seconds())
	for i := range accs {
		if a := &accs[i]; a.isNew {
			s.m.detections.WithLabelValues(a.d.RuleID, string(a.d.Severity)).Inc()
			if !a.at.IsZero() {
				s.m.latency.Observe(now.Sub(a.at).Seconds())
			}
		}
	}
	if batched {
		if release != nil {
			release()
		}
		return true
	}
	for i := range accs {
		a := &accs[i]
		if !a.notify && !a.revoke {
			continue
		}
		for attempt := 0; ; attempt++ {
			err := s.actions.Act(withMessageTime(ctx, a.at), a.d, a.revoke)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return false
			}
			s.m.actErrors.Inc()
			s.log.Warn("action sink failed; retrying", "err", err, "rule_id", a.d.RuleID, "detection_id", a.d.ID)
			retry.Sleep(ctx, s.cfg.Retry.Backoff(attempt))
		}
	}
	return true
}

// worker owns one topic partition for the lifetime of a generation.
type worker struct {
	s         *Service
	gen       *kafka.Generation
	topic     string
	partition int
	committed int64
}

// pendingCommit: offset may be committed once the sink's done reaches seq.
type pendingCommit struct {
	offset int64
	seq    uint64
}

func (w *worker) run(gctx context.Context) {
	s := w.s
	log := s.log.With("topic", w.topic, "partition", w.partition)
	start := w.committed
	if start < 0 {
		start = kafka.FirstOffset
	}
	isSpans := w.topic == s.cfg.SpansTopic && w.topic != s.cfg.EventsTopic
	fetch := kafka.ReadBatchConfig{MinBytes: s.cfg.FetchMinBytes, MaxBytes: s.cfg.FetchMaxBytes, MaxWait: s.cfg.FetchMaxWait}
	if isSpans {
		fetch.MinBytes, fetch.MaxWait = s.cfg.SpansFetchMinBytes, s.cfg.SpansFetchMaxWait
	}
	r := &partitionReader{
		dialer: s.dialer, brokers: s.cfg.Brokers, topic: w.topic, partition: w.partition, log: log, offset: start, cfg: fetch,
	}
	defer r.close()
	dec, err := event.NewAuditDecoder(s.cfg.Events)
	if err != nil {
		log.Error("audit decoder", "err", err)
		return
	}
	enc := event.Encoding(s.cfg.SpansEncoding)
	scan := newSpanScanner(s.cfg.Spans)
	var (
		outs     []Outcome
		scratch  []event.Span
		pending  []pendingCommit
		last     = int64(-1)
		lastSeq  uint64
		lastTick = time.Now()
		lagLabel = s.m.lag.WithLabelValues(w.topic, strconv.Itoa(w.partition))
		procLbl  = s.m.events.WithLabelValues(w.topic, "processed")
		badLbl   = s.m.events.WithLabelValues(w.topic, "invalid")
		skipLbl  = s.m.events.WithLabelValues(w.topic, "skipped")
		// No enabled rule reads spans: count them, do not decode them.
		needSpans = s.engine.NeedsSpans()
	)
	commit := func(final bool) {
		if last >= 0 && (len(pending) == 0 || pending[len(pending)-1].offset != last+1) {
			pending = append(pending, pendingCommit{offset: last + 1, seq: lastSeq})
		}
		if final {
			// Wait, within ShutdownTimeout, for the sink to store and act on
			// everything this partition submitted.
			deadline := time.Now().Add(s.cfg.ShutdownTimeout)
			for s.sink.done.Load() < lastSeq && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		done := s.sink.done.Load()
		to := int64(-1)
		n := 0
		for _, p := range pending {
			if p.seq > done {
				break
			}
			to = p.offset
			n++
		}
		pending = pending[n:]
		if to < 0 {
			return
		}
		if err := w.gen.CommitOffsets(map[string]map[int]int64{w.topic: {w.partition: to}}); err != nil {
			log.Warn("offset commit failed", "err", err, "offset", to)
		}
	}
	// Span messages feed one rule (LLM token rates); audit events feed all
	// of them, revocations included. When the detector is short of CPU,
	// audit events go first: a span worker yields the processor after each
	// message, so an audit event fetch that arrives meanwhile is processed
	// within a message's time rather than after a scheduler time slice
	// (10 ms) of each runnable span worker. Spans then lag
	// (agentaudit_detector_consumer_lag_messages) while audit events keep up.
	handle := func(msg *kafka.Message, hwm int64) error {
		lagLabel.Set(float64(max(hwm-msg.Offset-1, 0)))
		outs = outs[:0]
		if isSpans {
			runtime.Gosched()
		}
		if isSpans && !needSpans {
			skipLbl.Inc()
		} else if isSpans {
			var derr error
			scratch, derr = scan.decode(msg.Value, enc, scratch[:0])
			if derr != nil {
				badLbl.Inc()
			} else {
				procLbl.Inc()
				outs = s.engine.Spans(scratch, outs)
			}
			clear(scratch)
		} else {
			// kafka-go gives each message a value slice of its own that
			// nothing writes: the event's strings may point into it (the
			// engine copies what it keeps).
			ev, derr := dec.DecodeShared(msg.Value)
			if derr != nil {
				badLbl.Inc() // ingest dead-letters it; the detector skips it
			} else {
				procLbl.Inc()
				outs = s.engine.Event(&ev, outs)
			}
		}
		for _, o := range outs {
			if err := s.sink.submit(gctx, o, msg.Time); err != nil {
				return errStop // generation ended while the sink was full: not committed
			}
			lastSeq = s.sink.submitted.Load()
		}
		last = msg.Offset
		if time.Since(lastTick) >= s.cfg.CommitInterval {
			commit(false)
			lastTick = time.Now()
		}
		return nil
	}
	// A fetch waits at most FetchMaxWait, so the generation's end and the
	// commit interval are noticed between fetches even on a quiet partition.
	for errs := 0; ; {
		if gctx.Err() != nil {
			if !s.aborted.Load() {
				commit(true)
			}
			return
		}
		switch err := r.readBatch(gctx, handle); {
		case errors.Is(err, errStop):
			return
		case err != nil && gctx.Err() == nil:
			log.Warn("fetch", "err", err)
			retry.Sleep(gctx, s.cfg.Retry.Backoff(errs))
			errs++
		default:
			errs = 0
		}
		if time.Since(lastTick) >= s.cfg.CommitInterval {
			commit(false)
			lastTick = time.Now()
		}
	}
}

type messageTimeKey struct{}

func withMessageTime(ctx context.Context, t time.Time) context.Context {
	if t.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, messageTimeKey{}, t)
}

// MessageTime returns, inside Actions.Act, the Kafka timestamp of the
// message that triggered the detection (or, for a batch of repeats, of the
// first one): the start of the end-to-end detection latency.
func MessageTime(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(messageTimeKey{}).(time.Time)
	return t, ok
}
