// Package notify delivers the detector's actions: revocation and
// notification webhooks, signed per Standard Webhooks, through a durable
// outbox in ClickHouse.
//
// The contract (see Sender.Act): a message is written to webhook_outbox
// (state pending) before anything is sent, and Act returns only after
// ClickHouse acknowledged it; then the message goes straight to the
// in-memory send loop. Every attempt is a webhook_deliveries row and a newer
// version of the outbox row. Run loads every pending row at start, so a
// process killed at any instant loses no delivery; it may send a message
// twice (killed after the receiver answered, before the outbox row said
// so): receivers deduplicate by webhook-id, which is deterministic
// (detection id, endpoint, kind) and so stable across retries and restarts.
//
// The detector uses the two halves of ActBatch, PrepareBatch and its
// release, to write the outbox while it stores the detections and to send
// only after both inserts are acknowledged; rows so written are in state
// prepared until their first attempt is recorded, and a restart sends a
// prepared row only if its detection is stored.
package notify

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/migrate"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

// ErrClosed is returned by Act after Run has returned.
var ErrClosed = errors.New("notify: sender stopped")

// deliveryNS namespaces the deterministic webhook ids.
var deliveryNS = uuid.MustParse("5b0c7a4e-6f43-4c55-9d3e-2f1a8c0b9e61")

// DeliveryID is the webhook-id of the message about detection to endpoint
// of kind: the same across retries and restarts.
func DeliveryID(detection uuid.UUID, endpoint, kind string) string {
	u := uuid.NewSHA1(deliveryNS, []byte(detection.String()+"\x00"+endpoint+"\x00"+kind))
	return "msg_" + strings.ReplaceAll(u.String(), "-", "")
}

// message is one outbox row in memory.
type message struct {
	id          string
	detectionID uuid.UUID
	createdAt   time.Time
	tenant      string
	endpoint    string
	kind        string
	tokenID     string
	body        []byte
	state       string
	attempts    int       // attempts made so far
	next        time.Time // when the next attempt is due
	version     uint64
	index       int  // in the endpoint's heap, -1 when not queued
	stored      bool // loaded: its detection is in the detections table
}

// Sender writes outbox rows and delivers them.
type Sender struct {
	cfg  Config
	st   *store
	log  *slog.Logger
	m    *metrics
	eps  []*endpoint
	byNm map[string]*endpoint

	revMu   sync.Mutex
	revoked map[string]time.Time // token_id → latest revocation

	rec      chan delivery // attempts to record (Run's recorder)
	revQMu   sync.Mutex
	revQ     []revocation // revocations rows for the recorder to write
	heldMu   sync.Mutex
	held     map[uuid.UUID][]*message // pending in the outbox, detection not stored (loadPending)
	written  *idSet                   // delivery ids in the outbox (recent ones)
	finished *idSet                   // delivery ids this process delivered or gave up

	verMu   sync.Mutex
	lastVer uint64

	running atomic.Bool
	stopped atomic.Bool
}

type endpoint struct {
	cfg     Endpoint
	keys    [][]byte
	urlHash string
	client  *http.Client

	mu       sync.Mutex
	queue    msgHeap
	known    map[string]*message // pending: queued or in flight
	overflow bool                // some pending messages are only in the outbox
	wake     chan struct{}

	disabled atomic.Bool
}

