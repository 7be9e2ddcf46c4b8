package ingest

import (
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/integrity"
)

type eventCodec struct {
	dec *event.AuditDecoder
	blk *eventBlock
	// With sealing on, every valid event of the batch (stored now or by an
	// earlier owner) is kept for the integrity log, in offset order.
	sealing bool
	sealer  integrity.Sealer
	sealed  []integrity.Leaf
}

func (c *eventCodec) takeSealed() []integrity.Leaf {
	s := c.sealed
	// The tail stage still reads s while the next batch fills: a new
	// slice, sized like this batch (growing a slice of ~200-byte leaves
	// from empty copied each one about twice).
	c.sealed = make([]integrity.Leaf, 0, len(s))
	return s
}

func newEventCodec(cfg Config) (*eventCodec, error) {
	dec, err := event.NewAuditDecoder(cfg.Events)
	if err != nil {
		return nil, err
	}
	return &eventCodec{dec: dec, blk: newEventBlock()}, nil
}

func (c *eventCodec) table() string   { return "audit_events" }
func (c *eventCodec) columns() *block { return &c.blk.block }

func (c *eventCodec) appendTo(msg kafka.Message, stored *storedSet) (appended, error) {
	e, err := c.dec.Decode(msg.Value)
	if err != nil {
		return appended{}, err
	}
	e.SrcPartition, e.SrcOffset, e.SrcIndex = uint16(msg.Partition), uint64(msg.Offset), 0
	if c.sealing {
		// Sealed from the message as decoded, never from ClickHouse, and
		// also when an earlier owner stored the row but died before its leaf
		// was written. Only the leaf is kept, not the event.
		sl := integrity.Sealed{Offset: msg.Offset, Event: &e}
		if msg.Time.Unix() > 0 { // a producer that set no timestamp sent 0
			sl.Written = msg.Time
		}
		c.sealed = append(c.sealed, c.sealer.Leaf(sl))
	}
	if stored.has(msg.Offset, 0) {
		return appended{skipped: 1}, nil
	}
	c.blk.append(&e)
	return appended{}, nil
}
