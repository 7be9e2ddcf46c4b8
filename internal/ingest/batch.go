package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/integrity"
)

// codec turns one topic's messages into rows of one table.
type codec interface {
	table() string
	// columns is the codec's block: the rows appended since its reset.
	columns() *block
	// appendTo decodes msg in full and then appends its rows except those
	// stored already; it returns what the message contributed.
	// A message that cannot be stored returns an *event.Error before
	// anything was appended: messages are dead-lettered whole. It counts
	// nothing in metrics.
	appendTo(msg kafka.Message, stored *storedSet) (appended, error)
}

// appended is what one message contributed to a batch.
type appended struct {
	skipped       int // rows already stored by a previous owner
	unknownTenant int // rows stored under the unknown tenant
}

// batch is one partition's rows between two flushes, held in the codec's
// typed columns. A failed send leaves the columns as they are, so a retry
// sends the same rows with the same deduplication token.
type batch struct {
	c     codec
	ins   inserter
	msgs  int // messages appended
	token string
}

// inserter sends a block (chstore.Inserter, chstore.InserterPool).
type inserter interface {
	Insert(ctx context.Context, table string, input proto.Input, dedupToken string) error
}

func newBatch(c codec, ins inserter) *batch { return &batch{c: c, ins: ins} }

func (b *batch) rows() int { return b.c.columns().rows() }

// sealer is implemented by codecs whose rows are sealed into the
// integrity log (audit events).
type sealer interface {
	// takeSealed returns the events to seal appended since the last call,
	// in offset order, and forgets them.
	takeSealed() []integrity.Sealed
}

func (b *batch) reset() {
	b.c.columns().reset()
	if s, ok := b.c.(sealer); ok {
		s.takeSealed()
	}
	b.msgs, b.token = 0, ""
}

// add decodes msg and appends its rows. Only permanent (*event.Error)
// errors are returned.
func (b *batch) add(tokenPrefix string, msg kafka.Message, stored *storedSet) (appended, error) {
	if b.msgs == 0 {
		// The token is fixed for this batch, across all its retries. The
		// random part keeps a batch formed differently after a restart
		// from being mistaken for this one.
		nonce := make([]byte, 8)
		_, _ = rand.Read(nonce)
		b.token = fmt.Sprintf("%s/%d/%s", tokenPrefix, msg.Offset, hex.EncodeToString(nonce))
	}
	a, err := b.c.appendTo(msg, stored)
	if err != nil {
		return appended{}, err
	}
	b.msgs++
	return a, nil
}

// send makes one attempt to insert the batch.
func (b *batch) send(ctx context.Context) error {
	return b.ins.Insert(ctx, b.c.table(), b.c.columns().input, b.token)
}
