package integrity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/event"
)

// Errors callers can test for with errors.Is.
var (
	// ErrLogCorrupt: merkle_leaves of a log is not a dense sequence of
	// leaves in offset order, or disagrees with the log's latest validly
	// signed checkpoint. Ingest must not extend such a log (it would sign
	// over the damage); run verify.
	ErrLogCorrupt = errors.New("integrity log corrupt")
	// ErrOutOfOrder: Append got offsets that do not increase, or an event
	// whose src_partition/src_offset disagree with its Sealed offset.
	ErrOutOfOrder = errors.New("events not in offset order")
)

// LogID is the id of the log of a partition of the audit events topic.
func LogID(partition int) string { return "audit_events/" + strconv.Itoa(partition) }

// Sealed is one event to append: its Kafka offset and the event as decoded
// from Kafka (with SrcPartition/SrcOffset set as stored). Written is when
// the event was written to Kafka (the message timestamp), the start of its
// proof lag; zero means unknown and the lag counts from the Append.
type Sealed struct {
	Offset  int64
	Event   *event.AuditEvent
	Written time.Time
}

// Log is the in-memory state of one partition's Merkle log: the compact
// range over its leaves (O(log n) hashes), the highest sealed offset and the
// latest checkpoint. It is owned by one partition worker; not safe for
// concurrent use.
//
// Why one log per partition: Kafka orders a partition and exactly one
// consumer of the group owns it at a time, so the leaf order (offset order)
// is fixed by the broker, not by which ingest instance or batch handled an
// event. A redelivered message has an offset <= LastOffset and is ignored;
// after a crash the new owner rebuilds the state from merkle_leaves and
// re-consumption from the committed offset appends exactly the missing
// leaves. Several ingest instances therefore never write the same log at
// once except for a zombie of an old generation, which computes the very
// same leaves for the same offsets.
//
// One goroutine (the partition's worker) calls Append; a Checkpointer may
// sign the log concurrently.
type Log struct {
	conn      driver.Conn
	signer    *Signer
	id        string
	partition int
	now       func() time.Time

	mu      sync.Mutex // guards the fields below; Append writes them, checkpoints read them
	rng     *compact.Range
	lastOff int64
	cpSize  uint64
	cpTime  time.Time
	// pending: for each leaf not yet covered by a stored checkpoint, the
	// time its event was written (for the proof lag metric); dropped counts
	// the entries already removed from its front, so that a snapshot's
	// position in it stays valid when another checkpoint covers first.
	pending []time.Time
	dropped int

	// abandoned: a Checkpointer refused or gave up a request of this log;
	// its later requests are refused too. Only the Checkpointer's tick
	// reads and writes it.
	abandoned bool
}

// leafRow is one row of merkle_leaves.
type leafRow struct {
	LogID       string    `ch:"log_id"`
	LeafIndex   uint64    `ch:"leaf_index"`
	SrcOffset   uint64    `ch:"src_offset"`
	EventID     uuid.UUID `ch:"event_id"`
	TenantID    string    `ch:"tenant_id"`
	TS          time.Time `ch:"ts"`
	LeafHash    string    `ch:"leaf_hash"`
	FieldDigest string    `ch:"field_digest"`
}

func rangeFactory() *compact.RangeFactory {
	return &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
}

