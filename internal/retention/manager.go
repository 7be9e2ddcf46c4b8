package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
)

// coldVolume is the volume TTL moves rows to: the cold volume of the
// "tiered" storage policy of the embedded engine (chdb.ColdVolume) and of
// the docker-compose ClickHouse config.
const coldVolume = "cold"

// Options configure a Manager.
type Options struct {
	// Database holding the tables. Default "agentaudit".
	Database string
	// Cluster, when set, runs every statement ON CLUSTER and waits for
	// merges on every replica (untested here: the test engine is one node).
	Cluster string
	// Floors default to DefaultFloors().
	Floors Floors
	// MergeWait bounds the wait for running merges before a TTL change
	// (default 5 minutes).
	MergeWait time.Duration
	Logger    *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Manager applies retention policies and legal holds to one database.
type Manager struct {
	conn driver.Conn
	o    Options
	log  *slog.Logger
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Errors of hold operations.
var (
	ErrInvalidHold  = errors.New("invalid legal hold")
	ErrHoldNotFound = errors.New("no such active legal hold")
)

// New returns a Manager on conn.
func New(conn driver.Conn, o Options) (*Manager, error) {
	if o.Database == "" {
		o.Database = "agentaudit"
	}
	if !identRE.MatchString(o.Database) {
		return nil, fmt.Errorf("database name %q: must match %s", o.Database, identRE)
	}
	if o.Cluster != "" && !identRE.MatchString(o.Cluster) {
		return nil, fmt.Errorf("cluster name %q: must match %s", o.Cluster, identRE)
	}
	if o.Floors == nil {
		o.Floors = DefaultFloors()
	}
	if o.MergeWait <= 0 {
		o.MergeWait = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Manager{conn: conn, o: o, log: o.Logger}, nil
}

func (m *Manager) table(name string) string { return "`" + m.o.Database + "`.`" + name + "`" }

func (m *Manager) onCluster() string {
	if m.o.Cluster == "" {
		return ""
	}
	return " ON CLUSTER `" + m.o.Cluster + "`"
}

// ApplyOptions select how a policy is applied.
type ApplyOptions struct {
	// DryRun computes and returns the statements without running them.
	DryRun bool
	// AllowBelowFloor applies rules under their class floor; each one is
	// logged at Warn and recorded in retention_audit as floor_override.
	AllowBelowFloor bool
	// Actor and Reason are recorded (Reason is required with AllowBelowFloor).
	Actor  string
	Reason string
}

// TableResult is what applying a policy did to one table.
type TableResult struct {
	Class Class  `json:"class"`
	Table string `json:"table"`
	// State: "unchanged", "changed" (or "would change" in a dry run),
	// "skipped" when the table does not exist or lacks the time column.
	State string `json:"state"`
	Note  string `json:"note,omitempty"`
	// TTL is the clause rendered from the policy ("" for none).
	TTL string `json:"ttl"`
	// Statements run (or that would run), in order. A line starting with
	// "--" is a step that is not SQL (waiting for merges).
	Statements []string `json:"statements,omitempty"`
}

// Result is what an apply (or a hold change) did.
type Result struct {
	Tables         []TableResult    `json:"tables"`
	FloorOverrides []FloorViolation `json:"floor_overrides,omitempty"`
	// Changed counts tables whose TTL or settings were (or would be) changed.
	Changed int `json:"changed"`
}

// Apply validates p against the floors, records it as the policy in force
// and makes every table's TTL match it and the active legal holds. Tables
// whose TTL already matches are left alone, so applying the same policy
// twice changes nothing (and records nothing the second time).
func (m *Manager) Apply(ctx context.Context, p Policy, o ApplyOptions) (*Result, error) {
	below, err := p.Validate(m.o.Floors, o.AllowBelowFloor)
	if err != nil {
		return nil, err
	}
	if len(below) > 0 && strings.TrimSpace(o.Reason) == "" {
		return nil, fmt.Errorf("%w: a reason is required to apply a policy under a floor", ErrBelowFloor)
	}
	for _, v := range below {
		m.log.Warn("retention under the floor of its class applied by override",
			"class", string(v.Class), "tenant_id", v.Tenant, "delete_after", v.DeleteAfter.String(),
			"floor", v.Floor.String(), "actor", o.Actor, "reason", o.Reason, "dry_run", o.DryRun)
	}
	holds, err := m.Holds(ctx, "", false)
	if err != nil {
		return nil, err
	}
	res, err := m.plan(ctx, p, holds, true)
	if err != nil {
		return nil, err
	}
	res.FloorOverrides = below
	if o.DryRun {
		for i := range res.Tables {
			if res.Tables[i].State == "changed" {
				res.Tables[i].State = "would change"
			}
		}
		return res, nil
	}
	if res.Changed == 0 {
		// Nothing to change; record only when the policy in force differs
		// (a rule of a class whose table does not exist yet), so applying
		// the same policy again records nothing, overrides included.
		cur, ok, err := m.CurrentPolicy(ctx)
		if err != nil {
			return nil, err
		}
		if ok && samePolicy(cur, p) {
			return res, nil
		}
	}
	// Record first: a hold placed while this apply runs re-renders from the
	// recorded policy, so it must already be this one.
	if err := m.recordPolicy(ctx, p, o, res); err != nil {
		return nil, err
	}
	for _, v := range below {
		details, _ := json.Marshal(map[string]any{"delete_after": v.DeleteAfter.String(), "floor": v.Floor.String()})
		if err := m.audit(ctx, auditRow{tenant: v.Tenant, action: "floor_override", actor: o.Actor, class: string(v.Class), reason: o.Reason, details: string(details)}); err != nil {
			return nil, err
		}
	}
	if err := m.execute(ctx, res); err != nil {
		return res, err
	}
	return m.converge(ctx, p, holds, res, true)
}

// ApplyIfNone applies p only when no policy was ever applied, for services
// that start on a fresh database (the all-in-one): an operator's policy,
// once applied, is never replaced by a service's default. applied reports
// whether p was applied.
func (m *Manager) ApplyIfNone(ctx context.Context, p Policy, o ApplyOptions) (res *Result, applied bool, err error) {
	if _, ok, err := m.CurrentPolicy(ctx); err != nil || ok {
		return nil, false, err
	}
	res, err = m.Apply(ctx, p, o)
	return res, err == nil, err
}

// converge re-reads the holds after the TTLs were changed and applies again
// while they differ from the set the TTLs were rendered from, so a hold
// placed concurrently with this change is in force when this returns.
func (m *Manager) converge(ctx context.Context, p Policy, used []Hold, res *Result, materialize bool) (*Result, error) {
	for range 5 {
		now, err := m.Holds(ctx, "", false)
		if err != nil {
			return res, err
		}
		if sameHolds(now, used) {
			return res, nil
		}
		again, err := m.plan(ctx, p, now, materialize)
		if err != nil {
			return res, err
		}
		if err := m.execute(ctx, again); err != nil {
			return res, err
		}
		res.Tables = append(res.Tables, again.Tables...)
		res.Changed += again.Changed
		used = now
	}
	return res, errors.New("legal holds kept changing while the TTLs were applied; run apply again")
}

func samePolicy(a, b Policy) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

func sameHolds(a, b []Hold) bool {
	ids := func(hs []Hold) []string {
		var out []string
		for _, h := range hs {
			if !h.Released {
				out = append(out, h.ID)
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(ids(a), ids(b))
}

// plan computes, per table, the TTL for p and holds and the statements that
// bring the table there.
func (m *Manager) plan(ctx context.Context, p Policy, holds []Hold, materialize bool) (*Result, error) {
	res := &Result{}
	for _, c := range managedTables() {
		tr, err := m.planTable(ctx, c, p, holds, materialize)
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", c, err)
		}
		if tr.State == "changed" {
			res.Changed++
		}
		res.Tables = append(res.Tables, tr)
	}
	return res, nil
}

type tableInfo struct {
	exists     bool
	createSQL  string
	hasTime    bool
	dropsParts bool
	shape      TableShape
	policy     string // storage policy
}

func (m *Manager) tableInfo(ctx context.Context, c Class) (tableInfo, error) {
	var ti tableInfo
	rows, err := m.conn.Query(ctx, "SELECT create_table_query, storage_policy FROM system.tables WHERE database = ? AND name = ?", m.o.Database, string(c))
	if err != nil {
		return ti, fmt.Errorf("read table definition: %w", err)
	}
	for rows.Next() {
		if err := rows.Scan(&ti.createSQL, &ti.policy); err != nil {
			rows.Close()
			return ti, fmt.Errorf("read table definition: %w", err)
		}
		ti.exists = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ti, fmt.Errorf("read table definition: %w", err)
	}
	if !ti.exists {
		return ti, nil
	}
	var cols []string
	if err := m.conn.QueryRow(ctx, "SELECT groupArray(name) FROM system.columns WHERE database = ? AND table = ?", m.o.Database, string(c)).Scan(&cols); err != nil {
		return ti, fmt.Errorf("read columns: %w", err)
	}
	ti.hasTime = true
	for _, col := range c.requiredColumns() {
		ti.hasTime = ti.hasTime && slices.Contains(cols, col)
	}
	ti.shape.HasAgent = slices.Contains(cols, "agent_id")
	ti.dropsParts = strings.Contains(ti.createSQL, "ttl_only_drop_parts = 1")
	var n uint64
	if err := m.conn.QueryRow(ctx, "SELECT count() FROM system.storage_policies WHERE policy_name = ? AND volume_name = ?", ti.policy, coldVolume).Scan(&n); err != nil {
		return ti, fmt.Errorf("read storage policy: %w", err)
	}
	ti.shape.HasCold = n > 0
	return ti, nil
}

// canonicalTTL asks the server to format ttl the way it stores it in
// create_table_query, so "already applied" is an exact text comparison.
func (m *Manager) canonicalTTL(ctx context.Context, c Class, ttl string) (string, error) {
	var out string
	stmt := "ALTER TABLE " + m.table(string(c)) + " MODIFY TTL " + ttl
	if err := m.conn.QueryRow(ctx, "SELECT formatQuerySingleLine(?)", stmt).Scan(&out); err != nil {
		return "", fmt.Errorf("format ttl: %w", err)
	}
	// "ALTER TABLE db.t (MODIFY TTL <ttl>)"
	i := strings.Index(out, "MODIFY TTL ")
	if i < 0 || !strings.HasSuffix(out, ")") {
		return "", fmt.Errorf("format ttl: unexpected form %q", out)
	}
	return out[i+len("MODIFY TTL ") : len(out)-1], nil
}

// hasTTL reports whether createSQL carries exactly the table TTL canonical
// ("" for none): the text after " TTL " up to the SETTINGS clause or the end.
func hasTTL(createSQL, canonical string) bool {
	if canonical == "" {
		return !strings.Contains(engineTail(createSQL), " TTL ")
	}
	tail := engineTail(createSQL)
	return strings.Contains(tail, " TTL "+canonical+" SETTINGS ") || strings.HasSuffix(tail, " TTL "+canonical)
}

// engineTail is the part of a create_table_query after the columns (column
// TTLs, if a table had any, are not table TTLs).
func engineTail(createSQL string) string {
	if i := strings.LastIndex(createSQL, ") ENGINE = "); i >= 0 {
		return createSQL[i:]
	}
	return createSQL
}

func (m *Manager) planTable(ctx context.Context, c Class, p Policy, holds []Hold, materialize bool) (TableResult, error) {
	tr := TableResult{Class: c, Table: m.o.Database + "." + string(c)}
	ti, err := m.tableInfo(ctx, c)
	if err != nil {
		return tr, err
	}
	if !ti.exists {
		tr.State, tr.Note = "skipped", "table does not exist (not created by this build's migrations yet); nothing to apply"
		return tr, nil
	}
	if !ti.hasTime {
		tr.State, tr.Note = "skipped", c.missingColumnsNote()+"; cannot age its rows"
		return tr, nil
	}
	tr.TTL = RenderTTL(c, p, holds, ti.shape)
	if !ti.shape.HasCold && p.Classes[c].ColdAfter > 0 {
		tr.Note = fmt.Sprintf("storage policy %q has no volume %q: rows are not moved, deletes apply", ti.policy, coldVolume)
	}
	canonical := ""
	if tr.TTL != "" {
		if canonical, err = m.canonicalTTL(ctx, c, tr.TTL); err != nil {
			return tr, err
		}
	}
	tbl := m.table(string(c))
	// Not on trace_index: its rules all have a WHERE (row by row anyway),
	// and it has no daily partitions whose parts could be dropped whole.
	if !ti.dropsParts && c != TraceIndex {
		tr.Statements = append(tr.Statements, "ALTER TABLE "+tbl+m.onCluster()+" MODIFY SETTING ttl_only_drop_parts = 1")
	}
	if !hasTTL(ti.createSQL, canonical) {
		// materialize_ttl_after_modify = 0: with it on, a MergeTree ALTER
		// waits for its MATERIALIZE TTL mutation, which cannot run while
		// merges are stopped (the ALTER would hang inside the fence). The
		// TTL is materialized after the fence instead, as a mutation of its
		// own that runs under the new TTL.
		change := "ALTER TABLE " + tbl + m.onCluster() + " REMOVE TTL"
		if tr.TTL != "" {
			change = "ALTER TABLE " + tbl + m.onCluster() + " MODIFY TTL " + tr.TTL + " SETTINGS materialize_ttl_after_modify = 0"
		}
		tr.Statements = append(tr.Statements,
			"SYSTEM STOP MERGES"+m.onCluster()+" "+tbl,
			waitMergesStep+" "+tbl,
			change,
			"SYSTEM START MERGES"+m.onCluster()+" "+tbl,
		)
		if tr.TTL != "" && materialize {
			tr.Statements = append(tr.Statements, "ALTER TABLE "+tbl+m.onCluster()+" MATERIALIZE TTL SETTINGS mutations_sync = 0")
		}
	}
	tr.State = "unchanged"
	if len(tr.Statements) > 0 {
		tr.State = "changed"
	}
	return tr, nil
}

const waitMergesStep = "-- wait until no merge or mutation is running on"

// execute runs the planned statements. A TTL change is fenced by STOP/START
// MERGES with a wait in between (see the package doc): merges that started
// under the old TTL are cancelled or finished before the new TTL is in
// place, and merges are started again even when the change failed.
func (m *Manager) execute(ctx context.Context, res *Result) error {
	for _, tr := range res.Tables {
		if tr.State != "changed" {
			continue
		}
		if err := m.executeTable(ctx, tr); err != nil {
			return fmt.Errorf("apply retention to %s: %w", tr.Table, err)
		}
		m.log.Info("retention ttl applied", "table", tr.Table, "ttl", tr.TTL)
	}
	return nil
}

func (m *Manager) executeTable(ctx context.Context, tr TableResult) (err error) {
	stopped := false
	start := func(ctx context.Context) error {
		if !stopped {
			return nil
		}
		if err := m.conn.Exec(ctx, "SYSTEM START MERGES"+m.onCluster()+" "+m.table(string(tr.Class))); err != nil {
			return fmt.Errorf("start merges: %w", err)
		}
		stopped = false
		return nil
	}
	defer func() {
		// Restart merges whatever happened, on a context of its own: a
		// table left without merges grows parts until inserts fail.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, start(sctx))
	}()
	for _, stmt := range tr.Statements {
		switch {
		case strings.HasPrefix(stmt, waitMergesStep):
			if err := m.waitMerges(ctx, string(tr.Class)); err != nil {
				return err
			}
		case strings.HasPrefix(stmt, "SYSTEM STOP MERGES"):
			if err := m.conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("stop merges: %w", err)
			}
			stopped = true
		case strings.HasPrefix(stmt, "SYSTEM START MERGES"):
			if err := start(ctx); err != nil {
				return err
			}
		default:
			if err := m.conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
	}
	return nil
}

// waitMerges polls system.merges (on every replica with a cluster) until no
// merge or mutation of table is running.
func (m *Manager) waitMerges(ctx context.Context, table string) error {
	from := "system.merges"
	if m.o.Cluster != "" {
		from = "clusterAllReplicas('" + m.o.Cluster + "', system.merges)"
	}
	deadline := m.o.Now().Add(m.o.MergeWait)
	for {
		var n uint64
		if err := m.conn.QueryRow(ctx, "SELECT count() FROM "+from+" WHERE database = ? AND table = ?", m.o.Database, table).Scan(&n); err != nil {
			return fmt.Errorf("read running merges: %w", err)
		}
		if n == 0 {
			return nil
		}
		if m.o.Now().After(deadline) {
			return fmt.Errorf("%d merges still running on %s after %s with merges stopped", n, table, m.o.MergeWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type auditRow struct {
	tenant, action, actor, class, agent, holdID, reason, details string
}

func (m *Manager) audit(ctx context.Context, r auditRow) error {
	err := m.conn.Exec(ctx, "INSERT INTO "+m.table("retention_audit")+
		" (tenant_id, ts, action, actor, class, agent_id, hold_id, reason, details) VALUES (?, fromUnixTimestamp64Nano(?), ?, ?, ?, ?, ?, ?, ?)",
		r.tenant, m.o.Now().UnixNano(), r.action, r.actor, r.class, r.agent, r.holdID, r.reason, r.details)
	if err != nil {
		return fmt.Errorf("record %s in retention_audit: %w", r.action, err)
	}
	return nil
}

type policyRecord struct {
	Policy     Policy   `json:"policy"`
	Statements []string `json:"statements"`
}

func (m *Manager) recordPolicy(ctx context.Context, p Policy, o ApplyOptions, res *Result) error {
	var stmts []string
	for _, tr := range res.Tables {
		stmts = append(stmts, tr.Statements...)
	}
	b, err := json.Marshal(policyRecord{Policy: p, Statements: stmts})
	if err != nil {
		return fmt.Errorf("encode policy: %w", err)
	}
	return m.audit(ctx, auditRow{action: "policy_applied", actor: o.Actor, reason: o.Reason, details: string(b)})
}

// CurrentPolicy is the policy recorded by the latest apply; ok is false
// when no policy was ever applied (then no table has a retention TTL).
func (m *Manager) CurrentPolicy(ctx context.Context) (p Policy, ok bool, err error) {
	rows, err := m.conn.Query(ctx, "SELECT details FROM "+m.table("retention_audit")+
		" WHERE tenant_id = '' AND action = 'policy_applied' ORDER BY ts DESC LIMIT 1")
	if err != nil {
		return p, false, fmt.Errorf("read current policy: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var details string
		if err := rows.Scan(&details); err != nil {
			return p, false, fmt.Errorf("read current policy: %w", err)
		}
		var rec policyRecord
		if err := json.Unmarshal([]byte(details), &rec); err != nil {
			return p, false, fmt.Errorf("decode current policy: %w", err)
		}
		return rec.Policy, true, nil
	}
	return p, false, rows.Err()
}

// HoldRequest places a legal hold.
type HoldRequest struct {
	TenantID string
	AgentID  string // optional: "" holds the whole tenant
	Reason   string
	By       string
}

// PlaceHold records a legal hold and puts it in force: when PlaceHold
// returns nil, every table's TTL excludes the held rows and no merge that
// started under the previous TTL is still running (see the package doc).
// When it returns an error after the hold was recorded, the returned Hold
// is set: the hold is recorded but may not be in force; retry with Enforce.
func (m *Manager) PlaceHold(ctx context.Context, r HoldRequest) (Hold, *Result, error) {
	if err := validID("tenant", r.TenantID); err != nil {
		return Hold{}, nil, fmt.Errorf("%w: %v", ErrInvalidHold, err)
	}
	if r.AgentID != "" {
		if err := validID("agent", r.AgentID); err != nil {
			return Hold{}, nil, fmt.Errorf("%w: %v", ErrInvalidHold, err)
		}
	}
	if strings.TrimSpace(r.Reason) == "" || strings.TrimSpace(r.By) == "" {
		return Hold{}, nil, fmt.Errorf("%w: a reason and who places it are required", ErrInvalidHold)
	}
	now := m.o.Now().UTC().Truncate(time.Millisecond)
	h := Hold{ID: uuid.NewString(), TenantID: r.TenantID, AgentID: r.AgentID, Reason: r.Reason, PlacedBy: r.By, PlacedAt: now}
	if err := m.writeHold(ctx, h); err != nil {
		return Hold{}, nil, err
	}
	if err := m.audit(ctx, auditRow{tenant: h.TenantID, action: "hold_placed", actor: h.PlacedBy, agent: h.AgentID, holdID: h.ID, reason: h.Reason}); err != nil {
		return h, nil, err
	}
	m.log.Info("legal hold placed", "hold_id", h.ID, "tenant_id", h.TenantID, "agent_id", h.AgentID, "actor", h.PlacedBy)
	res, err := m.enforce(ctx, false)
	if err != nil {
		return h, res, fmt.Errorf("legal hold %s recorded but not yet in force: %w", h.ID, err)
	}
	return h, res, nil
}

// ReleaseHold lifts an active hold; the rows it kept are deleted by the
// next TTL merges if they are past their age.
func (m *Manager) ReleaseHold(ctx context.Context, holdID, by, reason string) (Hold, *Result, error) {
	if strings.TrimSpace(reason) == "" || strings.TrimSpace(by) == "" {
		return Hold{}, nil, fmt.Errorf("%w: a reason and who releases it are required", ErrInvalidHold)
	}
	holds, err := m.Holds(ctx, "", false)
	if err != nil {
		return Hold{}, nil, err
	}
	i := slices.IndexFunc(holds, func(h Hold) bool { return h.ID == holdID })
	if i < 0 {
		return Hold{}, nil, fmt.Errorf("%w: %s", ErrHoldNotFound, holdID)
	}
	h := holds[i]
	h.Released, h.ReleasedBy, h.ReleasedAt, h.ReleaseReason = true, by, m.o.Now().UTC().Truncate(time.Millisecond), reason
	if err := m.writeHold(ctx, h); err != nil {
		return Hold{}, nil, err
	}
	if err := m.audit(ctx, auditRow{tenant: h.TenantID, action: "hold_released", actor: by, agent: h.AgentID, holdID: h.ID, reason: reason}); err != nil {
		return h, nil, err
	}
	m.log.Info("legal hold released", "hold_id", h.ID, "tenant_id", h.TenantID, "agent_id", h.AgentID, "actor", by)
	res, err := m.Enforce(ctx)
	if err != nil {
		// Failing here keeps more data than the policy asks, never less.
		return h, res, fmt.Errorf("legal hold %s released but the TTLs still keep its rows: %w", h.ID, err)
	}
	return h, res, nil
}

// Enforce re-renders every table's TTL from the policy in force and the
// active holds, and re-materializes the TTL of changed tables. Without an
// applied policy no table has a retention TTL and there is nothing to do.
func (m *Manager) Enforce(ctx context.Context) (*Result, error) { return m.enforce(ctx, true) }

// enforce is Enforce; materialize false skips the MATERIALIZE TTL rewrite
// (placing a hold only narrows deletion: merges evaluate rows against the
// new TTL anyway, so rewriting every part would buy nothing).
func (m *Manager) enforce(ctx context.Context, materialize bool) (*Result, error) {
	p, ok, err := m.CurrentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		m.log.Info("no retention policy applied yet; no TTL deletes data")
		return &Result{}, nil
	}
	holds, err := m.Holds(ctx, "", false)
	if err != nil {
		return nil, err
	}
	res, err := m.plan(ctx, p, holds, materialize)
	if err != nil {
		return nil, err
	}
	if err := m.execute(ctx, res); err != nil {
		return res, err
	}
	return m.converge(ctx, p, holds, res, materialize)
}

func (m *Manager) writeHold(ctx context.Context, h Hold) error {
	id, err := uuid.Parse(h.ID)
	if err != nil {
		return fmt.Errorf("%w: hold id %q: %v", ErrInvalidHold, h.ID, err)
	}
	var released uint8
	releasedAt := h.ReleasedAt
	if h.Released {
		released = 1
	} else {
		releasedAt = time.Unix(0, 0).UTC()
	}
	err = m.conn.Exec(ctx, "INSERT INTO "+m.table("legal_holds")+
		" (tenant_id, hold_id, agent_id, reason, placed_by, placed_at, released, released_by, released_at, release_reason, version) VALUES (?, ?, ?, ?, ?, fromUnixTimestamp64Milli(?), ?, ?, fromUnixTimestamp64Milli(?), ?, ?)",
		h.TenantID, id, h.AgentID, h.Reason, h.PlacedBy, h.PlacedAt.UnixMilli(), released, h.ReleasedBy, releasedAt.UnixMilli(), h.ReleaseReason, uint64(m.o.Now().UnixNano()))
	if err != nil {
		return fmt.Errorf("write legal hold: %w", err)
	}
	return nil
}

// Holds lists legal holds, of one tenant or all (tenant ""), active only
// unless withReleased.
func (m *Manager) Holds(ctx context.Context, tenant string, withReleased bool) ([]Hold, error) {
	q := "SELECT tenant_id, toString(hold_id), agent_id, reason, placed_by, placed_at, released, released_by, released_at, release_reason FROM " +
		m.table("legal_holds") + " FINAL WHERE (? = '' OR tenant_id = ?) AND (? = 1 OR released = 0) ORDER BY tenant_id, placed_at, hold_id"
	var all uint8
	if withReleased {
		all = 1
	}
	rows, err := m.conn.Query(ctx, q, tenant, tenant, all)
	if err != nil {
		return nil, fmt.Errorf("read legal holds: %w", err)
	}
	defer rows.Close()
	var out []Hold
	for rows.Next() {
		var h Hold
		var released uint8
		if err := rows.Scan(&h.TenantID, &h.ID, &h.AgentID, &h.Reason, &h.PlacedBy, &h.PlacedAt, &released, &h.ReleasedBy, &h.ReleasedAt, &h.ReleaseReason); err != nil {
			return nil, fmt.Errorf("read legal holds: %w", err)
		}
		h.Released = released == 1
		if !h.Released {
			h.ReleasedAt = time.Time{}
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
