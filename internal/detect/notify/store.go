package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
)

// Outbox states.
const (
	statePending = "pending"
	// statePrepared: written by PrepareBatch while the detection was being
	// stored, no attempt recorded yet. Pending, but a restart sends it only
	// if the detection is in the detections table (else it is held until
	// the detector stores it again).
	statePrepared  = "prepared"
	stateDelivered = "delivered"
	stateFailed    = "failed"   // retries exhausted
	stateDisabled  = "disabled" // endpoint answered 410 or was disabled
)

// store is the sender's ClickHouse access. Every value is a bound
// parameter or a batch column; db is validated in New.
type store struct {
	conn    driver.Conn
	db      string
	owner   string // written on every outbox row; "" loads every row
	timeout time.Duration
}

func (s *store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.timeout)
}

// writeOutbox writes the current state of msgs (a newer version of each).
func (s *store) writeOutbox(ctx context.Context, msgs []*message) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".webhook_outbox (delivery_id, detection_id, created_at, tenant_id, endpoint, kind, token_id, body, state, attempts, next_attempt_at, updated_at, version, owner)")
	if err != nil {
		return fmt.Errorf("prepare outbox insert: %w", err)
	}
	defer b.Abort()
	now := time.Now().UTC()
	for _, m := range msgs {
		if err := b.Append(m.id, m.detectionID, m.createdAt, m.tenant, m.endpoint, m.kind, m.tokenID,
			string(m.body), m.state, uint16(min(m.attempts, 65535)), m.next, now, m.version, s.owner); err != nil {
			return fmt.Errorf("append outbox row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into webhook_outbox: %w", err)
	}
	return nil
}

// delivery is one attempt, a webhook_deliveries row.
type delivery struct {
	msg         *message
	at          time.Time
	attempt     int
	status      int
	outcome     string
	latency     time.Duration
	err         string
	nextAttempt *time.Time
}

func (s *store) writeDeliveries(ctx context.Context, ds []delivery) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".webhook_deliveries (delivery_id, detection_id, ts, tenant_id, endpoint, kind, token_id, attempt, status_code, outcome, latency_ms, error, next_attempt_at)")
	if err != nil {
		return fmt.Errorf("prepare deliveries insert: %w", err)
	}
	defer b.Abort()
	for _, d := range ds {
		m := d.msg
		if err := b.Append(m.id, m.detectionID, d.at, m.tenant, m.endpoint, m.kind, m.tokenID,
			uint16(min(d.attempt, 65535)), uint16(d.status), d.outcome,
			float64(d.latency.Microseconds())/1000, d.err, d.nextAttempt); err != nil {
			return fmt.Errorf("append delivery row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into webhook_deliveries: %w", err)
	}
	return nil
}

type revocation struct {
	tenant, tokenID, tokenType, agentID string
	at                                  time.Time
	detectionID                         uuid.UUID
	deliveryID, ruleID, reason          string
}

func (s *store) writeRevocations(ctx context.Context, rs []revocation) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".revocations (tenant_id, token_id, token_type, agent_id, ts, detection_id, delivery_id, rule_id, reason)")
	if err != nil {
		return fmt.Errorf("prepare revocations insert: %w", err)
	}
	defer b.Abort()
	for _, r := range rs {
		if err := b.Append(r.tenant, r.tokenID, r.tokenType, r.agentID, r.at, r.detectionID, r.deliveryID, r.ruleID, r.reason); err != nil {
			return fmt.Errorf("append revocation row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into revocations: %w", err)
	}
	return nil
}

