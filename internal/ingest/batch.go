package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
)

// codec turns one topic's messages into rows of one table.
type codec interface {
	table() string
	columns() string
	// appendTo decodes msg in full and then, if bt is not nil, appends its
	// rows except those stored already; it returns how many rows that is.
	// A message that cannot be stored returns an *event.Error before
	// anything was appended: messages are dead-lettered whole. It counts
	// nothing in metrics: a batch rebuilt for a retry appends again.
	appendTo(cols []driver.BatchColumn, msg kafka.Message, stored *storedSet) (appended, error)
}

// appended is what one message contributed to a batch.
type appended struct {
	rows          int // rows appended (or, without columns, that would be)
	skipped       int // rows already stored by a previous owner
	unknownTenant int // rows stored under the unknown tenant
}

// columnsOf returns the batch's column handles once: looking a column up
// per value costs an allocation each time.
func columnsOf(bt driver.Batch) []driver.BatchColumn {
	if bt == nil {
		return nil
	}
	cols := make([]driver.BatchColumn, len(bt.Columns()))
	for i := range cols {
		cols[i] = bt.Column(i)
	}
	return cols
}

// batch is one partition's rows between two flushes. Rows are appended to
// an open clickhouse-go batch as messages arrive, so they are held in the
// driver's compact columnar form rather than as decoded structs. The raw
// messages are kept as well (a few hundred bytes per row): when a send
// fails, the batch is rebuilt from them and sent again with the same
// deduplication token.
type batch struct {
	c      codec
	conn   driver.Conn
	bt     driver.Batch
	cols   []driver.BatchColumn // of bt
	dirty  bool                 // bt lacks some rows (could not be opened or appended to)
	msgs   []kafka.Message
	stored []*storedSet // per message: what to skip
	n      int
	token  string
}

func newBatch(c codec, conn driver.Conn) *batch { return &batch{c: c, conn: conn} }

func (b *batch) rows() int { return b.n }

func (b *batch) reset() {
	if b.bt != nil {
		_ = b.bt.Abort()
	}
	clear(b.msgs)
	clear(b.stored)
	*b = batch{c: b.c, conn: b.conn, msgs: b.msgs[:0], stored: b.stored[:0]}
}

func (b *batch) prepare(ctx context.Context) (driver.Batch, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": b.token,
	}))
	bt, err := b.conn.PrepareBatch(ctx, "INSERT INTO "+b.c.table()+" ("+b.c.columns()+")")
	if err != nil {
		return nil, fmt.Errorf("prepare insert into %s: %w", b.c.table(), err)
	}
	return bt, nil
}

// add decodes msg and appends its rows. Only permanent (*event.Error)
// errors are returned; a ClickHouse problem is left to flush.
func (b *batch) add(ctx context.Context, tokenPrefix string, msg kafka.Message, stored *storedSet) (appended, error) {
	if len(b.msgs) == 0 {
		// The token is fixed for this batch, across all its retries. The
		// random part keeps a batch formed differently after a restart
		// from being mistaken for this one.
		nonce := make([]byte, 8)
		_, _ = rand.Read(nonce)
		b.token = fmt.Sprintf("%s/%d/%s", tokenPrefix, msg.Offset, hex.EncodeToString(nonce))
		if bt, err := b.prepare(ctx); err == nil {
			b.bt, b.cols = bt, columnsOf(bt)
		} else {
			b.dirty = true
		}
	}
	a, err := b.c.appendTo(b.cols, msg, stored)
	var ee *event.Error
	if errors.As(err, &ee) {
		return appended{}, err
	}
	if err != nil {
		b.markDirty()
		if a, err = b.c.appendTo(nil, msg, stored); err != nil {
			return appended{}, err
		}
	}
	b.msgs = append(b.msgs, msg)
	b.stored = append(b.stored, stored)
	b.n += a.rows
	return a, nil
}

func (b *batch) markDirty() {
	if b.bt != nil {
		_ = b.bt.Abort()
		b.bt, b.cols = nil, nil
	}
	b.dirty = true
}

// send makes one attempt to insert the batch: the open batch if it is
// complete, otherwise one rebuilt from the raw messages.
func (b *batch) send(ctx context.Context) error {
	if b.bt == nil || b.dirty {
		b.markDirty()
		bt, err := b.prepare(ctx)
		if err != nil {
			return err
		}
		cols := columnsOf(bt)
		for i, m := range b.msgs {
			if _, err := b.c.appendTo(cols, m, b.stored[i]); err != nil {
				_ = bt.Abort()
				return fmt.Errorf("rebuild batch for %s: %w", b.c.table(), err)
			}
		}
		b.bt, b.cols, b.dirty = bt, cols, false
	}
	err := b.bt.Send()
	if err != nil {
		b.markDirty()
		return fmt.Errorf("insert %d rows into %s: %w", b.n, b.c.table(), err)
	}
	b.bt, b.cols = nil, nil
	return nil
}