// New builds a Sender on database db (schema migrated). It resolves the
// endpoints' secrets, loads which endpoints a 410 disabled and warms the
// revocation state; it starts nothing (Run does). Act may be called before
// Run: messages wait in memory (and in the outbox) until Run starts.
func New(cfg Config, conn driver.Conn, db string, log *slog.Logger, reg prometheus.Registerer) (*Sender, error) {
	if err := migrate.CheckIdentifier("database name", db); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Sender{cfg: cfg, st: &store{conn: conn, db: db, owner: cfg.Instance, timeout: cfg.StoreTimeout}, log: log, m: m,
		byNm: map[string]*endpoint{}, revoked: map[string]time.Time{}, written: newIDSet(writtenIDs), finished: newIDSet(writtenIDs),
		held: map[uuid.UUID][]*message{}}
	if s.st.timeout <= 0 {
		s.st.timeout = 10 * time.Second
	}
	if !cfg.Enabled {
		return s, nil
	}
	ctx := context.Background()
	disabled, err := s.st.disabledEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	for _, ec := range cfg.AllEndpoints() {
		keys, err := ec.keys(os.Getenv)
		if err != nil {
			return nil, err
		}
		h := sha256.Sum256([]byte(ec.URL))
		ep := &endpoint{cfg: ec, keys: keys, urlHash: hex.EncodeToString(h[:]), known: map[string]*message{},
			wake: make(chan struct{}, 1), client: &http.Client{
				// No redirects: a signed revocation goes where it was configured to.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
				Transport: &http.Transport{
					Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: ec.MaxConcurrency,
					IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: ec.Timeout,
				},
			}}
		_, gone := disabled[ec.Name+"\x00"+ep.urlHash]
		ep.disabled.Store(ec.Disabled || gone)
		if gone {
			log.Warn("webhook endpoint disabled: it answered 410 Gone earlier", "endpoint", ec.Name)
		}
		s.m.disabled.WithLabelValues(ec.Name).Set(b2f(ep.disabled.Load()))
		s.m.queue.WithLabelValues(ec.Name).Set(0)
		s.eps = append(s.eps, ep)
		s.byNm[ec.Name] = ep
	}
	rev, err := s.st.revoked(ctx, time.Now().Add(-cfg.RevokedLookback))
	if err != nil {
		return nil, err
	}
	s.revoked = rev
	ids, err := s.st.recentIDs(ctx, time.Now().Add(-writtenLookback), writtenIDs)
	if err != nil {
		return nil, err
	}
	for _, id := range slices.Backward(ids) {
		s.written.add(id)
	}
	log.Info("webhook sender ready", "endpoints", len(s.eps), "revoked_tokens", len(rev))
	return s, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// version returns a strictly increasing outbox version (nanoseconds).
func (s *Sender) version() uint64 {
	s.verMu.Lock()
	defer s.verMu.Unlock()
	v := uint64(time.Now().UnixNano())
	if v <= s.lastVer {
		v = s.lastVer + 1
	}
	s.lastVer = v
	return v
}

// Revoked reports whether the product asked for tokenID's revocation (in
// this process or, within the revoked lookback, before it started) and when.
func (s *Sender) Revoked(tokenID string) (time.Time, bool) {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	t, ok := s.revoked[tokenID]
	return t, ok
}

// Action is one stored detection to act on: notify, and ask for the
// revocation of its token if Revoke.
type Action struct {
	Detection event.Detection
	Revoke    bool
	// MessageTime is the Kafka timestamp of the message that triggered
	// the detection (zero if unknown): the start of its end-to-end latency.
	MessageTime time.Time
}

// Act durably queues the messages for detection d: a notify message to
// every enabled notify endpoint of d's tenant and, if revoke and d names a
// token not revoked within the revocation window, a revoke message to every
// revoke endpoint and a revocations row. nil means the outbox rows are
// acknowledged by ClickHouse: they will be delivered even if the process
// dies now. On error nothing is queued in memory and the caller may retry
// Act with the same detection (ids are deterministic; rows already written
// are not duplicated).
func (s *Sender) Act(ctx context.Context, d event.Detection, revoke bool) error {
	return s.ActBatch(ctx, []Action{{Detection: d, Revoke: revoke}})
}

// ActBatch is Act for several detections with one outbox insert: the
// detector hands over everything one detections insert stored, so a burst
// of detections costs one ClickHouse round trip before the first webhook
// is sent, not one per detection. nil means every message of every action
// is in the outbox; on error none is queued and the whole batch may be
// retried.
func (s *Sender) ActBatch(ctx context.Context, acts []Action) error {
	release, err := s.prepare(ctx, acts, statePending)
	if err != nil {
		return err
	}
	release()
	return nil
}

// PrepareBatch is the first half of ActBatch: it writes the outbox rows of
// acts and returns once ClickHouse acknowledged them, but sends nothing;
// release queues them for sending. The detector writes the outbox while
// ClickHouse stores the same detections (two inserts in parallel instead
// of one after the other on the way to the first webhook) and calls
// release only once both are acknowledged, so no webhook leaves before its
// detection is stored. A process that dies between the two leaves pending
// outbox rows whose detection may be missing: Run holds those back (see
// loadPending) until the detection is stored again — its offsets were not
// committed, so the detector re-detects it, with the same id, and its
// PrepareBatch releases the held messages. Without release nothing is
// sent by this process; calling PrepareBatch again for the same actions is
// safe (the rows get a newer version).
func (s *Sender) PrepareBatch(ctx context.Context, acts []Action) (func(), error) {
	return s.prepare(ctx, acts, statePrepared)
}

// prepare writes the outbox rows of acts in state (pending: the caller
// stored the detections already; prepared: it is storing them now).
func (s *Sender) prepare(ctx context.Context, acts []Action, state string) (func(), error) {
	if !s.cfg.Enabled {
		return func() {}, nil
	}
	if s.stopped.Load() {
		return nil, ErrClosed
	}
	now := time.Now().UTC()
	// Reserve revocations first so two detections of one token (in this
	// batch or concurrent) do not both revoke; released, newest first, if
	// the writes fail.
	var releases []func()
	release := func() {
		for _, f := range slices.Backward(releases) {
			f()
		}
	}
	var msgs, held []*message
	var revs []revocation
	built := 0 // messages due, including those already in the outbox
	inBatch := map[string]bool{}
	for i := range acts {
		d := &acts[i].Detection
		// Messages of this detection a restart held back (written, never
		// sent, detection not stored then): sent once it is stored now.
		for _, m := range s.takeHeld(d.ID) {
			inBatch[m.id] = true
			held = append(held, m)
		}
		reserved := false
		if acts[i].Revoke && d.TokenID != "" && s.hasKind(KindRevoke, d.TenantID) {
			s.revMu.Lock()
			prevRev, hadPrev := s.revoked[d.TokenID]
			if !hadPrev || now.Sub(prevRev) >= s.cfg.RevocationWindow {
				s.revoked[d.TokenID] = now
				reserved = true
			}
			s.revMu.Unlock()
			if reserved {
				tok := d.TokenID
				releases = append(releases, func() {
					s.revMu.Lock()
					defer s.revMu.Unlock()
					if hadPrev {
						s.revoked[tok] = prevRev
					} else {
						delete(s.revoked, tok)
					}
				})
			} else {
				for _, ep := range s.eps {
					if ep.cfg.has(KindRevoke, d.TenantID) {
						s.m.dropped.WithLabelValues(ep.cfg.Name, "revocation_deduplicated").Inc()
					}
				}
			}
		}
		var revokeID string
		for _, ep := range s.eps {
			for _, kind := range []string{KindNotify, KindRevoke} {
				if kind == KindRevoke && !reserved || !ep.cfg.has(kind, d.TenantID) {
					continue
				}
				if ep.disabled.Load() {
					s.m.dropped.WithLabelValues(ep.cfg.Name, "endpoint_disabled").Inc()
					continue
				}
				id := DeliveryID(d.ID, ep.cfg.Name, kind)
				built++
				// Messages already in the outbox (re-detection after a
				// restart, or a retried Act) are not written again: a
				// delivered one would be sent twice. The set is in memory
				// (warmed in New) to keep a ClickHouse round trip off the
				// latency path. A revoke message already written means the
				// revocation was recorded: no second revocations row.
				if s.written.has(id) || inBatch[id] {
					continue
				}
				b, err := body(*d, &ep.cfg, kind, s.cfg.Issuer, id)
				if err != nil {
					release()
					s.putHeld(held)
					return nil, fmt.Errorf("render %s body for endpoint %s: %w", kind, ep.cfg.Name, err)
				}
				if kind == KindRevoke && revokeID == "" {
					revokeID = id
				}
				inBatch[id] = true
				msgs = append(msgs, &message{id: id, detectionID: d.ID, createdAt: now, tenant: d.TenantID,
					endpoint: ep.cfg.Name, kind: kind, tokenID: d.TokenID, body: b, state: state,
					next: now, version: s.version(), index: -1})
			}
		}
		if revokeID != "" {
			revs = append(revs, revocation{tenant: d.TenantID, tokenID: d.TokenID,
				tokenType: d.TokenType, agentID: d.AgentID, at: now, detectionID: d.ID,
				deliveryID: revokeID, ruleID: d.RuleID, reason: d.Summary})
		}
	}
	if len(msgs) == 0 && built == 0 {
		release() // nothing to revoke through
	}
	if len(msgs) > 0 {
		if err := s.st.writeOutbox(ctx, msgs); err != nil {
			release()
			s.putHeld(held)
			return nil, err
		}
	}
	// Durable: the caller sends (release), then the revocations are
	// recorded. Their rows come strictly after the outbox rows: a row
	// without its revoke message would make a restarted sender believe the
	// token revoked and suppress the revocation that was never sent. They
	// are written by the recorder, off the latency path; if one is lost (a
	// crash before the recorder's next batch, or an error) the warm-up
	// still finds the revocation through the outbox's revoke message.
	return func() {
		// In memory they are pending now; the outbox row says so with the
		// first attempt's record (a restart before it checks that the
		// detection is stored, see loadPending).
		for _, m := range msgs {
			m.state = statePending
			s.written.add(m.id)
			s.byNm[m.endpoint].push(m, s)
		}
		for _, m := range held {
			m.state = statePending
			if ep, ok := s.byNm[m.endpoint]; ok && !ep.disabled.Load() {
				ep.push(m, s)
			}
		}
		if len(revs) > 0 {
			s.revQMu.Lock()
			s.revQ = append(s.revQ, revs...)
			s.revQMu.Unlock()
		}
	}, nil
}

// takeHeld removes and returns the held messages of a detection.
func (s *Sender) takeHeld(id uuid.UUID) []*message {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	ms := s.held[id]
	delete(s.held, id)
	return ms
}

// putHeld holds messages back again (a PrepareBatch that failed).
func (s *Sender) putHeld(ms []*message) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	for _, m := range ms {
		s.held[m.detectionID] = append(s.held[m.detectionID], m)
	}
}

