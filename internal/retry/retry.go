// Package retry is the retry policy of agentaudit's consumers: operations
// that must eventually succeed (a ClickHouse insert, a dead-letter write, an
// offset commit) are retried with exponential backoff and full jitter until
// they do or the caller stops.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Config bounds the backoff.
type Config struct {
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// Backoff returns the wait before retry attempt n (0-based): MinBackoff
// doubled per attempt, capped at MaxBackoff, with full jitter (uniform in
// (0, cap]) so that many workers retrying at once spread out.
func (c Config) Backoff(attempt int) time.Duration {
	d := c.MinBackoff << min(attempt, 20)
	if d <= 0 || d > c.MaxBackoff {
		d = c.MaxBackoff
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// Sleep waits d or until ctx ends; it reports whether it waited the full d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
