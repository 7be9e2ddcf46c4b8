package integrity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/event"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// PendingGrace: a row beyond its log's last sealed offset that was
	// ingested less than this long ago is reported as pending (ingest seals
	// after it writes the row), not as inserted. Default 5 minutes.
	PendingGrace time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// RowFinding names one audit_events row (or missing row) at fault.
type RowFinding struct {
	LogID     string
	LeafIndex int64 // -1: the row has no leaf
	Partition uint16
	Offset    uint64
	EventID   uuid.UUID
	TenantID  string
	// Fields that differ from the sealed event (modified rows; from the
	// stored field digests, empty when they cannot tell).
	Fields []string
}

// CheckpointFinding is a checkpoint row that does not verify.
type CheckpointFinding struct {
	LogID  string
	Size   uint64
	KeyID  string
	TS     time.Time
	Reason string
}

// LogSummary is what Verify found for one log.
type LogSummary struct {
	LogID       string
	Leaves      uint64
	Checkpoints int // valid ones
	Size        uint64
	Root        []byte // of the latest valid checkpoint
	Rows        int    // audit_events rows read
	Expired     int    // leaves whose row retention deleted
	Pending     int    // rows not sealed yet
	Unsealed    int    // rows below the first leaf's offset: stored before sealing was enabled
	Error       string // structural damage of merkle_leaves, if any
}

// Report is the outcome of Verify.
type Report struct {
	Logs     []LogSummary
	Modified []RowFinding
	// ModifiedLeaves: the row matches the stored field digests but not the
	// leaf hash, so merkle_leaves was changed, not the row (the checkpoints
	// covering the leaf are reported invalid too).
	ModifiedLeaves     []RowFinding
	Deleted            []RowFinding
	Inserted           []RowFinding
	InvalidCheckpoints []CheckpointFinding
}

// Clean reports whether no tampering was found.
func (r *Report) Clean() bool {
	if len(r.Modified)+len(r.ModifiedLeaves)+len(r.Deleted)+len(r.Inserted)+len(r.InvalidCheckpoints) > 0 {
		return false
	}
	for _, l := range r.Logs {
		if l.Error != "" {
			return false
		}
	}
	return true
}