// OpenLog loads the state of partition's log. It starts from the latest
// checkpoint signed by one of signer's keys: that row carries the compact
// range of the tree at its size, which is authentic when its root is the
// signed root (finding another range with that root means a SHA-256
// collision); only the leaves after it are read from merkle_leaves. Without
// such a checkpoint every leaf is read. Leaves read must be dense and in
// offset order, else ErrLogCorrupt; verify names the damage.
func OpenLog(ctx context.Context, conn driver.Conn, signer *Signer, partition int) (*Log, error) {
	l := &Log{conn: conn, signer: signer, id: LogID(partition), partition: partition, lastOff: -1, now: time.Now}
	cps, err := latestCheckpoints(ctx, conn, l.id, 16, true)
	if err != nil {
		return nil, err
	}
	l.rng = rangeFactory().NewEmptyRange(0)
	for _, cp := range cps {
		if verifyRow(cp, signer.PublicKeys()) != nil {
			continue // a forged row must not set the pace (a huge size or a future ts would stop checkpoints)
		}
		if l.cpTime.IsZero() {
			l.cpSize, l.cpTime = cp.Size, cp.TS
		}
		rng, err := rangeFactory().NewRange(0, cp.Size, cp.Range)
		if err != nil {
			continue
		}
		if root, err := rng.GetRootHash(nil); err != nil || !bytes.Equal(root, cp.Root) {
			continue
		}
		var n, off uint64
		if err := conn.QueryRow(ctx, "SELECT count(), any(src_offset) FROM merkle_leaves WHERE log_id = ? AND leaf_index = ?", l.id, cp.Size-1).Scan(&n, &off); err != nil {
			return nil, fmt.Errorf("open log %s: read last sealed offset: %w", l.id, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("open log %s: %w: leaf %d of the checkpoint is missing", l.id, ErrLogCorrupt, cp.Size-1)
		}
		l.rng, l.lastOff = rng, int64(off)
		break
	}
	err = scanLeaves(ctx, conn, l.id, l.rng.End(), 0, "leaf_index, src_offset, leaf_hash", func(r *leafRow) error {
		if int64(r.SrcOffset) <= l.lastOff {
			return fmt.Errorf("%w: leaf %d has offset %d after offset %d", ErrLogCorrupt, r.LeafIndex, r.SrcOffset, l.lastOff)
		}
		l.lastOff = int64(r.SrcOffset)
		return l.rng.Append([]byte(r.LeafHash), nil)
	})
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", l.id, err)
	}
	return l, nil
}

// ID returns the log id.
func (l *Log) ID() string { return l.id }

// Size returns the number of leaves.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.End()
}

// LastOffset returns the highest sealed Kafka offset, -1 for an empty log.
func (l *Log) LastOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastOff
}

// Root returns the current root hash (the RFC 6962 empty root for size 0).
func (l *Log) Root() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.root()
}

func (l *Log) root() []byte {
	if l.rng.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	root, _ := l.rng.GetRootHash(nil) // a range from 0 always has a root
	return root
}

// Leaf is one event ready to append, as a Sealer computed it from the event
// decoded from Kafka: what merkle_leaves stores about it and, in Written,
// when it was written to Kafka (the message timestamp), the start of its
// proof lag; zero means unknown and the lag counts from the append.
type Leaf struct {
	Offset    int64 // Kafka offset (= src_offset of the row)
	Partition int   // src_partition of the row
	EventID   uuid.UUID
	TenantID  string
	TS        time.Time
	Written   time.Time
	Hash      [sha256.Size]byte                       // LeafHash
	Digest    [len(fieldNames) * FieldDigestSize]byte // FieldDigest
}

// Sealer computes leaves, reusing one encoding buffer: one per goroutine.
type Sealer struct{ enc leafEncoder }

// Leaf computes the leaf of s. Only the returned value is kept: s.Event is
// not referenced after the call.
func (z *Sealer) Leaf(s Sealed) Leaf {
	ev := s.Event
	lf := Leaf{
		Offset: s.Offset, Partition: int(ev.SrcPartition), EventID: ev.EventID, TenantID: ev.TenantID, TS: ev.TS, Written: s.Written,
	}
	if ev.SrcOffset != uint64(s.Offset) {
		lf.Partition = -1 // refused as out of order when appended: the row would not match its leaf
	}
	h, d := z.enc.leafAndDigest(ev)
	copy(lf.Hash[:], h)
	copy(lf.Digest[:], d)
	return lf
}

// Append seals evs, given in increasing offset order, as the next leaves
// of the log, by itself (ingest hands its leaves to a Checkpointer
// instead, which writes those of every partition together). Offsets <=
// LastOffset are redeliveries and ignored. The new leaves are written in
// ONE insert whose insert_deduplication_token is derived from their
// content, so a retry after an unknown outcome is deduplicated by the
// server; the in-memory state advances only after ClickHouse acknowledged.
// On error nothing changed in memory and the call can be retried (or the
// Log dropped and reopened).
func (l *Log) Append(ctx context.Context, evs []Sealed) error {
	var z Sealer
	leaves := make([]Leaf, len(evs))
	for i, s := range evs {
		leaves[i] = z.Leaf(s)
	}
	var rows leafRows
	pos := logPos{size: l.Size(), last: l.LastOffset()}
	fresh, err := rows.add(l, &pos, leaves)
	if err != nil || len(fresh) == 0 {
		return err
	}
	start := time.Now()
	if err := rows.insert(ctx, l.conn); err != nil {
		return err
	}
	return l.advance(fresh, start)
}

