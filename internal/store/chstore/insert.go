package chstore

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Inserter sends blocks of typed columns to one table per call over the
// native protocol, with ch-go (the columnar protocol library clickhouse-go
// is built on). The ingest hot path uses it instead of clickhouse-go's
// row-wise batches: values go straight into typed column buffers, with no
// interface boxing or reflection per value, which was the largest share of
// ingest's CPU.
//
// An Inserter holds one connection, opened on first use and dropped after
// any error (its state is then unknown); the next Insert dials again, trying
// the configured addresses in turn. It is not safe for concurrent use.
type Inserter struct {
	cfg    Config
	client *ch.Client
	next   int // index into cfg.Addr of the next address to dial
}

// NewInserter returns an Inserter for c's servers and database.
func NewInserter(c Config) *Inserter { return &Inserter{cfg: c} }

// Insert writes every row of input into table and returns after ClickHouse
// acknowledged them. A non-empty dedupToken is sent as
// insert_deduplication_token, so a retry of an insert that was applied but
// whose acknowledgement was lost is not applied twice. input's columns are
// not modified: on error the same block can be sent again.
func (in *Inserter) Insert(ctx context.Context, table string, input proto.Input, dedupToken string) error {
	if in.client == nil || in.client.IsClosed() {
		if err := in.dial(ctx); err != nil {
			return err
		}
	}
	q := ch.Query{Body: input.Into(table), Input: input}
	if dedupToken != "" {
		q.Settings = []ch.Setting{
			{Key: "insert_deduplicate", Value: "1", Important: true},
			{Key: "insert_deduplication_token", Value: dedupToken, Important: true},
		}
	}
	if err := in.client.Do(ctx, q); err != nil {
		in.Close()
		return fmt.Errorf("insert %d rows into %s: %w", rowsOf(input), table, err)
	}
	return nil
}

// Stream writes one INSERT made of several blocks: input as it is now,
// then, each time next returns true, input as next refilled it. The server
// squashes the blocks into one part per table partition (the squashing
// thresholds are raised far above any batch this package is given), so a
// long stream of small blocks costs ClickHouse what one large insert does
// while the caller holds one block at a time. Nothing of an INSERT that
// fails before its end is stored; one that fails after it (a lost
// acknowledgement) may have been: the query runs under queryID, which the
// caller can look up in system.processes (QueryRunning) before it checks
// what was stored.
func (in *Inserter) Stream(ctx context.Context, table string, input proto.Input, queryID string, next func(context.Context) (bool, error)) error {
	if in.client == nil || in.client.IsClosed() {
		if err := in.dial(ctx); err != nil {
			return err
		}
	}
	rows := rowsOf(input)
	q := ch.Query{
		Body:    input.Into(table),
		Input:   input,
		QueryID: queryID,
		Settings: []ch.Setting{
			{Key: "min_insert_block_size_rows", Value: "1000000000", Important: true},
			{Key: "min_insert_block_size_bytes", Value: "100000000000", Important: true},
			// The caller recovers from failures by reading what is
			// stored, not by resending: block hashing is wasted work.
			{Key: "insert_deduplicate", Value: "0", Important: true},
			// A (Replacing)MergeTree would otherwise merge the rows of
			// each new part by sorting key before writing it: about a
			// third of the server's insert CPU for spans (200k bench
			// spans: 3.5 -> 2.4 CPU-s), for nothing here, since a batch
			// never holds a row twice. Rows that do share a key (an
			// exporter repeating a span id) are folded by merges, as
			// rows of different batches always were.
			{Key: "optimize_on_insert", Value: "0", Important: true},
		},
		OnInput: func(ctx context.Context) error {
			more, err := next(ctx)
			if err != nil {
				return err
			}
			if !more {
				// ch-go sends what input holds when OnInput says io.EOF
				// (a "tail", as an io.Reader may return data with
				// io.EOF): the block sent last would go in twice.
				for _, c := range input {
					r, ok := c.Data.(proto.Resettable)
					if !ok {
						return fmt.Errorf("column %s cannot be emptied at the end of the stream", c.Name)
					}
					r.Reset()
				}
				return io.EOF
			}
			rows += rowsOf(input)
			return nil
		},
	}
	if err := in.client.Do(ctx, q); err != nil {
		in.Close()
		return fmt.Errorf("insert stream of %d rows into %s: %w", rows, table, err)
	}
	return nil
}

// QueryRunning reports whether the server still runs the query queryID.
// Once it does not, whatever that query stored is visible.
func QueryRunning(ctx context.Context, conn driver.Conn, queryID string) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query_id = ?", queryID).Scan(&n); err != nil {
		return false, fmt.Errorf("look up query %s: %w", queryID, err)
	}
	return n > 0, nil
}

func (in *Inserter) dial(ctx context.Context) error {
	if len(in.cfg.Addr) == 0 {
		return fmt.Errorf("dial clickhouse: no address configured")
	}
	addr := in.cfg.Addr[in.next%len(in.cfg.Addr)]
	in.next++
	dialTimeout, readTimeout := in.cfg.DialTimeout, in.cfg.ReadTimeout
	if dialTimeout <= 0 {
		dialTimeout = 5 * time.Second
	}
	if readTimeout <= 0 {
		// A large insert into a busy server is acknowledged late; ch-go's
		// own default (3 s) would abandon it and retry needlessly.
		readTimeout = 60 * time.Second
	}
	comp := ch.CompressionLZ4
	switch in.cfg.wireCompression(addr) {
	case "none":
		comp = ch.CompressionDisabled
	case "zstd":
		comp = ch.CompressionZSTD
	}
	client, err := ch.Dial(ctx, ch.Options{
		Address:     addr,
		Database:    in.cfg.Database,
		User:        in.cfg.Username,
		Password:    in.cfg.Password.Reveal(),
		Compression: comp,
		ClientName:  "agentaudit",
		DialTimeout: dialTimeout,
		ReadTimeout: readTimeout,
	})
	if err != nil {
		return fmt.Errorf("dial clickhouse %s: %w", addr, err)
	}
	in.client = client
	return nil
}

// Close drops the connection; a later Insert dials again.
func (in *Inserter) Close() {
	if in.client != nil {
		_ = in.client.Close()
		in.client = nil
	}
}

func rowsOf(input proto.Input) int {
	if len(input) == 0 {
		return 0
	}
	return input[0].Data.Rows()
}