// Verify recomputes every log from merkle_leaves and checks it against the
// checkpoints and the audit_events rows:
//
//   - every checkpoint row: its note's signature (keys), that its columns
//     say what the note says, and that its root is the root of the leaves
//     at its size; consecutive valid checkpoints must be consistent
//     (RFC 6962 consistency proof verified with proof.VerifyConsistency);
//   - every audit_events row, matched to its leaf by (src_partition,
//     src_offset): the canonical hash of the row must be the leaf hash
//     (else modified, with the changed fields named from field_digest; if
//     the row still matches the field digests, the leaf was changed); a
//     row with no leaf is inserted, except below the log's first leaf
//     (unsealed: stored before sealing was enabled, counted) and beyond
//     its last leaf when ingested less than PendingGrace ago (pending); a
//     leaf with no row is deleted unless integrity_expirations says
//     retention deleted it (expired).
//
// Rows are read without FINAL on purpose: a forged row that shares the
// sort key of a genuine one must be seen before a merge replaces it.
// Leaves and rows are streamed in offset order and merge-joined (two
// queries at once, so conn needs at least two connections); memory is
// O(checkpoints + findings), not O(events).
func Verify(ctx context.Context, conn driver.Conn, keys PublicKeys, opts VerifyOptions) (*Report, error) {
	if opts.PendingGrace == 0 {
		opts.PendingGrace = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	exp, err := loadExpirations(ctx, conn)
	if err != nil {
		return nil, err
	}
	ids, err := logIDs(ctx, conn)
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	for _, id := range ids {
		if err := verifyLog(ctx, conn, id, keys, opts, exp, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// logIDs lists the logs that have leaves, checkpoints or event rows.
func logIDs(ctx context.Context, conn driver.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT toString(log_id) FROM merkle_leaves
		UNION DISTINCT SELECT DISTINCT toString(log_id) FROM checkpoints
		UNION DISTINCT SELECT DISTINCT concat('audit_events/', toString(src_partition)) FROM audit_events`)
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("list logs: %w", err)
		}
		ids = append(ids, s)
	}
	slices.SortFunc(ids, func(a, b string) int { return cmpLogID(a, b) })
	return ids, rows.Err()
}

func cmpLogID(a, b string) int {
	pa, ea := logPartition(a)
	pb, eb := logPartition(b)
	if ea == nil && eb == nil && pa != pb {
		return pa - pb
	}
	return strings.Compare(a, b)
}

func logPartition(id string) (int, error) {
	p, ok := strings.CutPrefix(id, "audit_events/")
	if !ok {
		return 0, fmt.Errorf("log id %q: not audit_events/<partition>", id)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("log id %q: bad partition", id)
	}
	return n, nil
}

func verifyLog(ctx context.Context, conn driver.Conn, id string, keys PublicKeys, opts VerifyOptions, exp expirations, rep *Report) error {
	sum := LogSummary{LogID: id}
	cps, err := latestCheckpoints(ctx, conn, id, 1<<30, false)
	if err != nil {
		return err
	}
	slices.Reverse(cps) // ascending size
	// Valid signatures first; roots are checked during the leaf pass.
	var signed []*Checkpoint
	for _, cp := range cps {
		if err := verifyRow(cp, keys); err != nil {
			rep.InvalidCheckpoints = append(rep.InvalidCheckpoints, CheckpointFinding{LogID: id, Size: cp.Size, KeyID: cp.KeyID, TS: cp.TS, Reason: err.Error()})
			continue
		}
		signed = append(signed, cp)
	}
	// Node ids of the consistency proofs between consecutive signed sizes.
	type pair struct {
		a, b  *Checkpoint
		nodes proof.Nodes
	}
	var pairs []pair
	want := map[compact.NodeID][]byte{}
	for i := 1; i < len(signed); i++ {
		a, b := signed[i-1], signed[i]
		if a.Size == b.Size {
			continue
		}
		n, err := proof.Consistency(a.Size, b.Size)
		if err != nil {
			return err
		}
		pairs = append(pairs, pair{a, b, n})
		for _, nid := range n.IDs {
			want[nid] = nil
		}
	}
	atSize := map[uint64][]*Checkpoint{}
	for _, cp := range signed {
		atSize[cp.Size] = append(atSize[cp.Size], cp)
	}
	rootOK := map[*Checkpoint]bool{}
	checkAt := func(rng *compact.Range) {
		cs := atSize[rng.End()]
		if len(cs) == 0 {
			return
		}
		root, _ := rng.GetRootHash(nil)
		for _, cp := range cs {
			rootOK[cp] = bytes.Equal(root, cp.Root)
		}
	}
	visit := func(nid compact.NodeID, h []byte) {
		if _, ok := want[nid]; ok {
			want[nid] = bytes.Clone(h)
		}
	}
	// Leaves and rows are both read in offset order and merge-joined, so
	// memory stays O(checkpoints), not O(events).
	part, perr := logPartition(id)
	var rc *rowCursor
	if perr == nil {
		if rc, err = openRows(ctx, conn, part); err != nil {
			return err
		}
		defer rc.close()
	}
	m := &merger{id: id, part: part, rc: rc, opts: opts, now: opts.Now(), exp: exp, sum: &sum, rep: rep, firstOff: -1}
	rng := rangeFactory().NewEmptyRange(0)
	err = scanLeaves(ctx, conn, id, 0, 0, "log_id, leaf_index, src_offset, event_id, tenant_id, ts, leaf_hash, field_digest", func(r *leafRow) error {
		if err := m.leaf(r); err != nil {
			return err
		}
		if err := rng.Append([]byte(r.LeafHash), visit); err != nil {
			return err
		}
		checkAt(rng)
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrLogCorrupt) {
			sum.Error = err.Error()
		} else {
			return err
		}
	}
	if err := m.rest(); err != nil {
		return err
	}
	if perr != nil {
		sum.Error = strings.TrimSpace(sum.Error + " " + perr.Error())
	}
	sum.Leaves = rng.End()
	// goodBelow: the largest size below s whose signed root matches the
	// leaves, which localises a change to the leaves (goodBelow, s].
	goodBelow := func(s uint64) uint64 {
		var g uint64
		for _, cp := range signed {
			if cp.Size < s && cp.Size <= rng.End() && rootOK[cp] {
				g = max(g, cp.Size)
			}
		}
		return g
	}
	for _, cp := range signed {
		switch {
		case cp.Size > rng.End():
			rep.InvalidCheckpoints = append(rep.InvalidCheckpoints, CheckpointFinding{LogID: id, Size: cp.Size, KeyID: cp.KeyID, TS: cp.TS,
				Reason: fmt.Sprintf("signed size %d but merkle_leaves holds %d leaves (leaves deleted)", cp.Size, rng.End())})
		case !rootOK[cp]:
			rep.InvalidCheckpoints = append(rep.InvalidCheckpoints, CheckpointFinding{LogID: id, Size: cp.Size, KeyID: cp.KeyID, TS: cp.TS,
				Reason: "signature valid but the root of merkle_leaves at this size differs (leaves changed" + matchNote(goodBelow(cp.Size), cp.Size) + ", or a forked checkpoint)"})
		default:
			sum.Checkpoints++
			sum.Size, sum.Root = cp.Size, cp.Root
		}
	}
	for _, p := range pairs {
		if p.b.Size > rng.End() {
			continue
		}
		hashes := make([][]byte, len(p.nodes.IDs))
		for i, nid := range p.nodes.IDs {
			hashes[i] = want[nid]
		}
		pf, err := p.nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
		if err == nil {
			err = proof.VerifyConsistency(rfc6962.DefaultHasher, p.a.Size, p.b.Size, pf, p.a.Root, p.b.Root)
		}
		if err != nil {
			rep.InvalidCheckpoints = append(rep.InvalidCheckpoints, CheckpointFinding{LogID: id, Size: p.b.Size, KeyID: p.b.KeyID, TS: p.b.TS,
				Reason: fmt.Sprintf("signed history forks: not consistent with the signed checkpoint at size %d", p.a.Size)})
		}
	}

	rep.Logs = append(rep.Logs, sum)
	return nil
}

// rowCursor reads the audit_events rows of one partition in offset order.
type rowCursor struct {
	rows     driver.Rows
	ev       event.AuditEvent
	ingested time.Time
	ok       bool // ev holds the current row
}

func openRows(ctx context.Context, conn driver.Conn, part int) (*rowCursor, error) {
	rows, err := conn.Query(ctx, `SELECT event_id, ts, tenant_id, agent_id, parent_identity, token_id, token_type,
		delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id,
		policy_decision, trace_id, span_id, attributes, schema_version, src_partition, src_offset, src_index,
		ingested_at
		FROM audit_events WHERE src_partition = ? ORDER BY src_offset`, uint16(part))
	if err != nil {
		return nil, fmt.Errorf("read audit_events of partition %d: %w", part, err)
	}
	c := &rowCursor{rows: rows}
	return c, c.next()
}

// next moves to the next row; ok is false at the end.
func (c *rowCursor) next() error {
	c.ok = c.rows.Next()
	if !c.ok {
		if err := c.rows.Err(); err != nil {
			return fmt.Errorf("read audit_events: %w", err)
		}
		return nil
	}
	c.ev = event.AuditEvent{}
	ev := &c.ev
	if err := c.rows.Scan(&ev.EventID, &ev.TS, &ev.TenantID, &ev.AgentID, &ev.ParentIdentity, &ev.TokenID, &ev.TokenType,
		&ev.DelegationScope, &ev.RequiredScopes, &ev.ToolName, &ev.ToolParamsHash, &ev.Resource, &ev.ResourceTenantID,
		&ev.PolicyDecision, &ev.TraceID, &ev.SpanID, &ev.Attributes, &ev.SchemaVersion, &ev.SrcPartition, &ev.SrcOffset, &ev.SrcIndex,
		&c.ingested); err != nil {
		return fmt.Errorf("scan audit_events: %w", err)
	}
	return nil
}

func (c *rowCursor) close() { _ = c.rows.Close() }

// merger classifies rows against leaves, both in offset order.
type merger struct {
	id       string
	part     int
	rc       *rowCursor // nil: no partition, no rows
	opts     VerifyOptions
	now      time.Time
	exp      expirations
	sum      *LogSummary
	rep      *Report
	firstOff int64 // offset of the first leaf, -1 before it
	lastOff  int64 // offset of the latest leaf
	enc      leafEncoder
}

func (m *merger) finding(ev *event.AuditEvent) RowFinding {
	return RowFinding{LogID: m.id, LeafIndex: -1, Partition: ev.SrcPartition, Offset: ev.SrcOffset, EventID: ev.EventID, TenantID: ev.TenantID}
}

// noLeaf classifies the current row, which has no leaf.
func (m *merger) noLeaf(beyond bool) {
	ev := &m.rc.ev
	m.sum.Rows++
	switch {
	case m.firstOff < 0 || int64(ev.SrcOffset) < m.firstOff:
		// Sealing starts at the first offset ingest consumed with it
		// enabled; what came before cannot be verified, and is counted so
		// that a growing number shows.
		m.sum.Unsealed++
	case beyond && m.now.Sub(m.rc.ingested) >= 0 && m.now.Sub(m.rc.ingested) < m.opts.PendingGrace:
		m.sum.Pending++
	default:
		m.rep.Inserted = append(m.rep.Inserted, m.finding(ev))
	}
}

// leaf consumes the rows up to and at r's offset.
func (m *merger) leaf(r *leafRow) error {
	if m.firstOff < 0 {
		m.firstOff = int64(r.SrcOffset)
	}
	m.lastOff = int64(r.SrcOffset)
	var matched bool
	var diff []RowFinding
	for m.rc != nil && m.rc.ok && m.rc.ev.SrcOffset <= r.SrcOffset {
		ev := &m.rc.ev
		if ev.SrcOffset < r.SrcOffset {
			m.noLeaf(false)
		} else {
			m.sum.Rows++
			h, d := m.enc.leafAndDigest(ev)
			if bytes.Equal(h, []byte(r.LeafHash)) {
				matched = true
			} else {
				f := m.finding(ev)
				f.LeafIndex = int64(r.LeafIndex)
				f.Fields = changedFields([]byte(r.FieldDigest), d)
				diff = append(diff, f)
			}
		}
		if err := m.rc.next(); err != nil {
			return err
		}
	}
	switch {
	case matched:
		// The genuine row is there; other rows at this offset are forged.
		for _, f := range diff {
			f.LeafIndex, f.Fields = -1, nil
			m.rep.Inserted = append(m.rep.Inserted, f)
		}
	case len(diff) > 0:
		for _, f := range diff {
			if len(f.Fields) == 0 && len(r.FieldDigest) == len(fieldNames)*FieldDigestSize {
				// The row matches the digests sealed with the leaf but not
				// the leaf hash: the leaf was changed, not the row.
				m.rep.ModifiedLeaves = append(m.rep.ModifiedLeaves, f)
				continue
			}
			m.rep.Modified = append(m.rep.Modified, f)
		}
	case m.exp.covers(r.TenantID, r.TS):
		m.sum.Expired++
	default:
		m.rep.Deleted = append(m.rep.Deleted, RowFinding{LogID: m.id, LeafIndex: int64(r.LeafIndex), Partition: uint16(m.part), Offset: r.SrcOffset, EventID: r.EventID, TenantID: r.TenantID})
	}
	return nil
}

// rest consumes the rows after the last leaf.
func (m *merger) rest() error {
	for m.rc != nil && m.rc.ok {
		m.noLeaf(true)
		if err := m.rc.next(); err != nil {
			return err
		}
	}
	return nil
}

// expirations: per tenant ("" = all) the latest retention cut-off.
type expirations map[string]time.Time

func (e expirations) covers(tenant string, ts time.Time) bool {
	return ts.Before(e[""]) || ts.Before(e[tenant])
}

func loadExpirations(ctx context.Context, conn driver.Conn) (expirations, error) {
	rows, err := conn.Query(ctx, "SELECT toString(tenant_id), max(before) FROM integrity_expirations GROUP BY tenant_id")
	if err != nil {
		return nil, fmt.Errorf("read integrity_expirations: %w", err)
	}
	defer rows.Close()
	out := expirations{}
	for rows.Next() {
		var t string
		var before time.Time
		if err := rows.Scan(&t, &before); err != nil {
			return nil, fmt.Errorf("read integrity_expirations: %w", err)
		}
		out[t] = before
	}
	return out, rows.Err()
}

// RecordExpiry records that retention deleted (or is about to delete) the
// audit events of tenant ("" = every tenant) with ts < before, so Verify
// reports their leaves as expired, not deleted. Call it before deleting.
// Leaves and checkpoints are kept, so the remaining tree still verifies.
func RecordExpiry(ctx context.Context, conn driver.Conn, tenant string, before time.Time, reason string) error {
	// A batch keeps DateTime64(9) exact; a bound ? parameter would be
	// rounded to seconds.
	wrap := func(err error) error {
		return fmt.Errorf("record expiry of %q before %s: %w", tenant, before.UTC().Format(time.RFC3339Nano), err)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO integrity_expirations (tenant_id, before, reason)")
	if err != nil {
		return wrap(err)
	}
	if err := b.Append(tenant, before.UTC(), reason); err != nil {
		_ = b.Abort()
		return wrap(err)
	}
	if err := b.Send(); err != nil {
		return wrap(err)
	}
	return nil
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) {
	for _, l := range r.Logs {
		fmt.Fprintf(w, "log %s: %d leaves, %d rows, %d valid checkpoints, latest size %d root %s",
			l.LogID, l.Leaves, l.Rows, l.Checkpoints, l.Size, hex.EncodeToString(l.Root))
		if l.Expired > 0 {
			fmt.Fprintf(w, ", %d expired by retention", l.Expired)
		}
		if l.Pending > 0 {
			fmt.Fprintf(w, ", %d rows pending sealing", l.Pending)
		}
		if l.Unsealed > 0 {
			fmt.Fprintf(w, ", %d rows stored before sealing began (unverifiable)", l.Unsealed)
		}
		fmt.Fprintln(w)
		if l.Error != "" {
			fmt.Fprintf(w, "  DAMAGED merkle_leaves: %s\n", l.Error)
		}
	}
	row := func(kind string, f RowFinding) {
		fmt.Fprintf(w, "%s row: event_id=%s tenant_id=%q partition=%d offset=%d", kind, f.EventID, f.TenantID, f.Partition, f.Offset)
		if f.LeafIndex >= 0 {
			fmt.Fprintf(w, " leaf=%s#%d", f.LogID, f.LeafIndex)
		}
		if len(f.Fields) > 0 {
			fmt.Fprintf(w, " fields=%s", strings.Join(f.Fields, ","))
		}
		fmt.Fprintln(w)
	}
	for _, f := range r.Modified {
		row("MODIFIED", f)
	}
	for _, f := range r.ModifiedLeaves {
		row("MODIFIED LEAF of", f)
	}
	for _, f := range r.Deleted {
		row("DELETED", f)
	}
	for _, f := range r.Inserted {
		row("INSERTED", f)
	}
	for _, c := range r.InvalidCheckpoints {
		fmt.Fprintf(w, "INVALID checkpoint: log=%s size=%d key_id=%s ts=%s: %s\n", c.LogID, c.Size, c.KeyID, c.TS.UTC().Format(time.RFC3339Nano), c.Reason)
	}
	if r.Clean() {
		fmt.Fprintln(w, "OK: no tampering found")
	} else {
		fmt.Fprintf(w, "TAMPERING: %d modified, %d deleted, %d inserted rows, %d modified leaves, %d invalid checkpoints\n",
			len(r.Modified), len(r.Deleted), len(r.Inserted), len(r.ModifiedLeaves), len(r.InvalidCheckpoints))
	}
}

func matchNote(good, size uint64) string {
	if good == 0 {
		return fmt.Sprintf(" among the first %d leaves", size)
	}
	return fmt.Sprintf(" among leaves %d..%d: the checkpoint at size %d matches", good, size-1, good)
}
