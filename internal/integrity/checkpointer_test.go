package integrity

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCheckpointerSignsGrownLogsInOneInsert: one tick stores a checkpoint
// for each tracked log that grew, all in one insert (one part), and
// nothing for a log that did not grow or is no longer tracked.
func TestCheckpointerSignsGrownLogsInOneInsert(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	byPart := simEvents(t, 40, 3)
	logs := make([]*Log, 3)
	for p := range logs {
		l, err := OpenLog(ctx, conn, signer, p)
		if err != nil {
			t.Fatal(err)
		}
		logs[p] = l
	}
	c := NewCheckpointer(conn, signer, slog.New(slog.DiscardHandler))
	untrack := make([]func(), 3)
	for p, l := range logs {
		untrack[p] = c.Track(l)
	}
	for p, l := range logs[:2] {
		if err := l.Append(ctx, byPart[p]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SignAll(ctx); err != nil {
		t.Fatal(err)
	}
	var rows, parts uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(_part) FROM checkpoints").Scan(&rows, &parts); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || parts != 1 {
		t.Fatalf("after the first tick: %d checkpoints in %d parts, want 2 in 1 (log 2 is empty)", rows, parts)
	}
	for p, l := range logs[:2] {
		cps, err := latestCheckpoints(ctx, conn, l.ID(), 1, false)
		if err != nil || len(cps) != 1 {
			t.Fatalf("log %d: %v", p, err)
		}
		if err := verifyRow(cps[0], signer.PublicKeys()); err != nil || cps[0].Size != uint64(len(byPart[p])) || !bytes.Equal(cps[0].Root, l.Root()) {
			t.Fatalf("log %d: checkpoint size %d root ok %v (%v), want size %d", p, cps[0].Size, bytes.Equal(cps[0].Root, l.Root()), err, len(byPart[p]))
		}
	}
	// Nothing grew: no insert. Log 2 grows but is untracked: not signed.
	untrack[2]()
	if err := logs[2].Append(ctx, byPart[2]); err != nil {
		t.Fatal(err)
	}
	if err := c.SignAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count() FROM checkpoints").Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("after a tick with no tracked growth: %d checkpoints (%v), want 2", rows, err)
	}
}

// TestCheckpointerConcurrentWithAppends: a Checkpointer ticking while the
// owner appends (run with -race) stores only checkpoints whose roots are
// the roots of the log at their size, and the last one covers every leaf.
func TestCheckpointerConcurrentWithAppends(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	evs := simEvents(t, 60, 1)[0]
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCheckpointer(conn, signer, slog.New(slog.DiscardHandler))
	defer c.Track(l)()
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := c.SignAll(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := 0; i < len(evs); i += 7 {
		if err := l.Append(ctx, evs[i:min(i+7, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if err := c.SignAll(ctx); err != nil {
		t.Fatal(err)
	}
	// Every stored checkpoint is a valid tree head of this log: rebuild
	// the roots of each prefix from the leaves and compare.
	roots := map[uint64][]byte{}
	rng := rangeFactory().NewEmptyRange(0)
	if err := scanLeaves(ctx, conn, l.ID(), 0, 0, "leaf_index, src_offset, leaf_hash", func(r *leafRow) error {
		if err := rng.Append([]byte(r.LeafHash), nil); err != nil {
			return err
		}
		root, err := rng.GetRootHash(nil)
		roots[rng.End()] = root
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cps, err := latestCheckpoints(ctx, conn, l.ID(), 1000, true)
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoints: %d (%v)", len(cps), err)
	}
	if cps[0].Size != uint64(len(evs)) {
		t.Fatalf("last checkpoint size %d, want %d", cps[0].Size, len(evs))
	}
	for _, cp := range cps {
		if err := verifyRow(cp, signer.PublicKeys()); err != nil || !bytes.Equal(cp.Root, roots[cp.Size]) {
			t.Fatalf("checkpoint at size %d: root matches leaves %v, signature %v", cp.Size, bytes.Equal(cp.Root, roots[cp.Size]), err)
		}
		r, err := rangeFactory().NewRange(0, cp.Size, cp.Range)
		if err != nil {
			t.Fatalf("checkpoint at size %d: compact range: %v", cp.Size, err)
		}
		if root, err := r.GetRootHash(nil); err != nil || !bytes.Equal(root, cp.Root) {
			t.Fatalf("checkpoint at size %d: its compact range does not give its root", cp.Size)
		}
	}
	t.Logf("%d checkpoints stored while appending %d leaves", len(cps), len(evs))
}

// Two checkpoints signed from the same state (the Checkpointer's tick and a
// worker's last checkpoint, racing) are both recorded, and each event's
// proof lag is observed once.
func TestOverlappingCheckpointsCountEachEventOnce(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	reg := prometheus.NewRegistry()
	if err := signer.Instrument(reg); err != nil {
		t.Fatal(err)
	}
	evs := simEvents(t, 10, 1)[0]
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	always := func(time.Time, time.Time) bool { return true }
	a, okA := l.snapshot(always)
	b, okB := l.snapshot(always)
	if !okA || !okB {
		t.Fatal("no snapshot of a grown log")
	}
	l.covered(a)
	l.covered(b)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "agentaudit_integrity_proof_lag_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != uint64(len(evs)) {
				t.Fatalf("proof lag observed %d times for %d events", n, len(evs))
			}
			return
		}
	}
	t.Fatal("proof lag histogram not gathered")
}
