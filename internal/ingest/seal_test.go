package ingest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/integrity"
)

// TestSealedBatchesEndInTimeForTheNextCheckpoint: a batch of sealed events
// ends one slow insert (1.5 times the worker's slowest recent one, within
// bounds)
// before the Checkpointer's next tick, or before the following one when
// the next is too close, so each batch's leaves are signed by the first
// tick after it; without a running Checkpointer it ends at its max age.
func TestSealedBatchesEndInTimeForTheNextCheckpoint(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const interval = time.Hour // the tick never fires during the test
	signer, err := integrity.NewSigner(integrity.Config{Enabled: true, Key: config.Secret(base64.StdEncoding.EncodeToString(priv.Seed())), CheckpointInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	c := integrity.NewCheckpointer(nil, signer, slog.New(slog.DiscardHandler))
	w := &worker{s: &Service{checkpointer: c}, maxAge: 250 * time.Millisecond}
	start := time.Now()
	if got := w.sealDeadline(start); !got.Equal(start.Add(w.maxAge)) {
		t.Fatalf("without a running Checkpointer: deadline %v after start, want the max age %v", got.Sub(start), w.maxAge)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	var next time.Time
	for deadline := time.Now().Add(5 * time.Second); next.IsZero(); time.Sleep(time.Millisecond) {
		if next, _ = c.NextTick(); time.Now().After(deadline) {
			t.Fatal("a running Checkpointer reports no next tick")
		}
	}
	if got, want := w.sealDeadline(start), next.Add(-firstInsertGuess*3/2); !got.Equal(want) {
		t.Fatalf("before any insert: deadline %v before the next tick, want %v", next.Sub(got), next.Sub(want))
	}
	w.nInsert = 1 // measured inserts from here on
	for _, tc := range []struct {
		name    string
		start   time.Time
		slowest time.Duration
		want    time.Time
	}{
		{"no inserts yet: the least lead", start, 0, next.Add(-minSealLead)},
		{"lead is 1.5 times the slowest recent insert", start, 100 * time.Millisecond, next.Add(-150 * time.Millisecond)},
		{"lead is at most half an interval", start, interval, next.Add(-interval / 2)},
		{"too close to the next tick: the following one", next.Add(-minSealLead - minSealAge/2), 0, next.Add(interval - minSealLead)},
	} {
		w.inserts = [8]time.Duration{tc.slowest / 2, tc.slowest}
		if got := w.sealDeadline(tc.start); !got.Equal(tc.want) {
			t.Errorf("%s: deadline %v before the next tick, want %v", tc.name, next.Sub(got), next.Sub(tc.want))
		}
	}
}
