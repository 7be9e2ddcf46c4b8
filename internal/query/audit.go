package query

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
)

// auditWriter writes query_audit rows in batches off the request path.
//
// No record is dropped on purpose: Record blocks while the queue is full
// (back-pressure on the API instead of a gap in the audit trail), and Close,
// called after the HTTP server has drained, flushes everything queued. A
// failing insert is retried with backoff; rows are given up (counted in
// agentaudit_query_audit_rows_lost_total and logged) only when ClickHouse
// still fails once the shutdown deadline has passed.
type auditWriter struct {
	conn     driver.Conn
	table    string
	log      *slog.Logger
	m        *metrics
	batch    int
	interval time.Duration

	mu     sync.RWMutex // Record holds R while sending; Close holds W to close ch
	closed bool
	ch     chan AuditRecord
	done   chan struct{}
}

func newAuditWriter(conn driver.Conn, table string, cfg AuditConfig, log *slog.Logger) *auditWriter {
	return &auditWriter{
		conn: conn, table: table, log: log,
		batch: cfg.BatchSize, interval: cfg.FlushInterval,
		ch: make(chan AuditRecord, cfg.QueueSize), done: make(chan struct{}),
	}
}

func (w *auditWriter) queueLen() float64 { return float64(len(w.ch)) }

// Record queues r; it waits while the queue is full. After Close it logs
// the record instead (only requests outliving the shutdown timeout can).
func (w *auditWriter) Record(r AuditRecord) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.log.Error("query_audit record after shutdown", "route", r.Route, "principal", r.Principal, "request_id", r.RequestID)
		w.m.auditLost.Inc()
		return
	}
	w.ch <- r
}

// run inserts batches until the queue is closed and drained. stopCtx ends
// the retrying of a failing insert once shutdown has run out of time.
func (w *auditWriter) run(stopCtx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	buf := make([]AuditRecord, 0, w.batch)
	flush := func() {
		if len(buf) > 0 {
			w.flush(stopCtx, buf)
			buf = buf[:0]
		}
	}
	for {
		select {
		case r, ok := <-w.ch:
			if !ok {
				flush()
				return
			}
			buf = append(buf, r)
			if len(buf) >= w.batch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

func (w *auditWriter) flush(stopCtx context.Context, rows []AuditRecord) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := w.insert(rows)
		if err == nil {
			w.m.auditWritten.Add(float64(len(rows)))
			return
		}
		w.m.auditFailed.Inc()
		if stopCtx.Err() != nil {
			w.m.auditLost.Add(float64(len(rows)))
			w.log.Error("query_audit rows lost: insert failing at shutdown", "batch_rows", len(rows), "attempt", attempt, "err", err)
			return
		}
		w.log.Warn("query_audit insert failed; retrying", "batch_rows", len(rows), "attempt", attempt, "err", err)
		select {
		case <-time.After(backoff):
		case <-stopCtx.Done():
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *auditWriter) insert(rows []AuditRecord) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := w.conn.PrepareBatch(ctx, "INSERT INTO "+w.table+
		" (ts, request_id, tenant_id, tenants, principal, auth_method, role, method, route, path_params, filters,"+
		" rows_returned, status, duration_ms, client_ip, user_agent, error_type)")
	if err != nil {
		return fmt.Errorf("prepare query_audit batch: %w", err)
	}
	defer b.Abort()
	for _, r := range rows {
		id, err := uuid.Parse(r.RequestID)
		if err != nil {
			id = uuid.New()
		}
		if err := b.Append(r.TS, id, r.TenantID, r.Tenants, r.Principal, r.AuthMethod, r.Role, r.Method, r.Route,
			r.PathParams, r.Filters, r.Rows, r.Status, r.DurationMS, r.ClientIP, r.UserAgent, r.ErrorType); err != nil {
			return fmt.Errorf("append query_audit row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert query_audit: %w", err)
	}
	return nil
}

// Close stops accepting records, and waits until run has flushed the queue
// (or given up a failing insert because its stop context ended).
func (w *auditWriter) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	<-w.done
}