// logPos is where the next leaf of a log goes: its index and the offset it
// must exceed.
type logPos struct {
	size uint64
	last int64
}

// leafRows are merkle_leaves rows of one insert, column by column (one
// conversion per column, not one per value), and the running hash their
// insert_deduplication_token is made of.
type leafRows struct {
	logIDs   []string
	indexes  []uint64
	offsets  []uint64
	eventIDs []uuid.UUID
	tenants  []string
	times    []time.Time
	hashes   []string
	digests  []string
	tok      []byte // per log: id, first index, count, then each leaf hash
}

// grow makes room for n more rows.
func (r *leafRows) grow(n int) {
	r.logIDs = slices.Grow(r.logIDs, n)
	r.indexes = slices.Grow(r.indexes, n)
	r.offsets = slices.Grow(r.offsets, n)
	r.eventIDs = slices.Grow(r.eventIDs, n)
	r.tenants = slices.Grow(r.tenants, n)
	r.times = slices.Grow(r.times, n)
	r.hashes = slices.Grow(r.hashes, n)
	r.digests = slices.Grow(r.digests, n)
	r.tok = slices.Grow(r.tok, n*sha256.Size)
}

// add checks leaves against l at pos and adds the rows of those not sealed
// yet (offset > pos.last), moving pos past them. It returns those leaves; on
// ErrOutOfOrder rows and pos are unchanged.
func (r *leafRows) add(l *Log, pos *logPos, leaves []Leaf) ([]Leaf, error) {
	first := 0
	for first < len(leaves) && leaves[first].Offset <= pos.last {
		first++
	}
	leaves = leaves[first:]
	prev := pos.last
	for i := range leaves {
		lf := &leaves[i]
		if lf.Offset <= prev || lf.Partition != l.partition {
			return nil, fmt.Errorf("append to %s at offset %d: %w", l.id, lf.Offset, ErrOutOfOrder)
		}
		prev = lf.Offset
	}
	if len(leaves) == 0 {
		return nil, nil
	}
	r.grow(len(leaves))
	r.tok = fmt.Appendf(r.tok, "%s:%d:%d:", l.id, pos.size, len(leaves))
	for i := range leaves {
		lf := &leaves[i]
		r.tok = append(r.tok, lf.Hash[:]...)
		r.logIDs = append(r.logIDs, l.id)
		r.indexes = append(r.indexes, pos.size+uint64(i))
		r.offsets = append(r.offsets, uint64(lf.Offset))
		r.eventIDs = append(r.eventIDs, lf.EventID)
		r.tenants = append(r.tenants, lf.TenantID)
		r.times = append(r.times, lf.TS)
		r.hashes = append(r.hashes, string(lf.Hash[:]))
		r.digests = append(r.digests, string(lf.Digest[:]))
	}
	pos.size += uint64(len(leaves))
	pos.last = prev
	return leaves, nil
}

// insert writes the rows in one insert (one part: merkle_leaves is not
// partitioned, so the insert is atomic). Sending the same leaves at the
// same indexes again (a retry, or a restarted worker re-sealing what a lost
// ack had already stored) gives the same token, so the server drops the
// duplicate block.
func (r *leafRows) insert(ctx context.Context, conn driver.Conn) error {
	sum := sha256.Sum256(r.tok)
	token := "leaves:" + strconv.Itoa(len(r.indexes)) + ":" + hex.EncodeToString(sum[:16])
	// optimize_on_insert off: the leaves of one insert never share a key,
	// so merging them by key before the part is written is wasted work.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": token, "optimize_on_insert": 0}))
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO merkle_leaves (log_id, leaf_index, src_offset, event_id, tenant_id, ts, leaf_hash, field_digest)")
	if err != nil {
		return fmt.Errorf("prepare merkle_leaves insert: %w", err)
	}
	for i, col := range []any{r.logIDs, r.indexes, r.offsets, r.eventIDs, r.tenants, r.times, r.hashes, r.digests} {
		if err := batch.Column(i).Append(col); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("append leaves: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d leaves into merkle_leaves: %w", len(r.indexes), err)
	}
	return nil
}

