package integrity

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Errors of the proof functions.
var (
	ErrNotFound     = errors.New("not found")
	ErrNotCommitted = errors.New("no checkpoint covers the leaf yet")
)

// InclusionResult proves that an event's leaf is in a checkpointed tree:
// proof.VerifyInclusion(rfc6962.DefaultHasher, LeafIndex, TreeSize,
// LeafHash, Proof, Checkpoint.Root) holds, and Checkpoint.Note is signed.
//
// TenantID is the event's tenant as sealed: the query API must check it
// against the principal's tenants before returning anything (event ids are
// not secrets). JSON byte fields are base64.
type InclusionResult struct {
	LogID      string      `json:"log_id"`
	TenantID   string      `json:"-"`
	LeafIndex  uint64      `json:"leaf_index"`
	TreeSize   uint64      `json:"tree_size"`
	LeafHash   []byte      `json:"leaf_hash"`
	Proof      [][]byte    `json:"proof"`
	Checkpoint *Checkpoint `json:"checkpoint"`
}

// InclusionProof proves the leaf of eventID against the checkpoint of its
// log at atSize, or the latest checkpoint when atSize is 0. The proof is
// computed from merkle_leaves and checked against the stored checkpoint's
// root before it is returned (ErrLogCorrupt if they disagree). The caller
// (an auditor) verifies the checkpoint's signature with VerifyNote and the
// proof with proof.VerifyInclusion.
func InclusionProof(ctx context.Context, conn driver.Conn, eventID uuid.UUID, atSize uint64) (*InclusionResult, error) {
	var leaves []leafRow
	if err := conn.Select(ctx, &leaves, "SELECT log_id, leaf_index, tenant_id, leaf_hash FROM merkle_leaves WHERE event_id = ? ORDER BY log_id, leaf_index LIMIT 1", eventID); err != nil {
		return nil, fmt.Errorf("find leaf of event %s: %w", eventID, err)
	}
	if len(leaves) == 0 {
		return nil, fmt.Errorf("leaf of event %s: %w", eventID, ErrNotFound)
	}
	lf := leaves[0]
	cp, err := checkpointAt(ctx, conn, lf.LogID, atSize)
	if err != nil {
		return nil, err
	}
	if lf.LeafIndex >= cp.Size {
		return nil, fmt.Errorf("event %s is leaf %d of %s, checkpoint has size %d: %w", eventID, lf.LeafIndex, lf.LogID, cp.Size, ErrNotCommitted)
	}
	nodes, err := proof.Inclusion(lf.LeafIndex, cp.Size)
	if err != nil {
		return nil, err
	}
	hashes, err := proofHashes(ctx, conn, lf.LogID, cp.Size, nodes)
	if err != nil {
		return nil, err
	}
	res := &InclusionResult{LogID: lf.LogID, TenantID: lf.TenantID, LeafIndex: lf.LeafIndex, TreeSize: cp.Size, LeafHash: []byte(lf.LeafHash), Proof: hashes, Checkpoint: cp}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, res.LeafIndex, res.TreeSize, res.LeafHash, res.Proof, cp.Root); err != nil {
		return nil, fmt.Errorf("%w: inclusion of leaf %d of %s: %v", ErrLogCorrupt, lf.LeafIndex, lf.LogID, err)
	}
	return res, nil
}

// ConsistencyProof proves that the tree of logID at size1 is a prefix of
// the tree at size2 (RFC 6962 consistency proof, computed from
// merkle_leaves); verify with proof.VerifyConsistency against the roots of
// the two checkpoints.
func ConsistencyProof(ctx context.Context, conn driver.Conn, logID string, size1, size2 uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return proofHashes(ctx, conn, logID, size2, nodes)
}

// checkpointAt returns the checkpoint row of logID at size (0: the largest).
func checkpointAt(ctx context.Context, conn driver.Conn, logID string, size uint64) (*Checkpoint, error) {
	q := "SELECT " + checkpointCols + " FROM checkpoints WHERE log_id = ?"
	args := []any{logID}
	if size > 0 {
		q += " AND size = ?"
		args = append(args, size)
	}
	var rows []checkpointRow
	if err := conn.Select(ctx, &rows, q+" ORDER BY size DESC, ts DESC LIMIT 1", args...); err != nil {
		return nil, fmt.Errorf("read checkpoint of %s: %w", logID, err)
	}
	if len(rows) == 0 {
		if size == 0 {
			return nil, fmt.Errorf("checkpoint of %s: %w", logID, ErrNotCommitted)
		}
		return nil, fmt.Errorf("checkpoint of %s at size %d: %w", logID, size, ErrNotFound)
	}
	return rows[0].checkpoint(), nil
}

// proofHashes reads the leaves [0, size) of logID and returns the proof
// for nodes: the node hashes are collected by the compact range's visitor
// while the leaves are appended, then Rehash folds the ephemeral node.
func proofHashes(ctx context.Context, conn driver.Conn, logID string, size uint64, nodes proof.Nodes) ([][]byte, error) {
	want := make(map[compact.NodeID]int, len(nodes.IDs))
	for i, id := range nodes.IDs {
		want[id] = i
	}
	got := make([][]byte, len(nodes.IDs))
	visit := func(id compact.NodeID, h []byte) {
		if i, ok := want[id]; ok {
			got[i] = bytes.Clone(h)
		}
	}
	rng := rangeFactory().NewEmptyRange(0)
	err := scanLeaves(ctx, conn, logID, 0, size, "leaf_index, src_offset, leaf_hash", func(r *leafRow) error {
		return rng.Append([]byte(r.LeafHash), visit)
	})
	if err != nil {
		return nil, fmt.Errorf("proof over %s: %w", logID, err)
	}
	if rng.End() != size {
		return nil, fmt.Errorf("proof over %s: %w: %d leaves, want %d", logID, ErrLogCorrupt, rng.End(), size)
	}
	for i, h := range got {
		if h == nil {
			return nil, fmt.Errorf("proof over %s: node %+v not computed", logID, nodes.IDs[i])
		}
	}
	return nodes.Rehash(got, rfc6962.DefaultHasher.HashChildren)
}
