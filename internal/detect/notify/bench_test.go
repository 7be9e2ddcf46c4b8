package notify_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

// BenchmarkActToReceived measures the sender's share of the detector's
// latency budget: Act called (the detection is stored) → webhook request
// received and verified by a Sink. Each iteration is one detection with a
// revoke and a notify message, acted on every 10 ms (the bench-detect
// attack rate); it reports p50/p99 of the revoke message and Act's own p99.
func BenchmarkActToReceived(b *testing.B) {
	conn, db := newDB(b)
	sec := secret(1)
	var mu sync.Mutex
	got := map[string]time.Time{}
	arrived := make(chan struct{}, 1<<16)
	sink, err := webhooksink.New(webhooksink.Options{Secrets: []string{sec}, OnMessage: func(m webhooksink.Message) {
		mu.Lock()
		got[m.ID] = time.Now()
		mu.Unlock()
		arrived <- struct{}{}
	}})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	cfg := testConfig(b, srv.URL, sec)
	s, err := notify.New(cfg, conn, db, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	sent := map[string]time.Time{}
	var actDur []time.Duration
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		<-tick.C
		d := detection(i, "tenant-a", fmt.Sprintf("bench-tok-%d-%d", b.N, i))
		start := time.Now()
		if err := s.Act(ctx, d, true); err != nil {
			b.Fatal(err)
		}
		actDur = append(actDur, time.Since(start))
		sent[notify.DeliveryID(d.ID, "siem", notify.KindRevoke)] = start
	}
	for range 2 * len(sent) {
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			b.Fatal("deliveries missing")
		}
	}
	b.StopTimer()
	var lat []time.Duration
	mu.Lock()
	for id, at := range sent {
		lat = append(lat, got[id].Sub(at))
	}
	mu.Unlock()
	slices.Sort(lat)
	slices.Sort(actDur)
	q := func(xs []time.Duration, p float64) float64 {
		return float64(xs[int(p*float64(len(xs)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(lat, 0.5), "p50_ms")
	b.ReportMetric(q(lat, 0.99), "p99_ms")
	b.ReportMetric(q(actDur, 0.99), "act_p99_ms")
}