func (s *Sender) hasKind(kind, tenant string) bool {
	for _, ep := range s.eps {
		if ep.cfg.has(kind, tenant) && !ep.disabled.Load() {
			return true
		}
	}
	return false
}

// push queues m unless it is already known; beyond the queue size it
// stays in the outbox only and is reloaded when the queue drains.
func (ep *endpoint) push(m *message, s *Sender) {
	if s.finished.has(m.id) {
		return
	}
	ep.mu.Lock()
	if _, ok := ep.known[m.id]; ok {
		ep.mu.Unlock()
		return
	}
	if len(ep.known) >= s.cfg.QueueSize {
		ep.overflow = true
		ep.mu.Unlock()
		s.m.dropped.WithLabelValues(ep.cfg.Name, "queue_full").Inc()
		return
	}
	ep.known[m.id] = m
	heap.Push(&ep.queue, m)
	n := len(ep.known)
	ep.mu.Unlock()
	s.m.queue.WithLabelValues(ep.cfg.Name).Set(float64(n))
	ep.signal()
}

func (ep *endpoint) signal() {
	select {
	case ep.wake <- struct{}{}:
	default:
	}
}

// Run loads every pending outbox row, then delivers and retries until ctx
// is cancelled; it returns after the attempts in flight have ended (each is
// bounded by its endpoint's timeout) and their results are recorded.
func (s *Sender) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice")
	}
	defer s.stopped.Store(true)
	if !s.cfg.Enabled || len(s.eps) == 0 {
		<-ctx.Done()
		return nil
	}
	// The outbox must be loaded before anything else is sent (oldest
	// first); ClickHouse being unreachable now is temporary: retry.
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 30*time.Second) {
		err := s.loadPending(ctx, "")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.Error("load webhook outbox; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(jitter(backoff)):
		}
	}
	s.rec = make(chan delivery, 4096)
	recDone := make(chan struct{})
	go func() { s.runRecorder(s.rec); close(recDone) }()
	var wg sync.WaitGroup
	for _, ep := range s.eps {
		wg.Go(func() { s.runEndpoint(ctx, ep) })
	}
	wg.Wait()
	close(s.rec) // every worker has ended: nothing sends any more
	<-recDone
	for _, ep := range s.eps {
		ep.client.CloseIdleConnections()
	}
	return nil
}

