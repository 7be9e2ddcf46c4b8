package ingest

import (
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

// sealer is implemented by codecs whose rows are sealed into the
// integrity log (audit events).
type sealer interface {
	// takeSealed returns the events to seal appended since the last call,
	// in offset order, and forgets them.
	takeSealed() []integrity.Leaf
}
