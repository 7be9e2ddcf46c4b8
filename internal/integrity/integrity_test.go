package integrity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentaudit/agentaudit/internal/event"
)

func TestCanonicalIsInjectiveAndNamesFields(t *testing.T) {
	evs := simEvents(t, 5, 1)[0]
	ev := *evs[0].Event
	base := Canonical(&ev)
	if !strings.HasPrefix(string(base), `{"agent_id":`) || !strings.Contains(string(base), `"leaf_format":"`+LeafFormat+`","parent_identity"`) {
		t.Fatalf("unexpected canonical form: %s", base)
	}
	// Each change of a stored field changes the leaf and is named.
	cases := map[string]func(e *event.AuditEvent){
		"agent_id":         func(e *event.AuditEvent) { e.AgentID += "x" },
		"attributes":       func(e *event.AuditEvent) { e.Attributes = map[string]string{"k": "v"} },
		"delegation_scope": func(e *event.AuditEvent) { e.DelegationScope = append(slices.Clone(e.DelegationScope), "admin") },
		"ts":               func(e *event.AuditEvent) { e.TS = e.TS.Add(time.Nanosecond) },
		"src_offset":       func(e *event.AuditEvent) { e.SrcOffset++ },
		"policy_decision":  func(e *event.AuditEvent) { e.PolicyDecision = "deny" },
		"tool_params_hash": func(e *event.AuditEvent) { e.ToolParamsHash = "\xff\xfe" }, // invalid UTF-8 stays distinct
	}
	for field, change := range cases {
		m := ev
		change(&m)
		if bytes.Equal(LeafHash(&m), LeafHash(&ev)) {
			t.Errorf("%s: leaf hash unchanged", field)
		}
		if got := changedFields(FieldDigest(&ev), FieldDigest(&m)); !slices.Equal(got, []string{field}) {
			t.Errorf("%s: changed fields %v", field, got)
		}
	}
	a, b := ev, ev
	a.ToolParamsHash, b.ToolParamsHash = "\xff", "\xfe" // both become U+FFFD under plain encoding/json
	if bytes.Equal(Canonical(&a), Canonical(&b)) {
		t.Error("invalid UTF-8 strings collide")
	}
	// nil and empty collections are the same stored value.
	c, d := ev, ev
	c.Attributes, d.Attributes = nil, map[string]string{}
	c.RequiredScopes, d.RequiredScopes = nil, []string{}
	if !bytes.Equal(Canonical(&c), Canonical(&d)) {
		t.Error("nil and empty encode differently")
	}
}

func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "a\"b", "back\\slash", "<tag>&", "tab\there", "\x00\x1f", "caf\u00e9", "line\u2028sep", "emoji \U0001F600", "db://orders?x=1"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
}

func TestKeysAndRotation(t *testing.T) {
	oldSeed, newSeed := seedLine(t), seedLine(t)
	old := newSigner(t, oldSeed)
	cp := old.sign("audit_events/0", 3, bytes.Repeat([]byte{1}, 32), time.Now())
	// Rotation: the new key signs, the old one stays known.
	rot := newSigner(t, newSeed+"\n"+oldSeed+"\n")
	if rot.KeyID() == old.KeyID() || len(rot.PublicKeys()) != 2 {
		t.Fatalf("rotation: key id %s, %d keys", rot.KeyID(), len(rot.PublicKeys()))
	}
	if _, err := VerifyNote(cp.Note, rot.PublicKeys()); err != nil {
		t.Fatalf("old checkpoint with rotated keys: %v", err)
	}
	cp2 := rot.sign("audit_events/0", 4, bytes.Repeat([]byte{2}, 32), time.Now())
	if _, err := VerifyNote(cp2.Note, old.PublicKeys()); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("new checkpoint with only the old key: %v", err)
	}
	// Public keys round-trip; PEM private and public keys parse.
	pub, err := ParsePublicKeys(MarshalPublicKeys(rot.PublicKeys()))
	if err != nil || len(pub) != 2 {
		t.Fatalf("parse marshalled keys: %v %d", err, len(pub))
	}
	got, err := VerifyNote(cp2.Note, pub)
	if err != nil || got.Size != 4 || got.LogID != "audit_events/0" || got.KeyID != rot.KeyID() {
		t.Fatalf("verify with parsed keys: %+v %v", got, err)
	}
	pk, sk, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(sk)
	pder, _ := x509.MarshalPKIXPublicKey(pk)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	ps := newSigner(t, pemText)
	if ps.KeyID() != KeyID(pk) {
		t.Fatalf("PEM key id %s, want %s", ps.KeyID(), KeyID(pk))
	}
	pub, err = ParsePublicKeys(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder})))
	if err != nil || pub[KeyID(pk)] == nil {
		t.Fatalf("PEM public key: %v", err)
	}
	// Errors never echo key material.
	bad := Config{Enabled: true, Key: "c2VjcmV0LXNlY3JldA==", Origin: "x"}
	if err := bad.Validate(); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("bad key: %v", err)
	}
	if err := (&Config{Enabled: true, Origin: "x"}).Validate(); err == nil {
		t.Fatal("enabled without key validated")
	}
	// A tampered note fails.
	forged := strings.Replace(cp2.Note, "\n4\n", "\n5\n", 1)
	if _, err := VerifyNote(forged, rot.PublicKeys()); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("forged note: %v", err)
	}
}

