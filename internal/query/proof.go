package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/integrity"
)

// Proofs of the tamper-evident log (internal/integrity). Every byte field
// is standard base64 (as encoding/json writes []byte), the encoding the
// signed checkpoint note uses for its root. The note is returned verbatim:
// a client checks its ed25519 signature with the deployment's public key
// (integrity.VerifyNote), takes the root from it, and checks the proof
// with any RFC 6962 verifier (github.com/transparency-dev/merkle/proof).

// InclusionProof proves that one audit event is a leaf of a signed tree:
// proof.VerifyInclusion(rfc6962.DefaultHasher, LeafIndex, TreeSize,
// LeafHash, Proof, root of Checkpoint.Note) holds.
type InclusionProof struct {
	EventID   string `json:"event_id"`
	TenantID  string `json:"tenant_id"`
	LogID     string `json:"log_id"`
	LeafIndex uint64 `json:"leaf_index"`
	TreeSize  uint64 `json:"tree_size"`
	// LeafHash is the RFC 6962 leaf hash of the event's canonical encoding.
	LeafHash   []byte                `json:"leaf_hash"`
	Proof      [][]byte              `json:"proof"`
	Hashing    string                `json:"hashing"`
	Checkpoint *integrity.Checkpoint `json:"checkpoint"`
}

// ConsistencyProof proves that the tree of a log at FromSize is a prefix of
// the tree at ToSize: proof.VerifyConsistency(rfc6962.DefaultHasher,
// FromSize, ToSize, Proof, root of From.Note, root of To.Note) holds.
type ConsistencyProof struct {
	LogID    string                `json:"log_id"`
	FromSize uint64                `json:"from_size"`
	ToSize   uint64                `json:"to_size"`
	Proof    [][]byte              `json:"proof"`
	Hashing  string                `json:"hashing"`
	From     *integrity.Checkpoint `json:"from_checkpoint"`
	To       *integrity.Checkpoint `json:"to_checkpoint"`
}

const hashingRFC6962 = "RFC 6962 SHA-256"

// ProblemNotCommitted: the event is sealed but no (or not the requested)
// checkpoint covers it yet; retry after the next checkpoint (about a second).
const ProblemNotCommitted = "urn:agentaudit:problem:not-committed"

func (s Scope) has(tenant string) bool { return s.all || slices.Contains(s.tenants, tenant) }

// InclusionProof proves eventID against the checkpoint of its log at
// atSize, or the latest when atSize is 0.
//
// Event ids are not secrets, and integrity.InclusionProof finds the leaf by
// id alone, so the leaf's tenant is compared with the scope before anything
// is returned; an event of another tenant is "not found", exactly like an
// id that does not exist (no existence oracle, including the not-committed
// case, which is answered only after a tenant-scoped lookup).
func (s *Service) InclusionProof(ctx context.Context, sc Scope, eventID string, atSize uint64) (*InclusionProof, error) {
	id, err := uuid.Parse(eventID)
	if err != nil {
		return nil, paramErr("event_id", "not a UUID")
	}
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	res, err := integrity.InclusionProof(ctx, s.conn, id, atSize)
	switch {
	case errors.Is(err, integrity.ErrNotFound):
		return nil, errNotFound
	case errors.Is(err, integrity.ErrNotCommitted):
		ok, err := s.leafInScope(ctx, sc, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errNotFound
		}
		detail := "no checkpoint covers this event yet; retry in a few seconds"
		if atSize > 0 {
			detail = "the checkpoint of that size does not cover this event; ask for a later one"
		}
		return nil, &apiError{typ: ProblemNotCommitted, status: http.StatusConflict, detail: detail}
	case err != nil:
		return nil, fmt.Errorf("inclusion proof: %w", err)
	}
	if !sc.has(res.TenantID) {
		return nil, errNotFound
	}
	if cp := res.Checkpoint; cp != nil && cp.Origin == "" {
		cp.Origin, _, _ = strings.Cut(cp.Note, "\n")
	}
	return &InclusionProof{EventID: id.String(), TenantID: res.TenantID, LogID: res.LogID, LeafIndex: res.LeafIndex, TreeSize: res.TreeSize,
		LeafHash: res.LeafHash, Proof: nonNil(res.Proof), Hashing: hashingRFC6962, Checkpoint: res.Checkpoint}, nil
}

// leafInScope reports whether eventID has a leaf of a tenant in scope.
func (s *Service) leafInScope(ctx context.Context, sc Scope, id uuid.UUID) (bool, error) {
	var q stmt
	if err := q.tenant(sc, "tenant_id"); err != nil {
		return false, err
	}
	q.add("event_id = ?", id)
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table("merkle_leaves")+q.where(), q.args...).Scan(&n); err != nil {
		return false, fmt.Errorf("leaf of event: %w", err)
	}
	return n > 0, nil
}

