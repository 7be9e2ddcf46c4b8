package integrity

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Errors a sealing request can end with (errors.Is).
var (
	// ErrCheckpointerStopped: the Checkpointer's Run returned before the
	// leaves were stored.
	ErrCheckpointerStopped = errors.New("integrity checkpointer stopped")
	// ErrSealAbandoned: an earlier request of the same log was refused or
	// given up, so these leaves would leave a gap; the log must be reopened.
	ErrSealAbandoned = errors.New("integrity log abandoned after a refused seal")
)

// Checkpointer seals and signs the logs of one ingest instance on a clock
// of its own. Each tick
//
//  1. stores the leaves every partition submitted since the last tick, of
//     all logs together, in ONE merkle_leaves insert, and answers the
//     requests (their offsets may be committed now);
//  2. signs every tracked log that grew since its last checkpoint and
//     stores those checkpoints in ONE insert.
//
// So a leaf is provable within about one CheckpointInterval of being
// submitted, whatever the partition's worker is doing, and the log costs
// two inserts per tick however many partitions and batches there are.
type Checkpointer struct {
	conn   driver.Conn
	signer *Signer
	log    *slog.Logger

	mu      sync.Mutex
	logs    map[*Log]struct{}
	queue   []*sealRequest
	stopped bool
	next    time.Time // when the next tick starts; zero when not running
	// failed is the last tick's insert of leaves if it failed: the next
	// tick sends it again first. Only the tick's goroutine uses it.
	failed *leafInsert
}

// sealRequest is one Submit waiting for a tick.
type sealRequest struct {
	ctx    context.Context
	l      *Log
	leaves []Leaf
	done   chan error // buffered: the tick never blocks on its submitter
}

// NewCheckpointer returns a Checkpointer storing leaves and checkpoints
// over conn.
func NewCheckpointer(conn driver.Conn, signer *Signer, log *slog.Logger) *Checkpointer {
	return &Checkpointer{conn: conn, signer: signer, log: log, logs: map[*Log]struct{}{}}
}

// Track adds l to the logs signed on each tick until the returned function
// is called.
func (c *Checkpointer) Track(l *Log) (untrack func()) {
	c.mu.Lock()
	c.logs[l] = struct{}{}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.logs, l)
		c.mu.Unlock()
	}
}

// Submit queues leaves (in increasing offset order; offsets <= the log's
// LastOffset are redeliveries and ignored) to be appended to l by the next
// tick. The returned channel receives nil once ClickHouse acknowledged them
// and the log advanced, or the reason they never will be:
// ErrOutOfOrder, ctx's error (ctx ended before a tick took them),
// ErrSealAbandoned (an earlier request of l ended so) or
// ErrCheckpointerStopped. A failed insert is retried on the next tick, not
// reported: requests of one log are stored in the order submitted, with no
// gap, and a retried insert holds exactly the rows of the failed one (the
// server deduplicates it if the failure was only a lost acknowledgement).
// After any error l must not be used again (reopen the log). One goroutine
// per log submits, and not concurrently with l.Append.
func (c *Checkpointer) Submit(ctx context.Context, l *Log, leaves []Leaf) <-chan error {
	req := &sealRequest{ctx: ctx, l: l, leaves: leaves, done: make(chan error, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		req.done <- ErrCheckpointerStopped
	} else {
		c.queue = append(c.queue, req)
	}
	return req.done
}

// NextTick returns when the next tick starts (zero when Run is not
// running) and the interval between ticks: leaves submitted before then
// are stored and signed by it.
func (c *Checkpointer) NextTick() (time.Time, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next, c.signer.interval
}

// Run stores leaves and signs the tracked logs every CheckpointInterval
// until ctx ends; then every request still queued gets
// ErrCheckpointerStopped. A failed tick is logged and counted, and the
// next one covers it.
func (c *Checkpointer) Run(ctx context.Context) {
	defer func() {
		c.mu.Lock()
		queue := c.queue
		c.queue, c.stopped, c.next = nil, true, time.Time{}
		c.mu.Unlock()
		if c.failed != nil {
			queue = append(c.failed.taken, queue...)
			c.failed = nil
		}
		for _, req := range queue {
			if req != nil {
				req.done <- ErrCheckpointerStopped
			}
		}
	}()
	// Ticks keep their phase (a slow tick skips the ticks it overran), so
	// NextTick stays true for the workers that close batches by it.
	interval := c.signer.interval
	next := time.Now().Add(interval)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		c.mu.Lock()
		c.next = next
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.tick(ctx)
		// Until here NextTick reported this tick, now past: a worker asking
		// meanwhile aims at the following one, which keeps the phase.
		now := time.Now()
		for !next.After(now) {
			next = next.Add(interval)
		}
		t.Reset(next.Sub(now))
		if err != nil && ctx.Err() == nil {
			if m := c.signer.metrics; m != nil {
				m.tickFailures.Inc()
			}
			c.log.Warn("storing integrity leaves or checkpoints failed; the next tick retries", "err", err)
		}
	}
}

