package sim

import (
	"context"
	"time"
)

// StreamOptions configures Stream.
type StreamOptions struct {
	// RealTime paces messages by simulated time: a message goes out when
	// the wall-clock time since the first message has caught up with its
	// simulated time since the first message. So Config.TraceRate becomes
	// traces per second, and bursts stay bursts. Otherwise messages go out
	// as fast as Kafka takes them.
	RealTime bool
	// Duration stops the stream after this much wall-clock time; 0 runs
	// until the Sim ends (Config.MaxTraces) or ctx is canceled.
	Duration time.Duration
	// Batch is the number of messages per Produce call (default 4096).
	Batch int
	// DrainTimeout bounds writing the tail after a stop (default 30 s).
	DrainTimeout time.Duration
}

// Stream produces s's messages until the Sim ends, Duration has passed or
// ctx is canceled. On a stop it drains the Sim, so traces and attacks in
// flight are completed, and writes that tail (with a fresh DrainTimeout
// deadline, ctx's cancellation notwithstanding): every event then has its
// trace and every started attack is in s.Truth(). It returns nil after such
// an orderly stop and the first Produce error otherwise.
func Stream(ctx context.Context, s *Sim, p *Producer, opts StreamOptions) error {
	if opts.Batch <= 0 {
		opts.Batch = 4096
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 30 * time.Second
	}
	runCtx := ctx
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	var (
		batch     []Message
		wallStart time.Time
		simStart  time.Time
	)
	// flush keeps the batch when Produce fails: after a stop it is written
	// again (at-least-once; downstream deduplicates by event_id and
	// (trace_id, span_id)), so a cancellation mid-write loses nothing.
	flush := func(ctx context.Context) error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.Produce(ctx, batch); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	stop := func() error {
		tail := s.Drain()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.DrainTimeout)
		defer cancel()
		if err := flush(dctx); err != nil {
			return err
		}
		return p.Produce(dctx, tail)
	}
	// failed decides what a Produce error means: a stop if the run's
	// context ended, a failure otherwise.
	failed := func(err error) error {
		if runCtx.Err() != nil {
			return stop()
		}
		return err
	}
	for {
		if runCtx.Err() != nil {
			return stop()
		}
		m, ok := s.Next()
		if !ok {
			return flush(ctx)
		}
		if opts.RealTime {
			if wallStart.IsZero() {
				wallStart, simStart = time.Now(), m.Time
			}
			due := wallStart.Add(m.Time.Sub(simStart))
			// Write what is due before sleeping; skip sleeps too short to
			// matter so that messages are not written one by one.
			if time.Until(due) > 20*time.Millisecond {
				err := flush(runCtx)
				if err == nil {
					err = sleepUntil(runCtx, due)
				}
				if err != nil {
					batch = append(batch, m)
					return failed(err)
				}
			}
		}
		batch = append(batch, m)
		if len(batch) >= opts.Batch {
			if err := flush(runCtx); err != nil {
				return failed(err)
			}
		}
	}
}
