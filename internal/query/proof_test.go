package query

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/integrity"
)

// testSigner returns an integrity signer with a fresh ed25519 key.
func testSigner(t *testing.T) *integrity.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := integrity.NewSigner(integrity.Config{Enabled: true, Key: config.Secret(base64.StdEncoding.EncodeToString(priv.Seed())), Origin: "test.example", CheckpointInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sealedLog is a Merkle log built the way ingest builds it.
type sealedLog struct {
	log    *integrity.Log
	events []*event.AuditEvent // in leaf order
	next   int64               // next offset
}

// openLog opens the log of partition on conn's database.
func openLog(t *testing.T, conn driver.Conn, signer *integrity.Signer, partition int) *sealedLog {
	t.Helper()
	l, err := integrity.OpenLog(context.Background(), conn, signer, partition)
	if err != nil {
		t.Fatal(err)
	}
	return &sealedLog{log: l}
}

// add makes n audit events, tenants taking turns by offset, stores them in
// audit_events when store is set (as ingest does, before sealing), appends
// them to the log and, with checkpoint, signs a checkpoint of the new size.
func (sl *sealedLog) add(t *testing.T, conn driver.Conn, db string, tenants []string, n int, store, checkpoint bool) []*event.AuditEvent {
	t.Helper()
	ctx := context.Background()
	var batch []integrity.Sealed
	var out []*event.AuditEvent
	for range n {
		off := sl.next
		sl.next++
		tenant := tenants[int(off)%len(tenants)] // by offset: leaf parity names the tenant
		ev := &event.AuditEvent{
			EventID: uuid.New(), TS: base.Add(time.Duration(off) * time.Second), TenantID: tenant, AgentID: "agent-sealed",
			ParentIdentity: "alice", TokenID: "tok-sealed", TokenType: "oauth", DelegationScope: []string{"crm:read"},
			RequiredScopes: []string{"crm:read"}, ToolName: "crm.lookup", ToolParamsHash: strings.Repeat("cd", 32),
			Resource: fmt.Sprintf("crm://sealed/%d", off), ResourceTenantID: tenant, PolicyDecision: "allow",
			TraceID: "trace-sealed", SpanID: fmt.Sprintf("span-sealed-%d", off), Attributes: map[string]string{"n": fmt.Sprint(off)},
			SchemaVersion: "1", SrcPartition: uint16(partitionOf(t, sl.log)), SrcOffset: uint64(off),
		}
		batch = append(batch, integrity.Sealed{Offset: off, Event: ev})
		out = append(out, ev)
	}
	if store {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+`.audit_events (event_id, ts, tenant_id, agent_id, parent_identity, token_id,
			token_type, delegation_scope, required_scopes, tool_name, tool_params_hash, resource, resource_tenant_id, policy_decision,
			trace_id, span_id, attributes, schema_version, src_partition, src_offset, src_index)`)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range batch {
			if err := b.AppendStruct(s.Event); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	if err := sl.log.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if checkpoint {
		if cp, err := sl.log.Checkpoint(ctx, true); err != nil || cp == nil {
			t.Fatalf("checkpoint: %v, %v", cp, err)
		}
	}
	sl.events = append(sl.events, out...)
	return out
}

func partitionOf(t *testing.T, l *integrity.Log) int {
	var p int
	if _, err := fmt.Sscanf(l.ID(), "audit_events/%d", &p); err != nil {
		t.Fatalf("log id %q: %v", l.ID(), err)
	}
	return p
}

// verifiedNote checks a checkpoint note's signature with the deployment's
// public keys, as an auditor does, and returns what it says.
func verifiedNote(t *testing.T, signer *integrity.Signer, note string) *integrity.Checkpoint {
	t.Helper()
	cp, err := integrity.VerifyNote(note, signer.PublicKeys())
	if err != nil {
		t.Fatalf("checkpoint note does not verify: %v\n%s", err, note)
	}
	return cp
}

// TestInclusionProofThroughTheAPIVerifiesIndependently builds one log
// holding two tenants' events (a log is a Kafka partition, shared), asks the
// API for proofs and checks them as an outside auditor would: the note's
// ed25519 signature with the public key only, then the RFC 6962 proof with
// transparency-dev/merkle against the root in the signed note, and the leaf
// hash against the event the auditor holds.
func TestInclusionProofThroughTheAPIVerifiesIndependently(t *testing.T) {
	e := newEnv(t, nil)
	signer := testSigner(t)
	other := testSigner(t)
	sl := openLog(t, e.conn, signer, 0)
	for range 3 { // checkpoints at 7, 14, 21
		sl.add(t, e.conn, e.db, []string{"tenant-a", "tenant-b"}, 7, true, true)
	}
	pending := sl.add(t, e.conn, e.db, []string{"tenant-a", "tenant-b"}, 2, true, false) // sealed, no checkpoint yet

	type proofBody struct {
		InclusionProof
		Checkpoint struct {
			Note string `json:"note"`
			Size uint64 `json:"size"`
		} `json:"checkpoint"`
	}
	prove := func(who string, ev *event.AuditEvent, qs string) (int, proofBody, string) {
		t.Helper()
		var pb proofBody
		path := "/v1/integrity/events/" + ev.EventID.String() + "/proof" + qs
		code := e.getJSON(who, path, &pb)
		_, body, _ := e.get(who, path)
		return code, pb, string(body)
	}
	check := func(who string, idx int, qs string, wantSize uint64) {
		t.Helper()
		ev := sl.events[idx]
		code, pb, body := prove(who, ev, qs)
		if code != http.StatusOK {
			t.Fatalf("proof of leaf %d as %s: %d %s", idx, who, code, body)
		}
		cp := verifiedNote(t, signer, pb.Checkpoint.Note)
		if _, err := integrity.VerifyNote(pb.Checkpoint.Note, other.PublicKeys()); err == nil {
			t.Fatal("the note verifies with an unrelated key")
		}
		if cp.Size != wantSize || pb.TreeSize != wantSize || cp.LogID != sl.log.ID() || pb.LogID != sl.log.ID() {
			t.Fatalf("leaf %d: note size %d log %s, body tree_size %d log %s; want size %d of %s", idx, cp.Size, cp.LogID, pb.TreeSize, pb.LogID, wantSize, sl.log.ID())
		}
		if pb.LeafIndex != uint64(idx) || pb.TenantID != ev.TenantID || pb.EventID != ev.EventID.String() {
			t.Fatalf("leaf %d: body says index %d tenant %s event %s", idx, pb.LeafIndex, pb.TenantID, pb.EventID)
		}
		// The leaf is the auditor's own copy of the event, hashed.
		leaf := integrity.LeafHash(ev)
		if string(leaf) != string(pb.LeafHash) {
			t.Fatalf("leaf %d: leaf_hash is not the hash of the event", idx)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, pb.LeafIndex, cp.Size, leaf, pb.Proof, cp.Root); err != nil {
			t.Fatalf("leaf %d: inclusion proof does not verify against the signed root: %v", idx, err)
		}
		// A proof is evidence only if a wrong one fails.
		if len(pb.Proof) > 0 {
			bad := append([][]byte(nil), pb.Proof...)
			bad[0] = append([]byte(nil), bad[0]...)
			bad[0][0] ^= 1
			if proof.VerifyInclusion(rfc6962.DefaultHasher, pb.LeafIndex, cp.Size, leaf, bad, cp.Root) == nil {
				t.Fatalf("leaf %d: a corrupted proof verifies", idx)
			}
		}
		if proof.VerifyInclusion(rfc6962.DefaultHasher, pb.LeafIndex, cp.Size, integrity.LeafHash(sl.events[(idx+1)%21]), pb.Proof, cp.Root) == nil {
			t.Fatalf("leaf %d: the proof verifies another event", idx)
		}
	}
	// tenant-a's events are the even leaves: every one against the latest
	// checkpoint, and against an older one.
	for i := 0; i < 21; i += 2 {
		check("auditor-a", i, "", 21)
	}
	check("auditor-a", 4, "?size=7", 7)
	check("auditor-a", 12, "?size=14", 14)
	check("auditor-b", 1, "", 21)
	check("admin-all", 19, "", 21)

	problem := func(who string, ev *event.AuditEvent, qs string, wantCode int, wantType string) {
		t.Helper()
		code, _, body := prove(who, ev, qs)
		if code != wantCode || !strings.Contains(body, wantType) || strings.Contains(body, "tenant-b") {
			t.Errorf("%s %s%s: %d %s; want %d %s", who, ev.EventID, qs, code, body, wantCode, wantType)
		}
	}
	// Another tenant's event in the same log: not found, never a proof.
	problem("auditor-a", sl.events[1], "", http.StatusNotFound, ProblemNotFound)
	problem("admin-a", sl.events[3], "", http.StatusNotFound, ProblemNotFound)
	problem("auditor-a", sl.events[1], "?tenant=tenant-b", http.StatusForbidden, ProblemTenantDenied)
	// Sealed but not yet checkpointed: 409 for its tenant, 404 for others
	// (no existence oracle).
	problem("auditor-a", pending[1], "", http.StatusConflict, ProblemNotCommitted) // leaf 22
	problem("auditor-a", pending[0], "", http.StatusNotFound, ProblemNotFound)     // leaf 21, tenant-b
	// A checkpoint that does not cover the leaf, one that does not exist.
	problem("auditor-a", sl.events[16], "?size=14", http.StatusConflict, ProblemNotCommitted)
	problem("auditor-a", sl.events[2], "?size=8", http.StatusNotFound, ProblemNotFound)
	problem("auditor-a", sl.events[2], "?size=0", http.StatusBadRequest, ProblemInvalidParam)
	problem("auditor-a", &event.AuditEvent{EventID: uuid.New()}, "", http.StatusNotFound, ProblemNotFound)
	if code, body, _ := e.get("auditor-a", "/v1/integrity/events/not-a-uuid/proof"); code != http.StatusBadRequest || !strings.Contains(string(body), ProblemInvalidParam) {
		t.Errorf("non-UUID event id: %d %s", code, body)
	}
	// Once the next checkpoint is signed, the pending event is provable.
	if _, err := sl.log.Checkpoint(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	check("auditor-a", 22, "", 23)
}

// TestConsistencyProofThroughTheAPI: an auditor who kept an old signed
// checkpoint asks whether the log at a later checkpoint still extends it.
func TestConsistencyProofThroughTheAPI(t *testing.T) {
	e := newEnv(t, nil)
	signer := testSigner(t)
	sl := openLog(t, e.conn, signer, 3)
	for _, n := range []int{5, 6, 1, 9} { // checkpoints at 5, 11, 12, 21
		sl.add(t, e.conn, e.db, []string{"tenant-a", "tenant-b"}, n, true, true)
	}
	type body struct {
		ConsistencyProof
		From struct {
			Note string `json:"note"`
		} `json:"from_checkpoint"`
		To struct {
			Note string `json:"note"`
		} `json:"to_checkpoint"`
	}
	const route = "/v1/integrity/logs/audit_events/3/consistency"
	check := func(qs string, wantFrom, wantTo uint64) {
		t.Helper()
		var b body
		if code := e.getJSON("admin-a", route+qs, &b); code != http.StatusOK {
			_, raw, _ := e.get("admin-a", route+qs)
			t.Fatalf("%s: %d %s", qs, code, raw)
		}
		from, to := verifiedNote(t, signer, b.From.Note), verifiedNote(t, signer, b.To.Note)
		if from.Size != wantFrom || to.Size != wantTo || b.FromSize != wantFrom || b.ToSize != wantTo || b.LogID != "audit_events/3" || to.LogID != "audit_events/3" {
			t.Fatalf("%s: sizes %d -> %d (body %d -> %d, log %s); want %d -> %d", qs, from.Size, to.Size, b.FromSize, b.ToSize, b.LogID, wantFrom, wantTo)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from.Size, to.Size, b.Proof, from.Root, to.Root); err != nil {
			t.Fatalf("%s: consistency proof does not verify against the signed roots: %v", qs, err)
		}
		if from.Size < to.Size {
			if proof.VerifyConsistency(rfc6962.DefaultHasher, from.Size, to.Size, b.Proof, to.Root, to.Root) == nil {
				t.Fatalf("%s: the proof also verifies a wrong old root", qs)
			}
		}
	}
	check("?from_size=5&to_size=21", 5, 21)
	check("?from_size=11&to_size=12", 11, 12)
	check("?from_size=5", 5, 21)
	check("", 12, 21) // the latest checkpoint against the one before it
	check("?to_size=11", 5, 11)
	check("?from_size=12&to_size=12", 12, 12)

	for _, c := range []struct {
		who, path string
		code      int
		typ       string
	}{
		{"auditor-a", route, http.StatusForbidden, ProblemForbidden},
		{"admin-a", route + "?from_size=6&to_size=21", http.StatusNotFound, ProblemNotFound},
		{"admin-a", route + "?from_size=21&to_size=12", http.StatusBadRequest, ProblemInvalidParam},
		{"admin-a", route + "?to_size=20", http.StatusNotFound, ProblemNotFound},
		{"admin-a", "/v1/integrity/logs/audit_events/4/consistency", http.StatusNotFound, ProblemNotFound},
		{"admin-a", "/v1/integrity/logs/audit_events/x/consistency", http.StatusBadRequest, ProblemInvalidParam},
		{"admin-a", route + "?from_size=-1", http.StatusBadRequest, ProblemInvalidParam},
	} {
		if code, b, _ := e.get(c.who, c.path); code != c.code || !strings.Contains(string(b), c.typ) {
			t.Errorf("%s as %s: %d %s; want %d %s", c.path, c.who, code, b, c.code, c.typ)
		}
	}
}
