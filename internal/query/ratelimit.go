package query

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters holds a token bucket per principal. Principals come from the keys
// file (bounded) and from JWT subjects (not bounded), so buckets idle for
// longer than a full refill are swept: a fresh bucket is then identical.
type limiters struct {
	rps   rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	m         map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiters(rps float64, burst int, now func() time.Time) *limiters {
	return &limiters{rps: rate.Limit(rps), burst: burst, now: now, m: map[string]*bucket{}}
}

// rateDecision is what the RateLimit headers say.
type rateDecision struct {
	allowed    bool
	limit      int
	remaining  int
	resetSecs  int // until the bucket is full again
	retryAfter int // when !allowed: until one request is allowed
}

// allow takes one token from principal's bucket.
func (l *limiters) allow(principal string) rateDecision {
	now := l.now()
	l.mu.Lock()
	full := time.Duration(float64(l.burst) / float64(l.rps) * float64(time.Second))
	if now.Sub(l.lastSweep) > full+time.Minute {
		for k, b := range l.m {
			if now.Sub(b.seen) > full {
				delete(l.m, k)
			}
		}
		l.lastSweep = now
	}
	b, ok := l.m[principal]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rps, l.burst)}
		l.m[principal] = b
	}
	b.seen = now
	l.mu.Unlock()

	d := rateDecision{limit: l.burst}
	r := b.lim.ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		d.retryAfter = max(1, int(math.Ceil(delay.Seconds())))
	} else {
		d.allowed = true
	}
	tokens := b.lim.TokensAt(now)
	d.remaining = max(0, int(math.Floor(tokens)))
	d.resetSecs = int(math.Ceil((float64(l.burst) - tokens) / float64(l.rps)))
	return d
}

func (d rateDecision) headers(set func(k, v string)) {
	set("RateLimit-Limit", strconv.Itoa(d.limit))
	set("RateLimit-Remaining", strconv.Itoa(d.remaining))
	set("RateLimit-Reset", strconv.Itoa(d.resetSecs))
}