// advance extends the in-memory log by leaves, which ClickHouse holds now
// (the insert that stored them started at start).
func (l *Log) advance(leaves []Leaf, start time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range leaves {
		h := leaves[i].Hash // a copy: the range may keep it, not leaves
		if err := l.rng.Append(h[:], nil); err != nil {
			return fmt.Errorf("extend compact range: %w", err)
		}
	}
	l.lastOff = leaves[len(leaves)-1].Offset
	if m := l.signer.metrics; m != nil {
		m.leaves.Add(float64(len(leaves)))
		done := time.Now()
		m.appendSecs.Observe(done.Sub(start).Seconds())
		for i := range leaves {
			w := leaves[i].Written
			if w.IsZero() {
				w = done
			}
			l.pending = append(l.pending, w)
		}
	}
	return nil
}

// Checkpoint signs and stores a checkpoint of the current tree when the
// size grew since the last one and CheckpointInterval has passed since it
// (or force). It returns nil, nil when there was nothing to do. With
// PublishDir set, a non-nil checkpoint together with an error means the
// checkpoint is stored but its copy in PublishDir failed (the next one
// will overwrite it); do not retry. A crash
// before or after the insert is harmless: the tree is rebuilt from
// merkle_leaves and the next call signs it again.
func (l *Log) Checkpoint(ctx context.Context, force bool) (*Checkpoint, error) {
	snap, ok := l.snapshot(func(now, last time.Time) bool { return force || now.Sub(last) >= l.signer.interval })
	if !ok {
		return nil, nil
	}
	if err := insertCheckpoints(ctx, l.conn, []*Checkpoint{snap.cp}); err != nil {
		return nil, err
	}
	l.covered(snap)
	if l.signer.publish != "" {
		if err := publish(l.signer.publish, snap.cp); err != nil {
			return snap.cp, err // stored and valid; only the copy failed
		}
	}
	return snap.cp, nil
}

// signed is a checkpoint of a Log, signed but maybe not stored yet.
type signed struct {
	l       *Log
	cp      *Checkpoint
	pending int // entries of l.pending the checkpoint covers, counted from the first ever
}

// snapshot signs the current tree if it grew since the last stored
// checkpoint and due(now, time of that checkpoint) says so.
func (l *Log) snapshot(due func(now, last time.Time) bool) (signed, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := l.rng.End()
	now := l.now()
	if size == 0 || size <= l.cpSize || !due(now, l.cpTime) {
		return signed{}, false
	}
	cp := l.signer.sign(l.id, size, l.root(), now)
	cp.Range = slices.Clone(l.rng.Hashes()) // Append changes the range's slice in place
	return signed{l: l, cp: cp, pending: l.dropped + len(l.pending)}, true
}

// covered records that s's checkpoint is stored.
func (l *Log) covered(s signed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.cp.Size > l.cpSize {
		l.cpSize, l.cpTime = s.cp.Size, s.cp.TS
	}
	// Two checkpoints of the same size may be stored concurrently (the
	// Checkpointer and a worker's last one): each entry is counted once.
	n := max(s.pending-l.dropped, 0)
	if m := l.signer.metrics; m != nil {
		m.checkpoints.Inc()
		done := time.Now()
		for _, t := range l.pending[:n] {
			m.proofLag.Observe(done.Sub(t).Seconds())
		}
	}
	l.pending = append(l.pending[:0], l.pending[n:]...)
	l.dropped += n
}

// publish writes cp's note to dir atomically (temp file + rename).
func publish(dir string, cp *Checkpoint) error {
	name := filepath.Join(dir, strings.ReplaceAll(cp.Origin, "/", "_")+".checkpoint")
	f, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	_, err = f.WriteString(cp.Note)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("publish checkpoint to %s: %w", name, err)
	}
	return nil
}

// insertCheckpoints stores cps in one insert. Its deduplication token is
// derived from their signatures, so a retry after an unknown outcome is not
// stored twice.
func insertCheckpoints(ctx context.Context, conn driver.Conn, cps []*Checkpoint) error {
	tok := sha256.New()
	for _, cp := range cps {
		tok.Write(cp.Signature)
	}
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplication_token": "checkpoints:" + strconv.Itoa(len(cps)) + ":" + hex.EncodeToString(tok.Sum(nil)[:16]),
	}))
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO checkpoints (log_id, size, root_hash, ts, key_id, signature, note, compact_range)")
	if err != nil {
		return fmt.Errorf("prepare checkpoints insert: %w", err)
	}
	for _, cp := range cps {
		rng := make([]string, len(cp.Range))
		for i, h := range cp.Range {
			rng[i] = string(h)
		}
		if err := batch.Append(cp.LogID, cp.Size, string(cp.Root), cp.TS, cp.KeyID, string(cp.Signature), cp.Note, rng); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("append checkpoint: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d checkpoints (first %s at size %d): %w", len(cps), cps[0].LogID, cps[0].Size, err)
	}
	return nil
}

