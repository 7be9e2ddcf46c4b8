package ingest

import (
	"github.com/segmentio/kafka-go"

	"github.com/agentaudit/agentaudit/internal/event"
)

type spanCodec struct {
	opts    event.SpanOptions
	enc     event.Encoding
	scratch []event.Span
	// unknownTenant is the tenant of spans that name none.
	unknownTenant string
	blk           *spanBlock
}

func newSpanCodec(cfg Config) (*spanCodec, error) {
	enc := event.Encoding(cfg.SpansEncoding)
	if err := enc.Validate(); err != nil {
		return nil, err
	}
	unknown := cfg.Spans.UnknownTenant
	if unknown == "" {
		unknown = event.DefaultUnknownTenant
	}
	return &spanCodec{opts: cfg.Spans, enc: enc, unknownTenant: unknown, blk: newSpanBlock()}, nil
}

func (c *spanCodec) table() string   { return "spans" }
func (c *spanCodec) columns() *block { return &c.blk.block }

func (c *spanCodec) appendTo(msg kafka.Message, stored *storedSet) (appended, error) {
	spans, st, err := event.DecodeSpans(msg.Value, c.enc, c.opts, c.scratch[:0])
	c.scratch = spans
	defer clear(c.scratch)
	if err != nil {
		return appended{}, err
	}
	var a appended
	for i := range spans {
		s := &spans[i]
		if stored.has(msg.Offset, s.SrcIndex) {
			a.skipped++
			continue
		}
		if st.UnknownTenant > 0 && s.TenantID == c.unknownTenant {
			a.unknownTenant++
		}
		s.SrcPartition, s.SrcOffset = uint16(msg.Partition), uint64(msg.Offset)
		c.blk.append(s)
	}
	return a, nil
}
