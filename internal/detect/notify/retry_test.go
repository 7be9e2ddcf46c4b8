package notify

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 0 ", 0},
		{"-3", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	} {
		if got := retryAfter(c.in, now); got != c.want {
			t.Errorf("retryAfter(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestFullJitterStaysWithinTheDelay(t *testing.T) {
	d := 50 * time.Millisecond
	var lo, hi bool
	for range 1000 {
		j := jitter(d)
		if j < 0 || j > d {
			t.Fatalf("jitter(%s) = %s", d, j)
		}
		lo = lo || j < d/4
		hi = hi || j > 3*d/4
	}
	if !lo || !hi || jitter(0) != 0 {
		t.Fatalf("jitter does not spread over [0, d]: low %v high %v", lo, hi)
	}
}
