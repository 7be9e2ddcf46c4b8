package integrity

import (
	"bytes"
	"context"
	"errors"
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

// leavesOf computes the leaves of evs as ingest does.
func leavesOf(evs []Sealed) []Leaf {
	var z Sealer
	out := make([]Leaf, len(evs))
	for i, s := range evs {
		out[i] = z.Leaf(s)
	}
	return out
}

// sealWait is Submit, waiting for the outcome.
func sealWait(ctx context.Context, c *Checkpointer, l *Log, leaves []Leaf) error {
	select {
	case err := <-c.Submit(ctx, l, leaves):
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// queued waits until n submitted requests wait for the next tick.
func queued(t *testing.T, c *Checkpointer, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		got := len(c.queue)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", got, n)
		}
	}
}

// TestCheckpointerSealsEveryPartitionInOneInsert: the leaves that several
// partitions submit before a tick are stored by that tick in ONE
// merkle_leaves insert (one part) and signed in one checkpoints insert;
// each request is answered only then. Redelivered leaves are ignored, a log's
// out-of-order leaves are refused without holding the others back, and
// every stored tree is the tree of exactly its partition's leaves.
func TestCheckpointerSealsEveryPartitionInOneInsert(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	byPart := simEvents(t, 60, 4)
	c := NewCheckpointer(conn, signer, slog.New(slog.DiscardHandler))
	logs := make([]*Log, 4)
	for p := range logs {
		l, err := OpenLog(ctx, conn, signer, p)
		if err != nil {
			t.Fatal(err)
		}
		logs[p] = l
		defer c.Track(l)()
	}
	// Partitions 0-2 seal their first half; partition 3 hands over leaves
	// in the wrong order.
	errs := make([]chan error, 4)
	for p, l := range logs {
		leaves := leavesOf(byPart[p][:len(byPart[p])/2])
		if p == 3 {
			leaves[0], leaves[1] = leaves[1], leaves[0]
		}
		errs[p] = make(chan error, 1)
		go func() { errs[p] <- sealWait(ctx, c, l, leaves) }()
	}
	queued(t, c, 4)
	select {
	case err := <-errs[0]:
		t.Fatalf("a request was answered before a tick stored its leaves: %v", err)
	default:
	}
	if err := c.tick(ctx); !errors.Is(err, ErrOutOfOrder) && err != nil {
		t.Fatalf("tick: %v", err)
	}
	for p := range logs {
		err := <-errs[p]
		if p == 3 {
			if !errors.Is(err, ErrOutOfOrder) {
				t.Fatalf("partition 3: request of out-of-order leaves answered %v, want ErrOutOfOrder", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
	}
	var rows, parts, cps, cpParts uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(_part), (SELECT count() FROM checkpoints), (SELECT uniqExact(_part) FROM checkpoints) FROM merkle_leaves").Scan(&rows, &parts, &cps, &cpParts); err != nil {
		t.Fatal(err)
	}
	want := uint64(0)
	for p := range 3 {
		want += uint64(len(byPart[p]) / 2)
	}
	if rows != want || parts != 1 || cps != 3 || cpParts != 1 {
		t.Fatalf("after one tick: %d leaves in %d parts, %d checkpoints in %d parts; want %d leaves in 1 part, 3 checkpoints in 1 part", rows, parts, cps, cpParts, want)
	}
	// Second tick: the rest of each partition, handed over again from its
	// start (a redelivery of the first half must not be sealed twice).
	// Partition 3's log was abandoned by the refusal: nothing more of it is
	// stored (its worker reopens the log).
	for p, l := range logs {
		go func() { errs[p] <- sealWait(ctx, c, l, leavesOf(byPart[p])) }()
	}
	queued(t, c, 4)
	if err := c.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errs[3]; !errors.Is(err, ErrSealAbandoned) || logs[3].Size() != 0 {
		t.Fatalf("partition 3 after a refused seal: %v, size %d; want ErrSealAbandoned, size 0", err, logs[3].Size())
	}
	for p, l := range logs[:3] {
		if err := <-errs[p]; err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
		// The tree is that of the partition's leaves, each once, in order.
		rng := rangeFactory().NewEmptyRange(0)
		for _, lf := range leavesOf(byPart[p]) {
			if err := rng.Append(lf.Hash[:], nil); err != nil {
				t.Fatal(err)
			}
		}
		root, _ := rng.GetRootHash(nil)
		if l.Size() != uint64(len(byPart[p])) || !bytes.Equal(l.Root(), root) || l.LastOffset() != byPart[p][len(byPart[p])-1].Offset {
			t.Fatalf("partition %d: size %d, want %d; root matches %v", p, l.Size(), len(byPart[p]), bytes.Equal(l.Root(), root))
		}
		cp, err := latestCheckpoints(ctx, conn, l.ID(), 1, false)
		if err != nil || len(cp) != 1 || cp[0].Size != l.Size() || !bytes.Equal(cp[0].Root, root) || verifyRow(cp[0], signer.PublicKeys()) != nil {
			t.Fatalf("partition %d: latest checkpoint %+v (%v) does not sign its tree", p, cp, err)
		}
		// What is stored rebuilds the same tree.
		reopened, err := OpenLog(ctx, conn, signer, p)
		if err != nil || !bytes.Equal(reopened.Root(), root) {
			t.Fatalf("partition %d: reopened log differs (%v)", p, err)
		}
	}
}

// TestSealAfterCheckpointerStopped: a request waiting when Run returns, or
// submitted after, fails with ErrCheckpointerStopped instead of blocking, and
// while Run ticks a request is answered once its leaves are stored.
func TestSealAfterCheckpointerStopped(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	evs := simEvents(t, 20, 1)[0]
	l, err := OpenLog(ctx, conn, signer, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCheckpointer(conn, signer, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(runCtx)
	}()
	if err := sealWait(ctx, c, l, leavesOf(evs[:5])); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM merkle_leaves").Scan(&n); err != nil || n != 5 {
		t.Fatalf("after the request was answered: %d leaves stored (%v), want 5", n, err)
	}
	stop()
	<-done
	if err := sealWait(ctx, c, l, leavesOf(evs[5:])); !errors.Is(err, ErrCheckpointerStopped) {
		t.Fatalf("request after Run returned: %v, want ErrCheckpointerStopped", err)
	}
}

// TestFailedTickKeepsRequestsInOrder: when a tick cannot store the leaves,
// the requests stay pending and the next tick stores them in submission
// order (no gap, no reordering), sending exactly the failed insert again
// first, so that if the server had stored it after all (a lost
// acknowledgement) it drops the copy; a request whose submitter gave up
// before a tick took it ends the log (later requests of it are refused,
// never stored after a gap) without holding back another log.
func TestFailedTickKeepsRequestsInOrder(t *testing.T) {
	ctx := context.Background()
	conn := newDB(t)
	signer := newSigner(t, seedLine(t))
	byPart := simEvents(t, 40, 2)
	c := NewCheckpointer(conn, signer, slog.New(slog.DiscardHandler))
	logs := make([]*Log, 2)
	for p := range logs {
		l, err := OpenLog(ctx, conn, signer, p)
		if err != nil {
			t.Fatal(err)
		}
		logs[p] = l
	}
	leaves0 := leavesOf(byPart[0])
	half := len(leaves0) / 2
	first := c.Submit(ctx, logs[0], leaves0[:half])
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.storeLeaves(dead); err == nil {
		t.Fatal("a tick with a cancelled context stored leaves")
	}
	select {
	case err := <-first:
		t.Fatalf("a request was answered (%v) although its insert failed", err)
	default:
	}
	if logs[0].Size() != 0 {
		t.Fatalf("log advanced to %d after a failed insert", logs[0].Size())
	}
	// The failed insert reached the server after all (only its
	// acknowledgement was lost); more leaves are submitted meanwhile.
	if err := c.failed.rows.insert(ctx, conn); err != nil {
		t.Fatal(err)
	}
	second := c.Submit(ctx, logs[0], leaves0[half:])
	if err := c.storeLeaves(ctx); err != nil {
		t.Fatal(err)
	}
	if err1, err2 := <-first, <-second; err1 != nil || err2 != nil {
		t.Fatalf("after the retry: %v, %v", err1, err2)
	}
	rng := rangeFactory().NewEmptyRange(0)
	for _, lf := range leaves0 {
		_ = rng.Append(lf.Hash[:], nil)
	}
	root, _ := rng.GetRootHash(nil)
	if reopened, err := OpenLog(ctx, conn, signer, 0); err != nil || !bytes.Equal(reopened.Root(), root) || reopened.Size() != uint64(len(leaves0)) {
		t.Fatalf("stored log 0 is not its leaves in order (%v)", err)
	}
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM merkle_leaves").Scan(&rows); err != nil || rows != uint64(len(leaves0)) {
		t.Fatalf("merkle_leaves holds %d rows (%v), want %d: the retried insert was stored twice", rows, err, len(leaves0))
	}

	// Log 1: the first request's submitter gives up before the tick.
	leaves1 := leavesOf(byPart[1])
	gone, giveUp := context.WithCancel(ctx)
	r1 := c.Submit(gone, logs[1], leaves1[:3])
	giveUp()
	r2 := c.Submit(ctx, logs[1], leaves1[3:])
	more := c.Submit(ctx, logs[0], leaves0) // a redelivery: nothing new
	if err := c.storeLeaves(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-r1; !errors.Is(err, context.Canceled) {
		t.Fatalf("given-up request: %v, want context.Canceled", err)
	}
	if err := <-r2; !errors.Is(err, ErrSealAbandoned) {
		t.Fatalf("request after a given-up one: %v, want ErrSealAbandoned", err)
	}
	if err := <-more; err != nil {
		t.Fatalf("another log's request: %v", err)
	}
	var n1, n0 uint64
	if err := conn.QueryRow(ctx, "SELECT countIf(log_id = ?), countIf(log_id = ?) FROM merkle_leaves", logs[1].ID(), logs[0].ID()).Scan(&n1, &n0); err != nil {
		t.Fatal(err)
	}
	if n1 != 0 || n0 != uint64(len(leaves0)) {
		t.Fatalf("stored: %d leaves of log 1 (want 0: it was abandoned), %d of log 0 (want %d)", n1, n0, len(leaves0))
	}
}