// loadPending queues the outbox's pending messages (of one endpoint, or
// all when name is "").
func (s *Sender) loadPending(ctx context.Context, name string) error {
	msgs, err := s.st.pending(ctx, name)
	if err != nil {
		return err
	}
	unknown := map[string]int{}
	held := 0
	for _, m := range msgs {
		ep, ok := s.byNm[m.endpoint]
		if !ok {
			unknown[m.endpoint]++
			continue
		}
		m.index = -1
		if m.next.Before(time.Now()) {
			m.next = time.Now()
		}
		if ep.disabled.Load() {
			continue // marked disabled by runEndpoint
		}
		if m.state == statePrepared {
			if !m.stored {
				// Written while its detection was being stored, and that
				// insert was never acknowledged (or not yet): sent only
				// once the detector stores the detection (PrepareBatch).
				s.putHeld([]*message{m})
				held++
				continue
			}
			m.state = statePending
		}
		ep.push(m, s)
	}
	if held > 0 {
		s.log.Info("webhook messages held until their detection is stored", "messages", held)
	}
	for n, c := range unknown {
		// Not a metric label: the name is not a configured endpoint.
		s.log.Warn("pending webhook messages for an endpoint no longer configured; left in the outbox", "endpoint", n, "messages", c)
	}
	if name == "" {
		s.log.Info("webhook outbox loaded", "pending", len(msgs))
	}
	return nil
}

