package ingest

import (
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
)

type eventCodec struct {
	dec *event.AuditDecoder
	blk *eventBlock
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

func (c *eventCodec) appendTo(write bool, msg kafka.Message, stored *storedSet) (appended, error) {
	e, err := c.dec.Decode(msg.Value)
	if err != nil {
		return appended{}, err
	}
	if stored.has(msg.Offset, 0) {
		return appended{skipped: 1}, nil
	}
	if write {
		e.SrcPartition, e.SrcOffset, e.SrcIndex = uint16(msg.Partition), uint64(msg.Offset), 0
		c.blk.append(&e)
	}
	return appended{rows: 1}, nil
}