// checkpointRow is one row of checkpoints.
type checkpointRow struct {
	LogID     string    `ch:"log_id"`
	Size      uint64    `ch:"size"`
	RootHash  string    `ch:"root_hash"`
	TS        time.Time `ch:"ts"`
	KeyID     string    `ch:"key_id"`
	Signature string    `ch:"signature"`
	Note      string    `ch:"note"`
	Range     []string  `ch:"compact_range"`
}

func (r *checkpointRow) checkpoint() *Checkpoint {
	cp := &Checkpoint{LogID: r.LogID, Size: r.Size, Root: []byte(r.RootHash), TS: r.TS, KeyID: r.KeyID, Signature: []byte(r.Signature), Note: r.Note}
	for _, h := range r.Range {
		cp.Range = append(cp.Range, []byte(h))
	}
	return cp
}

// checkpointCols are the columns of a checkpoint without its compact range
// (only OpenLog needs that: ~log2(size) hashes per row).
const checkpointCols = "log_id, size, root_hash, ts, key_id, signature, note"

// latestCheckpoints returns up to n checkpoint rows of logID, largest size
// (then newest) first; withRange also reads their compact ranges.
func latestCheckpoints(ctx context.Context, conn driver.Conn, logID string, n int, withRange bool) ([]*Checkpoint, error) {
	cols := checkpointCols
	if withRange {
		cols += ", compact_range"
	}
	var rows []checkpointRow
	if err := conn.Select(ctx, &rows, "SELECT "+cols+" FROM checkpoints WHERE log_id = ? ORDER BY size DESC, ts DESC LIMIT ?", logID, n); err != nil {
		return nil, fmt.Errorf("read checkpoints of %s: %w", logID, err)
	}
	out := make([]*Checkpoint, len(rows))
	for i := range rows {
		out[i] = rows[i].checkpoint()
	}
	return out, nil
}

// scanLeaves streams the leaves of logID with from <= leaf_index < limit (0: no limit)
// in index order, checking that they are dense from 0 and in offset order;
// an exact duplicate row (a retry the server did not deduplicate, before
// ReplacingMergeTree merged it) is skipped, a conflicting one is
// ErrLogCorrupt.
func scanLeaves(ctx context.Context, conn driver.Conn, logID string, from, limit uint64, cols string, fn func(*leafRow) error) error {
	q := "SELECT " + cols + " FROM merkle_leaves WHERE log_id = ?"
	args := []any{logID}
	if from > 0 {
		q += " AND leaf_index >= ?"
		args = append(args, from)
	}
	if limit > 0 {
		q += " AND leaf_index < ?"
		args = append(args, limit)
	}
	rows, err := conn.Query(ctx, q+" ORDER BY leaf_index", args...)
	if err != nil {
		return fmt.Errorf("read merkle_leaves: %w", err)
	}
	defer rows.Close()
	var prev leafRow
	next := from
	for rows.Next() {
		var r leafRow
		if err := rows.ScanStruct(&r); err != nil {
			return fmt.Errorf("scan merkle_leaves: %w", err)
		}
		if next > from && r.LeafIndex == next-1 {
			if r.LeafHash != prev.LeafHash || r.SrcOffset != prev.SrcOffset {
				return fmt.Errorf("%w: two different leaves at index %d", ErrLogCorrupt, r.LeafIndex)
			}
			continue
		}
		if r.LeafIndex != next {
			return fmt.Errorf("%w: leaf %d missing", ErrLogCorrupt, next)
		}
		if next > from && r.SrcOffset <= prev.SrcOffset {
			return fmt.Errorf("%w: leaf %d has offset %d after offset %d", ErrLogCorrupt, r.LeafIndex, r.SrcOffset, prev.SrcOffset)
		}
		if len(r.LeafHash) != 32 {
			return fmt.Errorf("%w: leaf %d hash is not 32 bytes", ErrLogCorrupt, r.LeafIndex)
		}
		if err := fn(&r); err != nil {
			return err
		}
		prev, next = r, next+1
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read merkle_leaves: %w", err)
	}
	if limit > 0 && next < limit {
		return fmt.Errorf("%w: %d leaves, want %d", ErrLogCorrupt, next, limit)
	}
	return nil
}