// tick stores the queued leaves, then signs what grew (even when the
// leaves failed: logs may have grown before).
func (c *Checkpointer) tick(ctx context.Context) error {
	return errors.Join(c.storeLeaves(ctx), c.SignAll(ctx))
}

// leafInsert is one merkle_leaves insert of a tick: its rows and, for
// each request it answers, the leaves it adds to the request's log.
type leafInsert struct {
	rows  leafRows
	taken []*sealRequest
	fresh [][]Leaf
}

// storeLeaves stores the leaves of every queued request in one insert and
// answers them. When the insert fails, the next tick first sends exactly
// the same rows again (same insert_deduplication_token, so the server
// drops them if the failed insert was stored after all), and only then
// the requests queued since, which come after them in their logs.
func (c *Checkpointer) storeLeaves(ctx context.Context) error {
	if c.failed != nil {
		if err := c.failed.store(ctx, c.conn); err != nil {
			return err
		}
		c.failed = nil
	}
	c.mu.Lock()
	queue := c.queue
	c.queue = nil
	c.mu.Unlock()
	if len(queue) == 0 {
		return nil
	}
	var ins leafInsert
	n := 0
	for _, req := range queue {
		n += len(req.leaves)
	}
	ins.rows.grow(n)
	pos := map[*Log]*logPos{}
	for _, req := range queue {
		if req.l.abandoned {
			req.done <- ErrSealAbandoned
			continue
		}
		if err := req.ctx.Err(); err != nil {
			req.l.abandoned = true
			req.done <- err
			continue
		}
		p := pos[req.l]
		if p == nil {
			p = &logPos{size: req.l.Size(), last: req.l.LastOffset()}
			pos[req.l] = p
		}
		leaves, err := ins.rows.add(req.l, p, req.leaves)
		if err != nil {
			req.l.abandoned = true
			req.done <- err
			continue
		}
		ins.taken, ins.fresh = append(ins.taken, req), append(ins.fresh, leaves)
	}
	if err := ins.store(ctx, c.conn); err != nil {
		c.failed = &ins
		return err
	}
	return nil
}

// store inserts the rows (if any), advances each log by its leaves and
// answers the requests; on a failed insert nothing changed.
func (ins *leafInsert) store(ctx context.Context, conn driver.Conn) error {
	if len(ins.rows.indexes) > 0 {
		start := time.Now()
		if err := ins.rows.insert(ctx, conn); err != nil {
			return err
		}
		for i, req := range ins.taken {
			if len(ins.fresh[i]) == 0 {
				continue
			}
			if err := req.l.advance(ins.fresh[i], start); err != nil {
				req.l.abandoned = true
				req.done <- err
				ins.taken[i] = nil
			}
		}
	}
	for _, req := range ins.taken {
		if req != nil {
			req.done <- nil
		}
	}
	return nil
}

// SignAll signs every tracked log that grew since its last stored
// checkpoint and stores the checkpoints in one insert.
func (c *Checkpointer) SignAll(ctx context.Context) error {
	c.mu.Lock()
	logs := make([]*Log, 0, len(c.logs))
	for l := range c.logs {
		logs = append(logs, l)
	}
	c.mu.Unlock()
	var todo []signed
	var cps []*Checkpoint
	for _, l := range logs {
		// The tick is the interval: a log that grew is due.
		if s, ok := l.snapshot(func(time.Time, time.Time) bool { return true }); ok {
			todo, cps = append(todo, s), append(cps, s.cp)
		}
	}
	if len(cps) == 0 {
		return nil
	}
	if err := insertCheckpoints(ctx, c.conn, cps); err != nil {
		return err
	}
	for _, s := range todo {
		s.l.covered(s)
		if c.signer.publish != "" {
			if err := publish(c.signer.publish, s.cp); err != nil {
				c.log.Warn("checkpoint stored but not published", "log", s.cp.LogID, "err", err)
			}
		}
	}
	return nil
}