// runEndpoint is one endpoint's scheduler: due messages go to at most
// MaxConcurrency workers; the rest wait in a heap ordered by due time.
func (s *Sender) runEndpoint(ctx context.Context, ep *endpoint) {
	work := make(chan *message)
	var wg sync.WaitGroup
	for range ep.cfg.MaxConcurrency {
		wg.Go(func() {
			for m := range work {
				s.attempt(ctx, ep, m)
			}
		})
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ep.disabled.Load() {
			s.abandon(ctx, ep)
			select {
			case <-ctx.Done():
				return
			case <-ep.wake:
				continue
			}
		}
		s.reloadIfDrained(ctx, ep)
		m, wait := ep.due(time.Now())
		if m != nil {
			select {
			case work <- m:
				continue
			case <-ctx.Done():
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-ep.wake:
		case <-timer.C:
		}
	}
}

// due pops the first message if it is due, else returns how long to wait.
func (ep *endpoint) due(now time.Time) (*message, time.Duration) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if len(ep.queue) == 0 {
		return nil, time.Hour
	}
	if w := ep.queue[0].next.Sub(now); w > 0 {
		return nil, w
	}
	return heap.Pop(&ep.queue).(*message), 0
}

// reloadIfDrained reloads the endpoint's pending rows from the outbox when
// some did not fit in memory and the queue is down to half.
func (s *Sender) reloadIfDrained(ctx context.Context, ep *endpoint) {
	ep.mu.Lock()
	need := ep.overflow && len(ep.known) <= s.cfg.QueueSize/2
	if need {
		ep.overflow = false
	}
	ep.mu.Unlock()
	if !need {
		return
	}
	if err := s.loadPending(ctx, ep.cfg.Name); err != nil {
		s.log.Error("reload webhook outbox", "endpoint", ep.cfg.Name, "err", err)
		ep.mu.Lock()
		ep.overflow = true
		ep.mu.Unlock()
	}
}

// abandon marks every queued message of a disabled endpoint as disabled in
// the outbox (in-flight ones are finished by their worker).
func (s *Sender) abandon(ctx context.Context, ep *endpoint) {
	ep.mu.Lock()
	var msgs []*message
	for len(ep.queue) > 0 {
		m := heap.Pop(&ep.queue).(*message)
		delete(ep.known, m.id)
		msgs = append(msgs, m)
	}
	n := len(ep.known)
	ep.mu.Unlock()
	if len(msgs) == 0 {
		return
	}
	for _, m := range msgs {
		m.state, m.version = stateDisabled, s.version()
		s.finished.add(m.id)
	}
	s.m.dropped.WithLabelValues(ep.cfg.Name, "endpoint_disabled").Add(float64(len(msgs)))
	s.m.queue.WithLabelValues(ep.cfg.Name).Set(float64(n))
	if err := s.st.writeOutbox(context.WithoutCancel(ctx), msgs); err != nil {
		s.log.Error("mark messages of a disabled endpoint", "endpoint", ep.cfg.Name, "messages", len(msgs), "err", err)
	}
}