// ConsistencyProof proves the checkpoint of logID at fromSize consistent
// with the one at toSize. toSize 0 is the latest checkpoint; fromSize 0 is
// the checkpoint before toSize (toSize itself when there is none). The
// proof is checked against both stored roots before it is returned.
func (s *Service) ConsistencyProof(ctx context.Context, logID string, fromSize, toSize uint64) (*ConsistencyProof, error) {
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	to, err := s.checkpoint(ctx, logID, "size = ?", toSize, toSize == 0)
	if err != nil {
		return nil, err
	}
	if to == nil {
		return nil, errNotFound
	}
	var from *integrity.Checkpoint
	switch {
	case fromSize > to.Size:
		return nil, paramErr("from_size", "must not exceed to_size (%d)", to.Size)
	case fromSize == 0:
		if from, err = s.checkpoint(ctx, logID, "size < ?", to.Size, false); err != nil {
			return nil, err
		}
		if from == nil {
			from = to
		}
	default:
		if from, err = s.checkpoint(ctx, logID, "size = ?", fromSize, false); err != nil {
			return nil, err
		}
		if from == nil {
			return nil, &apiError{typ: ProblemNotFound, status: http.StatusNotFound, param: "from_size", detail: "no checkpoint of this log at from_size"}
		}
	}
	hashes := [][]byte{}
	if from.Size != to.Size {
		if hashes, err = integrity.ConsistencyProof(ctx, s.conn, logID, from.Size, to.Size); err != nil {
			return nil, fmt.Errorf("consistency proof: %w", err)
		}
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from.Size, to.Size, hashes, from.Root, to.Root); err != nil {
		// The stored leaves do not give the signed roots: say so to the
		// operator (logged with the request id), not to the client.
		return nil, fmt.Errorf("%w: consistency %s %d -> %d: %v", integrity.ErrLogCorrupt, logID, from.Size, to.Size, err)
	}
	return &ConsistencyProof{LogID: logID, FromSize: from.Size, ToSize: to.Size, Proof: hashes, Hashing: hashingRFC6962, From: from, To: to}, nil
}

// checkpoint reads the newest checkpoint row of logID with cond on size
// (latest: ignore cond and take the largest size); nil when there is none.
// A log has one row per size unless a checkpoint was signed twice (both
// genuine, same root) or forged (the signature tells; verify names it).
func (s *Service) checkpoint(ctx context.Context, logID, cond string, size uint64, latest bool) (*integrity.Checkpoint, error) {
	var q stmt
	q.add("log_id = ?", logID)
	if !latest {
		q.add(cond, size)
	}
	rows, err := s.conn.Query(ctx, "SELECT size, root_hash, ts, key_id, signature, note FROM "+s.table("checkpoints")+q.where()+" ORDER BY size DESC, ts DESC LIMIT 1", q.args...)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	cp := &integrity.Checkpoint{LogID: logID}
	var root, sig string
	if err := rows.Scan(&cp.Size, &root, &cp.TS, &cp.KeyID, &sig, &cp.Note); err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	cp.Root, cp.Signature, cp.TS = []byte(root), []byte(sig), cp.TS.UTC()
	cp.Origin, _, _ = strings.Cut(cp.Note, "\n")
	return cp, nil
}

// ManifestCheckpoints returns the latest checkpoint of every log holding
// leaves of the scope's tenants (every log for an all-tenant scope), for
// export manifests. Logs holding none of them are not named: their sizes
// would tell other tenants' volumes.
func (s *Service) ManifestCheckpoints(ctx context.Context, sc Scope) ([]*integrity.Checkpoint, error) {
	var leaves stmt
	if err := leaves.tenant(sc, "tenant_id"); err != nil {
		return nil, err
	}
	where := ""
	if len(leaves.conds) > 0 {
		where = " WHERE log_id IN (SELECT DISTINCT log_id FROM " + s.table("merkle_leaves") + leaves.where() + ")"
	}
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	rows, err := s.conn.Query(ctx, "SELECT log_id, size, root_hash, ts, key_id, signature, note FROM "+s.table("checkpoints")+where+
		" ORDER BY log_id, size DESC, ts DESC LIMIT 1 BY log_id", leaves.args...)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	defer rows.Close()
	var out []*integrity.Checkpoint
	for rows.Next() {
		cp := &integrity.Checkpoint{}
		var root, sig string
		if err := rows.Scan(&cp.LogID, &cp.Size, &root, &cp.TS, &cp.KeyID, &sig, &cp.Note); err != nil {
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		cp.Root, cp.Signature, cp.TS = []byte(root), []byte(sig), cp.TS.UTC()
		cp.Origin, _, _ = strings.Cut(cp.Note, "\n")
		out = append(out, cp)
	}
	return out, rows.Err()
}

func nonNil(b [][]byte) [][]byte {
	if b == nil {
		return [][]byte{}
	}
	return b
}

// uintParam parses an optional non-negative integer parameter (0 if absent).
func (p *params) uintParam(name string) (uint64, error) {
	v := p.str(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, paramErr(name, "a positive integer")
	}
	return n, nil
}

func (s *Server) inclusionProof(c *gin.Context, rc *reqCtx) error {
	size, err := paramsOf(c).uintParam("size")
	if err != nil {
		return err
	}
	pr, err := s.svc.InclusionProof(c.Request.Context(), rc.scope, c.Param("event_id"), size)
	if err != nil {
		return err
	}
	rc.rows = 1
	c.JSON(http.StatusOK, pr)
	return nil
}

func (s *Server) consistencyProof(c *gin.Context, rc *reqCtx) error {
	part, err := strconv.ParseUint(c.Param("partition"), 10, 16)
	if err != nil {
		return paramErr("partition", "a partition number")
	}
	p := paramsOf(c)
	from, err := p.uintParam("from_size")
	if err != nil {
		return err
	}
	to, err := p.uintParam("to_size")
	if err != nil {
		return err
	}
	pr, err := s.svc.ConsistencyProof(c.Request.Context(), integrity.LogID(int(part)), from, to)
	if err != nil {
		return err
	}
	rc.rows = 1
	c.JSON(http.StatusOK, pr)
	return nil
}
