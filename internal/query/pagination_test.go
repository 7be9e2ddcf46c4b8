package query

import (
	"context"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestPaginationWhileRowsArrive walks /v1/events page by page while another
// goroutine keeps inserting events — newer than everything (above page 1)
// and late ones inside the range already paged and not yet paged. Every
// event present at the start must be served exactly once, and no event at
// all twice.
func TestPaginationWhileRowsArrive(t *testing.T) {
	e := newEnv(t, nil)
	const n = 1500
	orig := seed(t, e.conn, e.db, "tenant-a", "a", n, base)
	var inserted atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			b, err := e.conn.PrepareBatch(ctx, "INSERT INTO "+e.db+".audit_events (event_id, ts, tenant_id, agent_id, token_id, policy_decision)")
			if err != nil {
				done <- err
				return
			}
			for j := range 20 {
				ts := base.Add(time.Duration(n+i*20+j) * time.Minute) // newer than all
				if j%2 == 1 {
					ts = base.Add(time.Duration((i*37+j*101)%n)*time.Minute + time.Second) // late, inside the range
				}
				if err := b.Append(uuid.New(), ts, "tenant-a", "agent-late", "tok", "allow"); err != nil {
					done <- err
					return
				}
			}
			if err := b.Send(); err != nil {
				if ctx.Err() == nil {
					done <- err
				}
				return
			}
			inserted.Add(20)
		}
	}()
	to := base.Add(30 * 24 * time.Hour).Format(time.RFC3339)
	qs := "limit=100&from=" + base.Add(-time.Hour).Format(time.RFC3339) + "&to=" + to
	path := "/v1/events?" + qs
	seen := map[string]int{}
	pages := 0
	for {
		// Make sure rows really arrive between pages.
		before := inserted.Load()
		waitFor(t, "an insert between pages", func() bool { return inserted.Load() > before })
		var page Page[Event]
		if code := e.getJSON("auditor-a", path, &page); code != 200 {
			t.Fatalf("page %d: status %d", pages, code)
		}
		pages++
		for _, ev := range page.Items {
			seen[ev.EventID]++
		}
		if page.NextCursor == "" {
			break
		}
		path = "/v1/events?" + qs + "&cursor=" + url.QueryEscape(page.NextCursor)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("event %s served %d times", id, c)
		}
	}
	for _, id := range orig.events {
		if seen[id.String()] != 1 {
			t.Errorf("event %s present from the start served %d times", id, seen[id.String()])
		}
	}
	t.Logf("%d pages, %d distinct events served (%d at the start), %d inserted meanwhile", pages, len(seen), n, inserted.Load())
	if len(seen) <= n {
		t.Errorf("no concurrently inserted row was served (%d): the test did not exercise arrivals", len(seen))
	}
}