// attempt sends m once and records the result. It runs to completion even
// when ctx is cancelled: the request has its own timeout, and its outcome
// must reach the outbox so a restart does not resend a delivered message.
func (s *Sender) attempt(ctx context.Context, ep *endpoint, m *message) {
	ctx = context.WithoutCancel(ctx)
	name := ep.cfg.Name
	m.attempts++
	start := time.Now()
	status, retryAfter, reason, errText := s.send(ctx, ep, m, start)
	lat := time.Since(start)
	s.m.latency.WithLabelValues(name).Observe(lat.Seconds())

	d := delivery{msg: m, at: start.UTC(), attempt: m.attempts, status: status, latency: lat, err: errText}
	switch {
	case status >= 200 && status < 300:
		d.outcome, m.state = "success", stateDelivered
		s.m.sent.WithLabelValues(name, m.kind).Inc()
	case status == http.StatusGone:
		d.outcome, m.state = "disabled", stateDisabled
		s.m.errors.WithLabelValues(name, reason).Inc()
		if ep.disabled.CompareAndSwap(false, true) {
			s.m.disabled.WithLabelValues(name).Set(1)
			s.log.Error("webhook endpoint answered 410 Gone: disabled until its URL changes or it is re-enabled", "endpoint", name)
			if err := s.st.setEndpointState(ctx, name, ep.urlHash, true, "410 Gone"); err != nil {
				s.log.Error("persist endpoint disabled", "endpoint", name, "err", err)
			}
		}
		s.m.dropped.WithLabelValues(name, "endpoint_disabled").Inc()
	case m.attempts >= len(s.cfg.Schedule):
		d.outcome, m.state = "failed", stateFailed
		s.m.errors.WithLabelValues(name, reason).Inc()
		s.m.dropped.WithLabelValues(name, "retries_exhausted").Inc()
		s.log.Warn("webhook message given up", "endpoint", name, "webhook_id", m.id, "attempts", m.attempts, "reason", reason)
	default:
		d.outcome = "retry"
		s.m.errors.WithLabelValues(name, reason).Inc()
		delay := jitter(s.cfg.Schedule[m.attempts])
		if retryAfter > 0 {
			delay = min(retryAfter, s.cfg.MaxRetryAfter)
		}
		m.next = time.Now().Add(delay).UTC()
		next := m.next
		d.nextAttempt = &next
	}
	s.m.attempts.WithLabelValues(name, m.kind, d.outcome).Inc()
	m.version = s.version()
	// The outbox update and the deliveries row are written by the recorder
	// in batches, off this worker, so a slow insert does not hold up the
	// next request. A crash before the batch lands resends a delivered
	// message after restart with the same webhook-id (at least once).
	snap := *m
	d.msg = &snap
	s.rec <- d
	if m.state != statePending {
		// Before it leaves known: an outbox reload that read this message
		// as pending before its final state is written must not queue it again.
		s.finished.add(m.id)
	}
	ep.mu.Lock()
	if m.state == statePending {
		heap.Push(&ep.queue, m)
	} else {
		delete(ep.known, m.id)
	}
	n := len(ep.known)
	ep.mu.Unlock()
	s.m.queue.WithLabelValues(name).Set(float64(n))
	// Wake the scheduler: a retry is queued, or the queue shrank and
	// messages left in the outbox by an overflow may be reloaded.
	ep.signal()
}

// defaultRecordInterval is Config.RecordInterval when unset. The interval
// bounds how long an attempt's result waits to be written. Each write is
// two or three ClickHouse inserts (outbox states, deliveries, revocations),
// off the latency path; every insert makes a part that ClickHouse must
// write and merge, and costs the embedded engine 5-25 ms of CPU. In
// bench-detect (a detection every 100 ms) a 20 ms tick wrote after nearly
// every detection, and 250 ms still made about a third of the inserts the
// detector causes, on the CPU the detections' own inserts wait for. A crash
// loses at most this much of the record: the messages whose delivery it
// would have marked are sent again after the restart with the same
// webhook-id (at least once; receivers deduplicate).
const (
	defaultRecordInterval = time.Second
	recordBatch           = 1000
)

// runRecorder writes attempts (and queued revocations rows) in batches
// until in is closed and drained.
func (s *Sender) runRecorder(in <-chan delivery) {
	var buf []delivery
	every := s.cfg.RecordInterval
	if every <= 0 {
		every = defaultRecordInterval
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case d, ok := <-in:
			if !ok {
				s.record(buf)
				s.recordRevocations()
				return
			}
			buf = append(buf, d)
			if len(buf) >= recordBatch {
				s.record(buf)
				buf = nil
			}
		case <-tick.C:
			s.recordRevocations()
			if len(buf) > 0 {
				s.record(buf)
				buf = nil
			}
		}
	}
}