// expectedRoot computes the root over evs independently of any Log.
func expectedRoot(t *testing.T, evs []Sealed) []byte {
	rng := rangeFactory().NewEmptyRange(0)
	for _, s := range evs {
		if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(Canonical(s.Event)), nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestCrashAndRedeliveryGiveTheSameTree(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	evs := simEvents(t, 60, 1)[0]
	if len(evs) < 40 {
		t.Fatalf("only %d events", len(evs))
	}
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil || l.LastOffset() != -1 || l.Size() != 0 {
		t.Fatalf("empty log: %v last=%d", err, l.LastOffset())
	}
	// Batch 1 sealed and checkpointed.
	seal(t, l, evs[:10], 10)
	// Batch 2: leaves inserted, then "crash" before the checkpoint.
	if err := l.Append(ctx, evs[10:20]); err != nil {
		t.Fatal(err)
	}
	// Another owner opening now sees batch 2 sealed.
	z, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	if z.LastOffset() != evs[19].Offset {
		t.Fatalf("reopened last offset %d, want %d", z.LastOffset(), evs[19].Offset)
	}
	// Restart: Kafka redelivers from the committed offset (batch 2 again,
	// overlapping batch 3).
	l2, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Append(ctx, evs[12:30]); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.Checkpoint(ctx, false); err != nil { // interval counts from the last stored checkpoint
		t.Fatal(err)
	}
	// Crash right after the checkpoint; then the rest.
	l3, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	seal(t, l3, evs[25:], 7)
	if want := expectedRoot(t, evs); !bytes.Equal(l3.Root(), want) || l3.Size() != uint64(len(evs)) {
		t.Fatalf("size %d root %x, want %d %x", l3.Size(), l3.Root(), len(evs), want)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM merkle_leaves").Scan(&n); err != nil || n != uint64(len(evs)) {
		t.Fatalf("merkle_leaves rows %d, want %d (%v)", n, len(evs), err)
	}
	// Retrying an append whose insert landed but whose ack was lost: a
	// Log with the old state inserts the same block, which the server
	// deduplicates.
	l4, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	stale := &Log{conn: l4.conn, signer: l4.signer, id: l4.id, partition: l4.partition, now: l4.now, rng: rangeFactory().NewEmptyRange(0), lastOff: -1}
	if err := stale.Append(ctx, evs[:10]); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM merkle_leaves").Scan(&n); err != nil || n != uint64(len(evs)) {
		t.Fatalf("after retried insert: merkle_leaves rows %d, want %d (%v)", n, len(evs), err)
	}
	// OpenLog resumes from the latest checkpoint's compact range: it does
	// not need the leaves before it...
	if err := conn.Exec(ctx, "ALTER TABLE merkle_leaves DELETE WHERE leaf_index = 0 SETTINGS mutations_sync = 2"); err != nil {
		t.Fatal(err)
	}
	l5, err := OpenLog(ctx, conn, signer, 0)
	if err != nil || !bytes.Equal(l5.Root(), l3.Root()) || l5.LastOffset() != l3.LastOffset() {
		t.Fatalf("resume from checkpoint: %v", err)
	}
	// ...and a compact range that does not give the signed root is not
	// trusted: OpenLog falls back to reading every leaf and finds the gap.
	if err := conn.Exec(ctx, "ALTER TABLE checkpoints UPDATE compact_range = arrayMap(h -> unhex(repeat('00', 32)), compact_range) WHERE 1 SETTINGS mutations_sync = 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLog(ctx, conn, signer, 0); !errors.Is(err, ErrLogCorrupt) {
		t.Fatalf("forged compact range and missing leaf: %v", err)
	}
	// Out-of-order input is refused.
	if err := l4.Append(ctx, []Sealed{{Offset: evs[len(evs)-1].Offset + 5, Event: evs[0].Event}}); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("mismatched offset: %v", err)
	}
}

