package webhooksink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options of a Sink.
type Options struct {
	// Secrets ("whsec_…"): a message signed with any of them is accepted.
	Secrets []string
	// Tolerance of the timestamp check (DefaultTolerance if 0).
	Tolerance time.Duration
	// MaxBodyBytes bounds a request body (1 MiB if 0).
	MaxBodyBytes int64
	// RememberIDs is how many recent webhook-ids are kept to recognise a
	// retry of a message already accepted (10,000 if 0).
	RememberIDs int
	// Logger receives one Info line per verified revocation (nil: discard).
	Logger *slog.Logger
	// Registerer for the sink's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// OnMessage, if set, is called once per newly verified message (not for
	// retries of an accepted id), before the 2xx is written.
	OnMessage func(Message)
}

// Message is a verified webhook.
type Message struct {
	ID        string
	Timestamp time.Time
	Body      []byte
	// Revocation is set when the body asks for a token's revocation (an
	// agentaudit revoke message or a CAEP session-revoked SET).
	Revocation *Revocation
}

// Revocation names the token a revocation message is about.
type Revocation struct {
	TokenID  string
	TenantID string
	RuleID   string
	Reason   string
}

// Sink is an http.Handler that verifies Standard Webhooks signatures:
// 401 for a bad or missing signature or a stale timestamp, 400 for an
// unreadable body, 204 for a verified message (also for a retry of one
// already accepted, counted as a duplicate).
type Sink struct {
	verifier *Verifier
	opts     Options
	log      *slog.Logger

	requests    *prometheus.CounterVec
	revocations prometheus.Counter

	mu    sync.Mutex
	seen  map[string]struct{}
	order []string
	next  int
}

// New builds a Sink.
func New(opts Options) (*Sink, error) {
	v, err := NewVerifier(opts.Secrets, opts.Tolerance)
	if err != nil {
		return nil, err
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.RememberIDs <= 0 {
		opts.RememberIDs = 10_000
	}
	s := &Sink{
		verifier: v, opts: opts, log: opts.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentaudit_webhooksink_requests_total",
			Help: "Webhook requests received, by outcome (verified, duplicate, bad_signature, bad_timestamp, missing_headers, bad_request).",
		}, []string{"outcome"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentaudit_webhooksink_revocations_total",
			Help: "Verified revocation messages (first delivery of each webhook-id).",
		}),
		seen:  make(map[string]struct{}, opts.RememberIDs),
		order: make([]string, opts.RememberIDs),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.requests, s.revocations} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register sink metrics: %w", err)
			}
		}
	}
	return s, nil
}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		s.requests.WithLabelValues("bad_request").Inc()
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	id, ts, err := s.verifier.Verify(r.Header, body)
	if err != nil {
		outcome := "bad_signature"
		switch {
		case errors.Is(err, ErrMissingHeaders):
			outcome = "missing_headers"
		case errors.Is(err, ErrTimestamp):
			outcome = "bad_timestamp"
		}
		s.requests.WithLabelValues(outcome).Inc()
		s.log.Warn("webhook rejected", "reason", outcome, "remote_addr", r.RemoteAddr)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	if !s.remember(id) {
		s.requests.WithLabelValues("duplicate").Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.requests.WithLabelValues("verified").Inc()
	msg := Message{ID: id, Timestamp: ts, Body: body, Revocation: parseRevocation(body)}
	if rv := msg.Revocation; rv != nil {
		s.revocations.Inc()
		s.log.Info("revocation received", "webhook_id", id, "token_id", rv.TokenID,
			"tenant_id", rv.TenantID, "rule_id", rv.RuleID, "reason", rv.Reason)
	}
	if s.opts.OnMessage != nil {
		s.opts.OnMessage(msg)
	}
	w.WriteHeader(http.StatusNoContent)
}

// remember records id and reports whether it is new. The set is a ring of
// the last RememberIDs ids, so memory stays bounded.
func (s *Sink) remember(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[id]; ok {
		return false
	}
	if old := s.order[s.next]; old != "" {
		delete(s.seen, old)
	}
	s.order[s.next] = id
	s.next = (s.next + 1) % len(s.order)
	s.seen[id] = struct{}{}
	return true
}

// CAEPSessionRevoked is the CAEP event type URI of a session revocation.
const CAEPSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"

// parseRevocation recognises the two revocation bodies agentaudit sends:
// {"type":"agentaudit.token.revoke","data":{…}} and a CAEP SET whose events
// hold session-revoked.
func parseRevocation(body []byte) *Revocation {
	var m struct {
		Type string `json:"type"`
		Data struct {
			TokenID  string `json:"token_id"`
			TenantID string `json:"tenant_id"`
			RuleID   string `json:"rule_id"`
			Reason   string `json:"reason"`
		} `json:"data"`
		SubID struct {
			Format string `json:"format"`
			ID     string `json:"id"`
			JTI    string `json:"jti"`
		} `json:"sub_id"`
		Events map[string]struct {
			ReasonAdmin map[string]string `json:"reason_admin"`
		} `json:"events"`
		Tenant string `json:"tenant_id"`
		Rule   string `json:"rule_id"`
	}
	if json.Unmarshal(body, &m) != nil {
		return nil
	}
	if m.Type == "agentaudit.token.revoke" {
		return &Revocation{TokenID: m.Data.TokenID, TenantID: m.Data.TenantID, RuleID: m.Data.RuleID, Reason: m.Data.Reason}
	}
	if ev, ok := m.Events[CAEPSessionRevoked]; ok {
		tok := m.SubID.ID
		if m.SubID.Format == "jwt_id" {
			tok = m.SubID.JTI
		}
		return &Revocation{TokenID: tok, TenantID: m.Tenant, RuleID: m.Rule, Reason: ev.ReasonAdmin["en"]}
	}
	return nil
}
