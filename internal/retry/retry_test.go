package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffGrowsThenCapsWithFullJitter(t *testing.T) {
	c := Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
	for attempt, ceiling := range []time.Duration{10, 20, 40, 80, 160, 300, 300} {
		ceiling *= time.Millisecond
		var biggest time.Duration
		for range 2000 {
			d := c.Backoff(attempt)
			if d <= 0 || d > ceiling {
				t.Fatalf("attempt %d: backoff %s outside (0, %s]", attempt, d, ceiling)
			}
			biggest = max(biggest, d)
		}
		if biggest < ceiling/2 {
			t.Errorf("attempt %d: largest of 2000 backoffs %s, want jitter across (0, %s]", attempt, biggest, ceiling)
		}
	}
	if d := c.Backoff(1000); d <= 0 || d > c.MaxBackoff {
		t.Errorf("attempt 1000: %s, want capped at %s (no overflow)", d, c.MaxBackoff)
	}
}

func TestSleepReturnsEarlyWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep reported a full wait on a cancelled context")
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep did not return at once on a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep of 1 ms reported cancellation")
	}
}
