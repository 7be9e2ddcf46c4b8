package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/agentaudit/agentaudit/internal/kafkabroker"
)

// TestPartitionReader on kfake: every message once, in order, with its
// timestamp, across fetches; the offset it was given is where it starts;
// an offset deleted by retention skips to the first one left; a caller's
// errStop ends the fetch; the end of the context interrupts a fetch that
// would wait long at the broker; a broken connection is dialled again and
// reading goes on where it stopped.
func TestPartitionReader(t *testing.T) {
	b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{Topics: map[string]int{"t": 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	w, err := kafka.DialLeader(ctx, "tcp", b.Addr(), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	produce := func(from, n int) {
		t.Helper()
		var ms []kafka.Message
		for i := from; i < from+n; i++ {
			ms = append(ms, kafka.Message{Value: []byte(strconv.Itoa(i)), Time: at.Add(time.Duration(i) * time.Millisecond)})
		}
		if _, err := w.WriteMessages(ms...); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5000; i += 500 {
		produce(i, 500)
	}

	// A dialer whose connections the test can break.
	var conns []net.Conn
	d := newDialer()
	dial := d.DialFunc
	d.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := dial(ctx, network, address)
		if err == nil {
			conns = append(conns, c)
		}
		return c, err
	}
	newReader := func(offset int64, maxWait time.Duration) *partitionReader {
		return &partitionReader{dialer: d, brokers: []string{b.Addr()}, topic: "t", partition: 0, offset: offset,
			log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			cfg: kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 16 << 10, MaxWait: maxWait}}
	}
	// readAll reads whole fetches until at least want messages came,
	// checking order and times.
	readAll := func(r *partitionReader, from, want int, between func(fetch int)) {
		t.Helper()
		next := from
		for fetch := 0; next < from+want; fetch++ {
			if fetch > 10_000 {
				t.Fatalf("read %d of %d messages", next-from, want)
			}
			err := r.readBatch(ctx, func(m *kafka.Message, hwm int64) error {
				if string(m.Value) != strconv.Itoa(next) || m.Offset != int64(next) {
					return fmt.Errorf("got offset %d value %q, want %d", m.Offset, m.Value, next)
				}
				if !m.Time.Equal(at.Add(time.Duration(next) * time.Millisecond)) {
					return fmt.Errorf("offset %d: time %v, want %v", next, m.Time, at.Add(time.Duration(next)*time.Millisecond))
				}
				if hwm <= m.Offset {
					return fmt.Errorf("high-water mark %d at offset %d", hwm, m.Offset)
				}
				next++
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				if between == nil {
					t.Fatal(err)
				}
				continue // a broken connection: the next readBatch dials again
			}
			if between != nil {
				between(fetch)
			}
		}
		if next < from+want || r.offset != int64(next) {
			t.Fatalf("read up to %d, reader offset %d, want %d (at least %d)", next, r.offset, next, from+want)
		}
	}

	r := newReader(kafka.FirstOffset, 10*time.Millisecond)
	readAll(r, 0, 5000, nil)
	r.close()

	// From a given offset, with the connection broken now and then.
	r = newReader(1234, 10*time.Millisecond)
	dials := len(conns)
	readAll(r, 1234, 5000-1234, func(fetch int) {
		if fetch%3 == 1 {
			conns[len(conns)-1].Close()
		}
	})
	if len(conns)-dials < 2 {
		t.Fatalf("%d dials: the broken connections were not replaced", len(conns)-dials)
	}
	r.close()

	// errStop ends the fetch; reading resumes after the last message taken.
	r = newReader(0, 10*time.Millisecond)
	n := 0
	if err := r.readBatch(ctx, func(*kafka.Message, int64) error {
		if n++; n == 3 {
			return errStop
		}
		return nil
	}); !errors.Is(err, errStop) {
		t.Fatalf("readBatch = %v, want errStop", err)
	}
	readAll(r, 3, 10, nil)
	r.close()

	// The end of the context interrupts a fetch waiting at the broker.
	r = newReader(5000, 30*time.Second)
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	r.cfg.MinBytes, r.cfg.MaxBytes = 1<<20, 2<<20
	got := 0
	_ = r.readBatch(cctx, func(*kafka.Message, int64) error { got++; return nil })
	if d := time.Since(t0); d < 90*time.Millisecond || d > 5*time.Second || got > 0 {
		t.Fatalf("a fetch cancelled after 100 ms returned after %v with %d messages", d, got)
	}
	r.close()

	// Retention deleted the first 2000: an older offset goes on from 2000.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.TimeoutMillis = 5000
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 2000
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("delete records: error code %d", code)
	}
	r = newReader(100, 10*time.Millisecond)
	readAll(r, 2000, 3000, nil)
	r.close()
}