// recordRevocations writes the revocations rows ActBatch queued.
func (s *Sender) recordRevocations() {
	s.revQMu.Lock()
	revs := s.revQ
	s.revQ = nil
	s.revQMu.Unlock()
	if len(revs) == 0 {
		return
	}
	var err error
	for i, backoff := 0, 100*time.Millisecond; i < 3; i, backoff = i+1, 2*backoff {
		if err = s.st.writeRevocations(context.Background(), revs); err == nil {
			return
		}
		time.Sleep(jitter(backoff))
	}
	s.log.Error("record revocations", "rows", len(revs), "err", err)
}

// record writes the outbox states (first: they decide what a restart
// resends) and then the deliveries rows, retrying a failed insert twice.
func (s *Sender) record(ds []delivery) {
	if len(ds) == 0 {
		return
	}
	// Revocations queued before these attempts first: they were queued
	// before the messages were sent.
	s.recordRevocations()
	msgs := make([]*message, len(ds))
	for i := range ds {
		msgs[i] = ds[i].msg
	}
	try := func(what string, f func(context.Context) error) {
		var err error
		for i, backoff := 0, 100*time.Millisecond; i < 3; i, backoff = i+1, 2*backoff {
			if err = f(context.Background()); err == nil {
				return
			}
			time.Sleep(jitter(backoff))
		}
		s.log.Error("record webhook attempts", "table", what, "rows", len(ds), "err", err)
		for _, d := range ds {
			s.m.dropped.WithLabelValues(d.msg.endpoint, "record_failed").Inc()
		}
	}
	try("webhook_outbox", func(ctx context.Context) error { return s.st.writeOutbox(ctx, msgs) })
	try("webhook_deliveries", func(ctx context.Context) error { return s.st.writeDeliveries(ctx, ds) })
}

// send makes one request. It returns the status (0 without a response),
// the Retry-After of a 429/503, an error reason for metrics and an error
// text for the deliveries table (never the URL or a secret).
func (s *Sender) send(ctx context.Context, ep *endpoint, m *message, at time.Time) (int, time.Duration, string, string) {
	ctx, cancel := context.WithTimeout(ctx, ep.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.cfg.URL, strings.NewReader(string(m.body)))
	if err != nil {
		return 0, 0, "other", "build request failed"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentaudit-notify/1")
	webhooksink.SetHeaders(req.Header, ep.keys, m.id, at, m.body)
	resp, err := ep.client.Do(req)
	if err != nil {
		return 0, 0, errReason(err), errText(err)
	}
	// Drain a little so the connection can be reused; the body is ignored.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return code, 0, "", ""
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		reason := "status_5xx"
		if code == http.StatusTooManyRequests {
			reason = "status_429"
		}
		return code, retryAfter(resp.Header.Get("Retry-After"), time.Now()), reason, resp.Status
	case code == http.StatusGone:
		return code, 0, "status_410", resp.Status
	case code >= 500:
		return code, 0, "status_5xx", resp.Status
	case code >= 400:
		return code, 0, "status_4xx", resp.Status
	}
	return code, 0, "other", resp.Status
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if sec, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && sec >= 0 {
		return time.Duration(sec) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// jitter is full jitter: uniform in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

func errReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "connect"
	}
	return "other"
}

// errText describes a transport error without the URL (url.Error embeds it,
// and a URL may carry credentials).
func errText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// Act skips messages already in the outbox; it remembers the last
// writtenIDs ids, warmed at start with those written in writtenLookback
// (a detector re-detects after a restart only what its uncommitted Kafka
// offsets replay: minutes, not days).
const (
	writtenIDs      = 200_000
	writtenLookback = 24 * time.Hour
)

// idSet is a bounded set of strings: a ring evicts the oldest.
type idSet struct {
	mu   sync.Mutex
	m    map[string]struct{}
	ring []string
	next int
}

func newIDSet(n int) *idSet { return &idSet{m: map[string]struct{}{}, ring: make([]string, n)} }

func (s *idSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	return ok
}

func (s *idSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.m, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.m[id] = struct{}{}
}

// msgHeap orders messages by due time.
type msgHeap []*message

func (h msgHeap) Len() int           { return len(h) }
func (h msgHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h msgHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *msgHeap) Push(x any) {
	m := x.(*message)
	m.index = len(*h)
	*h = append(*h, m)
}
func (h *msgHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	m.index = -1
	*h = old[:len(old)-1]
	return m
}
