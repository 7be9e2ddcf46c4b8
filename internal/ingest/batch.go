package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
)

// codec turns one topic's messages into rows of one table.
type codec interface {
	table() string
	// columns is the codec's block: the rows appended since its reset.
	columns() *block
	// appendTo decodes msg in full and then, if write, appends its rows
	// except those stored already; it returns what the message contributes.
	// A message that cannot be stored returns an *event.Error before
	// anything was appended: messages are dead-lettered whole. It counts
	// nothing in metrics.
	appendTo(write bool, msg kafka.Message, stored *storedSet) (appended, error)
}

// appended is what one message contributed to a batch.
type appended struct {
	rows          int // rows appended
	skipped       int // rows already stored by a previous owner
	unknownTenant int // rows stored under the unknown tenant
}

// batch is one partition's rows between two flushes, held in the codec's
// typed columns. A failed send leaves the columns as they are, so a retry
// sends the same rows with the same deduplication token.
type batch struct {
	c     codec
	ins   *chstore.Inserter
	msgs  int
	n     int
	token string
}

func newBatch(c codec, ins *chstore.Inserter) *batch { return &batch{c: c, ins: ins} }

func (b *batch) rows() int { return b.n }

// sealer is implemented by codecs whose rows are sealed into the
// integrity log (audit events).
type sealer interface {
	sealedEvents() []integrity.Sealed
	resetSealed()
}

func (b *batch) reset() {
	b.c.columns().reset()
	if s, ok := b.c.(sealer); ok {
		s.resetSealed()
	}
	b.msgs, b.n, b.token = 0, 0, ""
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
	a, err := b.c.appendTo(true, msg, stored)
	if err != nil {
		return appended{}, err
	}
	b.msgs++
	b.n += a.rows
	return a, nil
}

// send makes one attempt to insert the batch.
func (b *batch) send(ctx context.Context) error {
	if got := b.c.columns().rows(); got != b.n {
		return fmt.Errorf("batch for %s holds %d rows, counted %d", b.c.table(), got, b.n)
	}
	return b.ins.Insert(ctx, b.c.table(), b.c.columns().input, b.token)
}