// recentIDs returns the delivery ids written since since (newest first, at
// most limit): Act never resets a delivered message to pending when the
// detector re-detects the same thing after a restart.
func (s *store) recentIDs(ctx context.Context, since time.Time, limit int) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.conn.Query(ctx, "SELECT delivery_id FROM "+s.db+".webhook_outbox WHERE created_at >= ? GROUP BY delivery_id ORDER BY min(created_at) DESC LIMIT ?", since, limit)
	if err != nil {
		return nil, fmt.Errorf("query recent outbox ids: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan outbox id: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// pending returns every message whose latest state is pending or
// prepared, oldest first, each with whether it may be sent now (stored:
// not prepared, or its detection is in the detections table); endpoint ""
// means all endpoints. With an owner, only rows whose latest version this
// owner wrote, or no owner did (written before owners), are returned.
func (s *store) pending(ctx context.Context, endpoint string) ([]*message, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q := `SELECT delivery_id,
	    argMax(detection_id, version), argMax(created_at, version), tenant_id,
	    argMax(endpoint, version) AS ep, argMax(kind, version), argMax(token_id, version),
	    argMax(body, version), argMax(state, version) AS cur_state, argMax(attempts, version),
	    argMax(next_attempt_at, version), max(version),
	    toBool(cur_state != 'prepared' OR argMax(detection_id, version) IN (
	        SELECT detection_id FROM ` + s.db + `.detections
	        WHERE detection_id IN (SELECT detection_id FROM ` + s.db + `.webhook_outbox WHERE state = 'prepared')))
	FROM ` + s.db + `.webhook_outbox
	WHERE (? = '' OR endpoint = ?)
	GROUP BY tenant_id, delivery_id
	HAVING cur_state IN ('pending', 'prepared') AND (? = '' OR argMax(owner, version) IN (?, ''))
	ORDER BY 3`
	rows, err := s.conn.Query(ctx, q, endpoint, endpoint, s.owner, s.owner)
	if err != nil {
		return nil, fmt.Errorf("query pending outbox: %w", err)
	}
	defer rows.Close()
	var out []*message
	for rows.Next() {
		m := &message{}
		var body, state string
		var attempts uint16
		if err := rows.Scan(&m.id, &m.detectionID, &m.createdAt, &m.tenant, &m.endpoint, &m.kind, &m.tokenID,
			&body, &state, &attempts, &m.next, &m.version, &m.stored); err != nil {
			return nil, fmt.Errorf("scan pending outbox: %w", err)
		}
		m.body, m.state, m.attempts = []byte(body), state, int(attempts)
		out = append(out, m)
	}
	return out, rows.Err()
}

// revoked returns the latest revocation time of every token revoked since
// since: from the revocations table and from revoke messages in the outbox
// (a process killed between the two writes of Act still remembers).
func (s *store) revoked(ctx context.Context, since time.Time) (map[string]time.Time, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	q := `SELECT token_id, max(t) FROM (
	    SELECT token_id, ts AS t FROM ` + s.db + `.revocations WHERE ts >= ?
	    UNION ALL
	    SELECT token_id, created_at AS t FROM ` + s.db + `.webhook_outbox WHERE kind = 'revoke' AND created_at >= ?
	) WHERE token_id != '' GROUP BY token_id`
	rows, err := s.conn.Query(ctx, q, since, since)
	if err != nil {
		return nil, fmt.Errorf("query revocations: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var tok string
		var t time.Time
		if err := rows.Scan(&tok, &t); err != nil {
			return nil, fmt.Errorf("scan revocations: %w", err)
		}
		out[tok] = t
	}
	return out, rows.Err()
}

// disabledEndpoints returns the endpoints (name → URL hash) whose latest
// state is disabled.
func (s *store) disabledEndpoints(ctx context.Context) (map[string]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.conn.Query(ctx, `SELECT endpoint, url_sha256 FROM `+s.db+`.webhook_endpoint_state
	    GROUP BY endpoint, url_sha256 HAVING argMax(disabled, version) = 1`)
	if err != nil {
		return nil, fmt.Errorf("query endpoint state: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, hash string
		if err := rows.Scan(&name, &hash); err != nil {
			return nil, fmt.Errorf("scan endpoint state: %w", err)
		}
		out[name+"\x00"+hash] = hash
	}
	return out, rows.Err()
}

func (s *store) setEndpointState(ctx context.Context, name, urlHash string, disabled bool, reason string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".webhook_endpoint_state (endpoint, url_sha256, disabled, reason, updated_at, version)")
	if err != nil {
		return fmt.Errorf("prepare endpoint state insert: %w", err)
	}
	defer b.Abort()
	var d uint8
	if disabled {
		d = 1
	}
	now := time.Now().UTC()
	if err := b.Append(name, urlHash, d, reason, now, uint64(now.UnixNano())); err != nil {
		return fmt.Errorf("append endpoint state: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into webhook_endpoint_state: %w", err)
	}
	return nil
}
