package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// stallTimeout bounds how long a fetch's response may take beyond the
// fetch's own wait at the broker before the connection is deemed broken.
const stallTimeout = 10 * time.Second

// partitionReader reads one topic partition in the calling goroutine, one
// fetch at a time, over its own connection (kafka-go's Conn and Batch).
//
// kafka-go's Reader does the same in a goroutine of its own and hands every
// message over a channel, resets the connection's read deadline per
// message and, with a fetch wait as short as the detector's (5 ms), gives
// the broker the wait minus a quarter for the round trip and the socket
// the wait alone: a broker that answers a little late (a busy machine)
// has its connection closed and dialled again. Here the broker is asked
// to wait exactly fetch-max-wait and the connection gets stallTimeout more
// to answer; the messages of a fetch are handed to the caller directly.
type partitionReader struct {
	dialer    *kafka.Dialer
	brokers   []string
	topic     string
	partition int
	cfg       kafka.ReadBatchConfig
	log       *slog.Logger

	conn   *kafka.Conn
	offset int64 // the next offset to read; kafka.FirstOffset: the partition's first
}

// errStop, returned by a readBatch callback, ends readBatch with it: the
// caller stops consuming.
var errStop = errors.New("stop consuming")

// readBatch fetches once from the reader's offset and calls fn with each
// message of the fetch, in order, and the partition's high-water mark; the
// message is valid during the call only. It
// returns nil when the fetch was read (it may have had no message: nothing
// arrived within the wait), errStop when fn returned it, or the fetch's
// error, after which the next readBatch connects again (the caller backs
// off). Past fn's last message, the offset has advanced.
func (r *partitionReader) readBatch(ctx context.Context, fn func(m *kafka.Message, highWaterMark int64) error) error {
	if r.conn == nil {
		if err := r.connect(ctx); err != nil {
			return err
		}
	}
	c := r.conn
	c.SetReadDeadline(time.Now().Add(r.cfg.MaxWait + stallTimeout))
	// The end of ctx (the generation) interrupts a fetch in flight.
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	b := c.ReadBatchWith(r.cfg)
	hwm := b.HighWaterMark()
	var err error
	// One Message per fetch: fn gets a pointer to it and must not keep it.
	var m kafka.Message
	for {
		if m, err = b.ReadMessage(); err != nil {
			break
		}
		r.offset = m.Offset + 1
		if err = fn(&m, hwm); err != nil {
			break
		}
	}
	cerr := b.Close()
	switch {
	case errors.Is(err, errStop):
		return errStop
	case errors.Is(err, io.EOF):
		err = cerr // the end of the fetch; Close reports what broke it, if anything
	}
	switch {
	case err == nil, errors.Is(err, kafka.RequestTimedOut):
		return nil
	case errors.Is(err, kafka.OffsetOutOfRange):
		return r.outOfRange()
	}
	r.close()
	return fmt.Errorf("fetch %s/%d at offset %d: %w", r.topic, r.partition, r.offset, err)
}

// outOfRange handles an offset the broker no longer (or does not yet)
// hold: before the first offset (retention deleted it) reading goes on from
// the first, with a warning saying how much was skipped; past the end it
// is tried again.
func (r *partitionReader) outOfRange() error {
	r.conn.SetDeadline(time.Now().Add(stallTimeout))
	first, last, err := r.conn.ReadOffsets()
	r.conn.SetDeadline(time.Time{})
	if err != nil {
		r.close()
		return fmt.Errorf("offsets of %s/%d: %w", r.topic, r.partition, err)
	}
	r.skipDeleted(first)
	if _, err := r.conn.Seek(r.offset, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
		r.close()
		return err
	}
	if r.offset > last {
		return fmt.Errorf("offset %d of %s/%d is past the last offset %d", r.offset, r.topic, r.partition, last)
	}
	return nil
}

// connect dials the partition's leader through the first broker that
// answers and seeks to the reader's offset (the first one when the offset
// is kafka.FirstOffset or before it).
func (r *partitionReader) connect(ctx context.Context) error {
	var err error
	for _, broker := range r.brokers {
		var c *kafka.Conn
		if c, err = r.dialer.DialLeader(ctx, "tcp", broker, r.topic, r.partition); err != nil {
			continue
		}
		c.SetDeadline(time.Now().Add(stallTimeout))
		var first int64
		if first, _, err = c.ReadOffsets(); err == nil {
			r.skipDeleted(first)
			_, err = c.Seek(r.offset, kafka.SeekAbsolute)
		}
		if err != nil {
			c.Close()
			continue
		}
		c.SetDeadline(time.Time{})
		r.conn = c
		return nil
	}
	return fmt.Errorf("connect to %s/%d: %w", r.topic, r.partition, err)
}

// skipDeleted moves the offset up to first, the partition's first offset,
// when it is before it: retention deleted those messages (said, with how
// many), or the offset is kafka.FirstOffset (silently).
func (r *partitionReader) skipDeleted(first int64) {
	if r.offset >= first {
		return
	}
	if r.offset >= 0 {
		r.log.Warn("offset before the first offset of the partition (deleted by retention): skipping to the first",
			"offset", r.offset, "first", first, "skipped", first-r.offset)
	}
	r.offset = first
}

func (r *partitionReader) close() {
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}