func TestInclusionAndConsistencyProofs(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	evs := simEvents(t, 40, 1)[0]
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	seal(t, l, evs, 9) // several checkpoints
	keys := signer.PublicKeys()
	for _, i := range []int{0, 1, len(evs) / 2, len(evs) - 1} {
		ev := evs[i].Event
		res, err := InclusionProof(ctx, conn, ev.EventID, 0)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		// Independent check: signature first, then the proof against the
		// signed root, with a leaf hash recomputed from the event itself.
		cp, err := VerifyNote(res.Checkpoint.Note, keys)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != res.TreeSize || res.LeafIndex != uint64(i) || res.TenantID != ev.TenantID {
			t.Fatalf("event %d: size %d/%d index %d", i, cp.Size, res.TreeSize, res.LeafIndex)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, res.LeafIndex, cp.Size, LeafHash(ev), res.Proof, cp.Root); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		// A different event's hash does not verify with this proof.
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, res.LeafIndex, cp.Size, LeafHash(evs[(i+1)%len(evs)].Event), res.Proof, cp.Root); err == nil {
			t.Fatal("proof verified the wrong leaf")
		}
	}
	// At a given earlier checkpoint.
	res, err := InclusionProof(ctx, conn, evs[3].Event.EventID, 9)
	if err != nil || res.TreeSize != 9 {
		t.Fatalf("at size 9: %+v %v", res, err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 3, 9, LeafHash(evs[3].Event), res.Proof, res.Checkpoint.Root); err != nil {
		t.Fatal(err)
	}
	if _, err := InclusionProof(ctx, conn, evs[10].Event.EventID, 9); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("leaf beyond checkpoint: %v", err)
	}
	// Consistency between two signed checkpoints.
	c1, _ := checkpointAt(ctx, conn, "audit_events/0", 18)
	c2, _ := checkpointAt(ctx, conn, "audit_events/0", 0)
	pf, err := ConsistencyProof(ctx, conn, "audit_events/0", c1.Size, c2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c1.Size, c2.Size, pf, c1.Root, c2.Root); err != nil {
		t.Fatal(err)
	}
	// A fork: a checkpoint validly signed with the real key (a compromised
	// writer) whose tree is not an extension of the earlier ones.
	if err := insertCheckpoints(ctx, conn, []*Checkpoint{signer.sign("audit_events/0", 20, bytes.Repeat([]byte{5}, 32), time.Now())}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, conn, keys, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var fork, inconsistent bool
	for _, f := range rep.InvalidCheckpoints {
		fork = fork || f.Size == 20 && strings.Contains(f.Reason, "leaves changed among leaves 18..19: the checkpoint at size 18 matches")
		inconsistent = inconsistent || f.Size == 20 && strings.Contains(f.Reason, "not consistent with the signed checkpoint at size 18")
	}
	if !fork || !inconsistent {
		t.Fatalf("fork not reported: %+v", rep.InvalidCheckpoints)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	parts := simEvents(t, 80, 2)
	var total int
	for p, evs := range parts {
		insertRows(t, conn, evs)
		l, err := OpenLog(ctx, conn, signer, p)
		if err != nil {
			t.Fatal(err)
		}
		seal(t, l, evs, 16)
		total += len(evs)
	}
	keys := signer.PublicKeys()
	verify := func() *Report {
		t.Helper()
		rep, err := Verify(ctx, conn, keys, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		rep.WriteText(&b)
		t.Log("\n" + b.String())
		return rep
	}
	rep := verify()
	if !rep.Clean() || len(rep.Logs) != 2 || rep.Logs[0].Rows+rep.Logs[1].Rows != total {
		t.Fatalf("clean run: %+v", rep)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	ev := func(p, i int) *event.AuditEvent { return parts[p][i].Event }

	// (a) one field of one row updated.
	exec("ALTER TABLE audit_events UPDATE policy_decision = 'allow', resource = 'db://everything' WHERE event_id = ? SETTINGS mutations_sync = 2", ev(0, 5).EventID)
	rep = verify()
	if len(rep.Modified) != 1 || rep.Modified[0].EventID != ev(0, 5).EventID || len(rep.Deleted)+len(rep.Inserted)+len(rep.InvalidCheckpoints) != 0 {
		t.Fatalf("(a) %+v", rep)
	}
	wantFields := []string{"resource"}
	if ev(0, 5).PolicyDecision != "allow" {
		wantFields = []string{"policy_decision", "resource"}
	}
	if !slices.Equal(rep.Modified[0].Fields, wantFields) {
		t.Fatalf("(a) fields %v, want %v", rep.Modified[0].Fields, wantFields)
	}

	// (b) one row deleted.
	exec("DELETE FROM audit_events WHERE event_id = ?", ev(1, 3).EventID)
	rep = verify()
	if len(rep.Deleted) != 1 || rep.Deleted[0].EventID != ev(1, 3).EventID || rep.Deleted[0].LeafIndex != 3 || len(rep.Modified) != 1 {
		t.Fatalf("(b) %+v", rep)
	}

	// (c) forged rows: a copy of a genuine row with another agent at the
	// same offset, and one at a gap offset (a dead-lettered message).
	f1 := *ev(1, 8)
	f1.AgentID, f1.EventID = "agent-innocent", ev(1, 9).EventID
	f1.EventID[15] ^= 0xff
	f2 := *ev(0, 2)
	f2.SrcOffset = 6 // offset 6 of every partition was skipped by simEvents
	f2.EventID[15] ^= 0xff
	insertRows(t, conn, []Sealed{{Event: &f1}, {Event: &f2}})
	rep = verify()
	if len(rep.Inserted) != 2 || len(rep.Modified) != 1 || len(rep.Deleted) != 1 {
		t.Fatalf("(c) %+v", rep)
	}
	gotIns := []string{rep.Inserted[0].EventID.String(), rep.Inserted[1].EventID.String()}
	slices.Sort(gotIns)
	wantIns := []string{f1.EventID.String(), f2.EventID.String()}
	slices.Sort(wantIns)
	if !slices.Equal(gotIns, wantIns) {
		t.Fatalf("(c) inserted %v, want %v", gotIns, wantIns)
	}

	// (d) a checkpoint replaced by one with another root, signed by a key
	// the verifier does not trust; and one whose root column was edited.
	c, err := checkpointAt(ctx, conn, "audit_events/0", 32)
	if err != nil {
		t.Fatal(err)
	}
	exec("ALTER TABLE checkpoints DELETE WHERE log_id = 'audit_events/0' AND size = 32 SETTINGS mutations_sync = 2")
	forger := newSigner(t, seedLine(t))
	fake := forger.sign("audit_events/0", 32, bytes.Repeat([]byte{7}, 32), c.TS)
	if err := insertCheckpoints(ctx, conn, []*Checkpoint{fake}); err != nil {
		t.Fatal(err)
	}
	exec("ALTER TABLE checkpoints UPDATE root_hash = unhex(repeat('ab', 32)) WHERE log_id = 'audit_events/1' AND size = 16 SETTINGS mutations_sync = 2")
	rep = verify()
	if len(rep.InvalidCheckpoints) != 2 {
		t.Fatalf("(d) %+v", rep.InvalidCheckpoints)
	}
	for _, f := range rep.InvalidCheckpoints {
		switch {
		case f.LogID == "audit_events/0" && f.Size == 32 && strings.Contains(f.Reason, "unknown key"):
		case f.LogID == "audit_events/1" && f.Size == 16 && strings.Contains(f.Reason, "root_hash differs"):
		default:
			t.Fatalf("(d) unexpected finding %+v", f)
		}
	}
	if rep.Clean() {
		t.Fatal("report clean")
	}

	// Changing a leaf itself breaks the signed roots from its index on.
	exec("ALTER TABLE merkle_leaves UPDATE leaf_hash = unhex(repeat('cd', 32)) WHERE log_id = 'audit_events/1' AND leaf_index = 20 SETTINGS mutations_sync = 2")
	rep = verify()
	var rootErrs int
	for _, f := range rep.InvalidCheckpoints {
		if f.LogID == "audit_events/1" && strings.Contains(f.Reason, "leaves changed") {
			if f.Size <= 20 {
				t.Fatalf("checkpoint at size %d blamed for leaf 20", f.Size)
			}
			rootErrs++
		}
	}
	if rootErrs == 0 {
		t.Fatalf("changed leaf not detected: %+v", rep.InvalidCheckpoints)
	}
	if len(rep.ModifiedLeaves) != 1 || rep.ModifiedLeaves[0].LeafIndex != 20 || len(rep.Modified) != 1 {
		t.Fatalf("changed leaf blamed on the row: leaves %+v rows %+v", rep.ModifiedLeaves, rep.Modified)
	}
	// Ingest resumes from the signed state, unaffected by the changed
	// leaf; a proof through the changed leaf is refused.
	l1, err := OpenLog(ctx, conn, signer, 1)
	if err != nil || l1.Size() != uint64(len(parts[1])) {
		t.Fatalf("OpenLog after a changed leaf: %v", err)
	}
	if cp, _ := checkpointAt(ctx, conn, "audit_events/1", 0); !bytes.Equal(l1.Root(), cp.Root) {
		t.Fatal("reopened root differs from the signed one")
	}
	if _, err := InclusionProof(ctx, conn, ev(1, 0).EventID, 0); !errors.Is(err, ErrLogCorrupt) {
		t.Fatalf("proof over a changed leaf: %v", err)
	}
}

func TestRetentionIsNotTampering(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	evs := simEvents(t, 40, 1)[0]
	insertRows(t, conn, evs)
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	seal(t, l, evs, 10)
	cut := evs[len(evs)/2].Event.TS
	var old int
	for _, s := range evs {
		if s.Event.TS.Before(cut) {
			old++
		}
	}
	// Retention records, then deletes; the tenant-scoped cut-off counts too.
	tenant := evs[0].Event.TenantID
	if err := RecordExpiry(ctx, conn, "", cut, "policy audit_events: 180 days"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "DELETE FROM audit_events WHERE ts < toDateTime64(?, 9, 'UTC')", cut.UTC().Format("2006-01-02 15:04:05.000000000")); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, conn, signer.PublicKeys(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() || rep.Logs[0].Expired != old || rep.Logs[0].Checkpoints == 0 {
		t.Fatalf("after retention: %+v", rep)
	}
	// A deletion beyond the recorded cut-off is still tampering.
	var victim *event.AuditEvent
	for _, s := range evs {
		if !s.Event.TS.Before(cut) && s.Event.TenantID != tenant {
			victim = s.Event
			break
		}
	}
	if err := RecordExpiry(ctx, conn, tenant, victim.TS.Add(time.Hour), "tenant offboarded"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "DELETE FROM audit_events WHERE event_id = ?", victim.EventID); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(ctx, conn, signer.PublicKeys(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 1 || rep.Deleted[0].EventID != victim.EventID {
		t.Fatalf("deletion outside retention: %+v", rep)
	}
}

// BenchmarkAppend measures sealing cost per event (leaf hashing and the
// merkle_leaves insert) in batches of 1000, as ingest's flush would.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	conn := newDB(b)
	signer := newSigner(b, seedLine(b))
	evs := simEvents(b, 400, 1)[0]
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	buf := make([]Sealed, batch)
	evCopy := make([]event.AuditEvent, batch)
	off := int64(0)
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		for i := range buf {
			evCopy[i] = *evs[i%len(evs)].Event
			evCopy[i].SrcOffset = uint64(off)
			buf[i] = Sealed{Offset: off, Event: &evCopy[i]}
			off++
		}
		if err := l.Append(ctx, buf); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Checkpoint(ctx, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(off), "ns/event")
}

// BenchmarkLeafHash is the CPU part alone.
func BenchmarkLeafHash(b *testing.B) {
	evs := simEvents(b, 50, 1)[0]
	b.ReportAllocs()
	var enc leafEncoder
	for i := 0; b.Loop(); i++ {
		ev := evs[i%len(evs)].Event
		_, _ = enc.leafAndDigest(ev)
	}
}

func TestUnsealedPendingAndForgedPace(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	evs := simEvents(t, 30, 1)[0]
	insertRows(t, conn, evs)
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Sealing enabled at the 5th message; the last 3 not sealed yet.
	seal(t, l, evs[4:len(evs)-3], 100)
	rep, err := Verify(ctx, conn, signer.PublicKeys(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean() || rep.Logs[0].Unsealed != 4 || rep.Logs[0].Pending != 3 {
		t.Fatalf("unsealed/pending: %+v", rep.Logs)
	}
	// Once the grace has passed, an unsealed row beyond the log is inserted.
	rep, err = Verify(ctx, conn, signer.PublicKeys(), VerifyOptions{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Inserted) != 3 || rep.Logs[0].Pending != 0 {
		t.Fatalf("after grace: %+v", rep)
	}
	// A forged checkpoint with a huge size and a future time must not stop
	// the signer.
	forger := newSigner(t, seedLine(t))
	if err := insertCheckpoints(ctx, conn, []*Checkpoint{forger.sign("audit_events/0", 1<<40, bytes.Repeat([]byte{9}, 32), time.Now().Add(24*time.Hour))}); err != nil {
		t.Fatal(err)
	}
	l2, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Append(ctx, evs[len(evs)-3:]); err != nil {
		t.Fatal(err)
	}
	cp, err := l2.Checkpoint(ctx, true)
	if err != nil || cp == nil || cp.Size != uint64(len(evs)-4) {
		t.Fatalf("checkpoint after a forged one: %+v %v", cp, err)
	}
}

// TestCanonicalMatchesEncodingJSON: for valid UTF-8 the canonical form is
// exactly what encoding/json writes for a map of the stored fields (sorted
// keys, HTML escaping), so any JSON library can reproduce a leaf.
func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	evs := simEvents(t, 30, 1)[0]
	odd := *evs[0].Event
	odd.Attributes = map[string]string{"q": `"quoted" <b>&amp;</b>`, "ctl": "a\x01b\n", "uni": "caf\u00e9 \u2028 \U0001F600", "": "empty key"}
	odd.DelegationScope, odd.RequiredScopes = nil, []string{}
	odd.TS = time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("x", 3600))
	all := []*event.AuditEvent{&odd}
	for _, s := range evs {
		all = append(all, s.Event)
	}
	for _, ev := range all {
		arr := func(a []string) []string {
			if a == nil {
				return []string{}
			}
			return a
		}
		attrs := ev.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		want, err := json.Marshal(map[string]any{
			"leaf_format": LeafFormat, "event_id": ev.EventID, "ts": ev.TS.UTC().Format("2006-01-02T15:04:05.000000000Z07:00"),
			"tenant_id": ev.TenantID, "agent_id": ev.AgentID, "parent_identity": ev.ParentIdentity, "token_id": ev.TokenID,
			"token_type": ev.TokenType, "delegation_scope": arr(ev.DelegationScope), "required_scopes": arr(ev.RequiredScopes),
			"tool_name": ev.ToolName, "tool_params_hash": ev.ToolParamsHash, "resource": ev.Resource,
			"resource_tenant_id": ev.ResourceTenantID, "policy_decision": ev.PolicyDecision, "trace_id": ev.TraceID,
			"span_id": ev.SpanID, "attributes": attrs, "schema_version": ev.SchemaVersion,
			"src_partition": ev.SrcPartition, "src_offset": ev.SrcOffset, "src_index": ev.SrcIndex,
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := Canonical(ev); !bytes.Equal(got, want) {
			t.Fatalf("canonical form differs from encoding/json:\n got %s\nwant %s", got, want)
		}
	}
}

func TestExportManifest(t *testing.T) {
	signer := newSigner(t, seedLine(t))
	export := []byte("{\"event_id\":\"...\"}\n")
	sum := sha256.Sum256(export)
	cps := []*Checkpoint{
		{LogID: "audit_events/10", Size: 7, Root: bytes.Repeat([]byte{1}, 32)},
		{LogID: "audit_events/2", Size: 9, Root: bytes.Repeat([]byte{2}, 32)},
	}
	note, err := signer.SignManifest(&Manifest{SHA256: sum[:], Rows: 1, Checkpoints: cps, TS: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := VerifyManifest(note, signer.PublicKeys())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.SHA256, sum[:]) || m.Rows != 1 || len(m.Checkpoints) != 2 || m.Checkpoints[0].LogID != "audit_events/2" || m.Checkpoints[1].Size != 7 {
		t.Fatalf("manifest round trip: %+v\n%s", m, note)
	}
	if _, err := VerifyManifest(strings.Replace(note, "rows 1", "rows 2", 1), signer.PublicKeys()); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("tampered manifest: %v", err)
	}
	// A checkpoint note is not a manifest and vice versa.
	cpNote := signer.sign("audit_events/0", 1, bytes.Repeat([]byte{3}, 32), time.Now()).Note
	if _, err := VerifyManifest(cpNote, signer.PublicKeys()); err == nil {
		t.Fatal("checkpoint accepted as manifest")
	}
	if _, err := VerifyNote(note, signer.PublicKeys()); err == nil {
		t.Fatal("manifest accepted as checkpoint")
	}
}

// sealedLog builds a log of n leaves (simulator events repeated with fresh
// offsets and ids), with the rows stored when rows is set.
func sealedLog(b *testing.B, n int, rows bool) (context.Context, *Log, []Sealed) {
	ctx := context.Background()
	conn := newDB(b)
	signer := newSigner(b, seedLine(b))
	base := simEvents(b, 200, 1)[0]
	evs := make([]Sealed, n)
	for i := range evs {
		ev := *base[i%len(base)].Event
		ev.SrcOffset = uint64(i)
		binary.BigEndian.PutUint64(ev.EventID[8:], uint64(i))
		evs[i] = Sealed{Offset: int64(i), Event: &ev}
	}
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 5000 {
		chunk := evs[i:min(i+5000, n)]
		if rows {
			insertRows(b, conn, chunk)
		}
		if err := l.Append(ctx, chunk); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx, true); err != nil {
		b.Fatal(err)
	}
	return ctx, l, evs
}

// BenchmarkInclusionProof: one proof in a 50,000-leaf log (the proof reads
// every leaf hash of the log).
func BenchmarkInclusionProof(b *testing.B) {
	ctx, l, evs := sealedLog(b, 50_000, false)
	for i := 0; b.Loop(); i++ {
		if _, err := InclusionProof(ctx, l.conn, evs[(i*7919)%len(evs)].Event.EventID, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify: Verify of 50,000 events and leaves, reported per event.
func BenchmarkVerify(b *testing.B) {
	ctx, l, evs := sealedLog(b, 50_000, true)
	for b.Loop() {
		rep, err := Verify(ctx, l.conn, l.signer.PublicKeys(), VerifyOptions{})
		if err != nil || !rep.Clean() {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(evs)), "ns/event")
}

// TestJSONPlainMatchesEncodingJSON: the eight-bytes-at-a-time test says
// "plain" exactly when encoding/json writes the string as itself, for every
// byte value at every position of a word and of the tail.
func TestJSONPlainMatchesEncodingJSON(t *testing.T) {
	for c := range 256 {
		for pos := range 19 {
			b := []byte(strings.Repeat("a", 19))
			b[pos] = byte(c)
			s := string(b)
			j, _ := json.Marshal(s)
			if want := string(j) == `"`+s+`"`; jsonPlain(s) != want {
				t.Fatalf("byte %#x at %d: jsonPlain=%v, encoding/json writes it as itself: %v", c, pos, !want, want)
			}
		}
	}
}
