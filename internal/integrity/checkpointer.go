package integrity

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Checkpointer signs the logs of one ingest instance on a clock of its own,
// so that a leaf becomes provable within one CheckpointInterval of being
// sealed whatever the partition's worker is doing (waiting for a batch to
// fill, retrying an insert, idle). Each tick signs every tracked log that
// grew since its last checkpoint and stores all those checkpoints in ONE
// insert: the number of inserts per second does not grow with the number of
// partitions.
type Checkpointer struct {
	conn   driver.Conn
	signer *Signer
	log    *slog.Logger

	mu   sync.Mutex
	logs map[*Log]struct{}
}

// NewCheckpointer returns a Checkpointer storing checkpoints over conn.
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

// Run signs the tracked logs every CheckpointInterval until ctx ends. A
// failed tick is logged and its logs are signed again on the next one (the
// leaves are stored; only their checkpoint is late).
func (c *Checkpointer) Run(ctx context.Context) {
	t := time.NewTicker(c.signer.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.SignAll(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("integrity checkpoints failed; the next tick covers them", "err", err)
		}
	}
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
