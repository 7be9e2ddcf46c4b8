package ingest

import (
	"errors"
	"strings"

	"github.com/ClickHouse/ch-go/proto"
)

// lcStr is a LowCardinality(String) column that interns values as they are
// appended: each distinct value is copied once into the block's dictionary
// and every row costs a 4-byte key. ch-go's generic LowCardinality keeps a
// 16-byte string header per row that points into the decoded message, which
// keeps every message of a batch alive until it is sent; with lcStr a batch
// holds only its own compact columns and the messages are garbage as soon
// as they are appended.
//
// It is write-only: ingest never reads through it.
type lcStr struct {
	raw  proto.ColLowCardinalityRaw
	idx  proto.ColStr
	dict map[string]uint32
}

var _ proto.ColumnOf[string] = (*lcStr)(nil)

func newLCStr() *lcStr {
	c := &lcStr{dict: make(map[string]uint32)}
	c.raw.Index = &c.idx
	c.raw.Key = proto.KeyUInt32
	return c
}

func (c *lcStr) Append(v string) {
	i, ok := c.dict[v]
	if !ok {
		i = uint32(c.idx.Rows())
		c.idx.Append(v)
		c.dict[strings.Clone(v)] = i
	}
	c.raw.Keys32 = append(c.raw.Keys32, i)
}

func (c *lcStr) AppendArr(vs []string) {
	for _, v := range vs {
		c.Append(v)
	}
}

func (c *lcStr) Row(i int) string { return c.idx.Row(int(c.raw.Keys32[i])) }

func (c *lcStr) Reset() {
	c.raw.Reset()
	c.raw.Key = proto.KeyUInt32
	clear(c.dict)
}

func (c *lcStr) Type() proto.ColumnType       { return c.raw.Type() }
func (c *lcStr) Rows() int                    { return len(c.raw.Keys32) }
func (c *lcStr) EncodeColumn(b *proto.Buffer) { c.raw.EncodeColumn(b) }
func (c *lcStr) WriteColumn(w *proto.Writer)  { c.raw.WriteColumn(w) }
func (c *lcStr) EncodeState(b *proto.Buffer)  { c.raw.EncodeState(b) }
func (c *lcStr) DecodeColumn(*proto.Reader, int) error {
	return errors.New("ingest: lcStr columns are write-only")
}
