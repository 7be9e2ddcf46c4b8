package retention

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// VolumeStatus is one table's data on one volume (disk).
type VolumeStatus struct {
	Volume string `json:"volume"`
	Disk   string `json:"disk"`
	Parts  int    `json:"parts"`
	Rows   uint64 `json:"rows"`
	Bytes  uint64 `json:"bytes"`
	// Oldest and Newest row times (second precision, from the parts'
	// partition-key min/max index; zero when the volume is empty).
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
	// NextMoveDue is when the first part here becomes due to move to the
	// cold volume (zero: none is scheduled). A part moves once all its
	// rows are due.
	NextMoveDue time.Time `json:"next_move_due,omitzero"`
	// NextDeleteDue is when the first rows here become due for deletion
	// (zero: none). Due rows are removed by the next TTL merge of their part
	// (the table setting merge_with_ttl_timeout spaces those merges, default
	// 4 h); rows under a legal hold are due here but kept by the merge.
	NextDeleteDue time.Time `json:"next_delete_due,omitzero"`
}

// TableStatus is the retention state of one class's table.
type TableStatus struct {
	Class Class  `json:"class"`
	Table string `json:"table"`
	// Exists is false for a class whose table is not created (yet).
	Exists bool   `json:"exists"`
	Note   string `json:"note,omitempty"`
	// TTL is the table's TTL clause as the server stores it ("" for none).
	TTL              string         `json:"ttl"`
	TTLOnlyDropParts bool           `json:"ttl_only_drop_parts"`
	Volumes          []VolumeStatus `json:"volumes"`
}

// Status is the retention state of the database: per table and volume,
// with the policy in force and the active legal holds.
type Status struct {
	At            time.Time     `json:"at"`
	Tables        []TableStatus `json:"tables"`
	PolicyApplied bool          `json:"policy_applied"`
	Policy        *Policy       `json:"policy,omitempty"`
	Holds         []Hold        `json:"holds"`
}

// Status reads the retention state from system.tables and system.parts (on
// the server the connection reaches; with a cluster, that replica's parts).
func (m *Manager) Status(ctx context.Context) (*Status, error) {
	st := &Status{At: m.o.Now().UTC()}
	for _, c := range managedTables() {
		ts, err := m.tableStatus(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("retention status of %s: %w", c, err)
		}
		st.Tables = append(st.Tables, ts)
	}
	p, ok, err := m.CurrentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		st.PolicyApplied, st.Policy = true, &p
	}
	if st.Holds, err = m.Holds(ctx, "", false); err != nil {
		return nil, err
	}
	return st, nil
}

// storedTTL extracts the table TTL from a create_table_query.
func storedTTL(createSQL string) string {
	tail := engineTail(createSQL)
	i := strings.Index(tail, " TTL ")
	if i < 0 {
		return ""
	}
	s := tail[i+len(" TTL "):]
	if j := strings.LastIndex(s, " SETTINGS "); j >= 0 {
		s = s[:j]
	}
	return s
}

func (m *Manager) tableStatus(ctx context.Context, c Class) (TableStatus, error) {
	ts := TableStatus{Class: c, Table: m.o.Database + "." + string(c), Volumes: []VolumeStatus{}}
	ti, err := m.tableInfo(ctx, c)
	if err != nil {
		return ts, err
	}
	if !ti.exists {
		ts.Note = "table does not exist; retention skipped"
		return ts, nil
	}
	ts.Exists, ts.TTL, ts.TTLOnlyDropParts = true, storedTTL(ti.createSQL), ti.dropsParts
	if !ti.hasTime {
		ts.Note = c.missingColumnsNote() + "; retention skipped"
	}

	volumeOf, err := m.volumes(ctx, c)
	if err != nil {
		return ts, err
	}

	rows, err := m.conn.Query(ctx, `SELECT disk_name, rows, bytes_on_disk, min_time, max_time,
			delete_ttl_info_min, delete_ttl_info_max, move_ttl_info.max, rows_where_ttl_info.min
		FROM system.parts WHERE database = ? AND table = ? AND active`, m.o.Database, string(c))
	if err != nil {
		return ts, fmt.Errorf("read parts: %w", err)
	}
	defer rows.Close()
	byDisk := map[string]*VolumeStatus{}
	earliest := func(cur *time.Time, t time.Time) {
		if t.Unix() > 0 && (cur.IsZero() || t.Before(*cur)) {
			*cur = t.UTC()
		}
	}
	for rows.Next() {
		var (
			disk                   string
			n, bytes               uint64
			minT, maxT, delMin     time.Time
			delMax                 time.Time
			moveMax, rowsWhereMins []time.Time
		)
		if err := rows.Scan(&disk, &n, &bytes, &minT, &maxT, &delMin, &delMax, &moveMax, &rowsWhereMins); err != nil {
			return ts, fmt.Errorf("read parts: %w", err)
		}
		v := byDisk[disk]
		if v == nil {
			v = &VolumeStatus{Disk: disk, Volume: volumeOf[disk]}
			byDisk[disk] = v
		}
		v.Parts++
		v.Rows += n
		v.Bytes += bytes
		earliest(&v.Oldest, minT)
		if maxT.Unix() > 0 && maxT.After(v.Newest) {
			v.Newest = maxT.UTC()
		}
		if v.Volume != coldVolume {
			for _, t := range moveMax {
				earliest(&v.NextMoveDue, t)
			}
		}
		// An unconditional DELETE drops a whole part once all its rows
		// expired when ttl_only_drop_parts = 1, else starts with its first.
		if ti.dropsParts {
			earliest(&v.NextDeleteDue, delMax)
		} else {
			earliest(&v.NextDeleteDue, delMin)
		}
		for _, t := range rowsWhereMins {
			earliest(&v.NextDeleteDue, t)
		}
	}
	if err := rows.Err(); err != nil {
		return ts, fmt.Errorf("read parts: %w", err)
	}
	for _, v := range byDisk {
		ts.Volumes = append(ts.Volumes, *v)
	}
	sort.Slice(ts.Volumes, func(i, j int) bool { return ts.Volumes[i].Disk < ts.Volumes[j].Disk })
	return ts, nil
}

// TenantVolume is one tenant's rows of one table on one volume.
type TenantVolume struct {
	Volume string    `json:"volume"`
	Disk   string    `json:"disk"`
	Rows   uint64    `json:"rows"`
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
}

// TenantClassStatus is the retention state of one tenant's rows of one
// class, for views that must not show other tenants' numbers (the query
// API: a principal sees only the tenants it may audit).
type TenantClassStatus struct {
	TenantID string `json:"tenant_id"`
	Class    Class  `json:"class"`
	Exists   bool   `json:"exists"`
	Note     string `json:"note,omitempty"`
	// ColdAfter and DeleteAfter are this tenant's ages under the policy in
	// force (zero: never, or no policy applied).
	ColdAfterSeconds   int64 `json:"cold_after_seconds"`
	DeleteAfterSeconds int64 `json:"delete_after_seconds"`
	// Held: a hold covers the whole tenant; HeldAgents: holds on agents.
	Held       bool           `json:"held"`
	HeldAgents []string       `json:"held_agents,omitempty"`
	Volumes    []TenantVolume `json:"volumes"`
	// NextMoveDue: when the oldest row still on the hot volume is due on
	// cold; NextDeleteDue: when the oldest row is due for deletion (zero
	// when nothing is due: no rule, or the tenant is held).
	NextMoveDue   time.Time `json:"next_move_due,omitzero"`
	NextDeleteDue time.Time `json:"next_delete_due,omitzero"`
}

// TenantStatusReport is TenantStatus's answer.
type TenantStatusReport struct {
	At            time.Time           `json:"at"`
	PolicyApplied bool                `json:"policy_applied"`
	Classes       []TenantClassStatus `json:"classes"`
	Holds         []Hold              `json:"holds"`
}

// TenantStatus is the retention state restricted to the given tenants:
// their rows per class and volume (read from the tables, a scan of the
// tenants' key range), their ages under the policy in force and their
// active holds. Nothing about other tenants is read into the answer.
func (m *Manager) TenantStatus(ctx context.Context, tenants []string) (*TenantStatusReport, error) {
	rep := &TenantStatusReport{At: m.o.Now().UTC(), Classes: []TenantClassStatus{}, Holds: []Hold{}}
	if len(tenants) == 0 {
		return rep, nil
	}
	p, applied, err := m.CurrentPolicy(ctx)
	if err != nil {
		return nil, err
	}
	rep.PolicyApplied = applied
	holds, err := m.Holds(ctx, "", false)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, t := range tenants {
		want[t] = true
	}
	for _, h := range holds {
		if want[h.TenantID] {
			rep.Holds = append(rep.Holds, h)
		}
	}
	for _, c := range Classes() {
		ti, err := m.tableInfo(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("retention status of %s: %w", c, err)
		}
		byTenant := map[string]*TenantClassStatus{}
		for _, t := range sortedKeys(want) {
			s := &TenantClassStatus{TenantID: t, Class: c, Exists: ti.exists && ti.hasTime, Volumes: []TenantVolume{}}
			if applied {
				r := p.rule(c, t)
				s.ColdAfterSeconds, s.DeleteAfterSeconds = int64(r.ColdAfter/time.Second), int64(r.DeleteAfter/time.Second)
			}
			for _, h := range rep.Holds {
				if h.TenantID != t {
					continue
				}
				if h.AgentID == "" || !ti.shape.HasAgent {
					s.Held = true
				} else {
					s.HeldAgents = append(s.HeldAgents, h.AgentID)
				}
			}
			byTenant[t] = s
		}
		switch {
		case !ti.exists:
			for _, s := range byTenant {
				s.Note = "table does not exist; retention skipped"
			}
		case !ti.hasTime:
			for _, s := range byTenant {
				s.Note = "table has no " + c.timeColumn() + " column; retention skipped"
			}
		default:
			if err := m.tenantVolumes(ctx, c, tenants, byTenant); err != nil {
				return nil, fmt.Errorf("retention status of %s: %w", c, err)
			}
		}
		for _, t := range sortedKeys(want) {
			s := byTenant[t]
			var oldest, oldestHot time.Time
			for _, v := range s.Volumes {
				if oldest.IsZero() || v.Oldest.Before(oldest) {
					oldest = v.Oldest
				}
				if v.Volume != coldVolume && (oldestHot.IsZero() || v.Oldest.Before(oldestHot)) {
					oldestHot = v.Oldest
				}
			}
			if !oldestHot.IsZero() && s.ColdAfterSeconds > 0 {
				s.NextMoveDue = oldestHot.Add(time.Duration(s.ColdAfterSeconds) * time.Second)
			}
			if !oldest.IsZero() && s.DeleteAfterSeconds > 0 && !s.Held && len(s.HeldAgents) == 0 {
				s.NextDeleteDue = oldest.Add(time.Duration(s.DeleteAfterSeconds) * time.Second)
			}
			rep.Classes = append(rep.Classes, *s)
		}
	}
	return rep, nil
}

func (m *Manager) tenantVolumes(ctx context.Context, c Class, tenants []string, byTenant map[string]*TenantClassStatus) error {
	volumeOf, err := m.volumes(ctx, c)
	if err != nil {
		return err
	}
	ts := c.timeColumn()
	rows, err := m.conn.Query(ctx, "SELECT tenant_id, _disk_name, count(), min("+ts+"), max("+ts+") FROM "+m.table(string(c))+
		" WHERE tenant_id IN (?) GROUP BY tenant_id, _disk_name ORDER BY tenant_id, _disk_name", tenants)
	if err != nil {
		return fmt.Errorf("read rows per volume: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v TenantVolume
		var tenant string
		if err := rows.Scan(&tenant, &v.Disk, &v.Rows, &v.Oldest, &v.Newest); err != nil {
			return fmt.Errorf("read rows per volume: %w", err)
		}
		v.Volume, v.Oldest, v.Newest = volumeOf[v.Disk], v.Oldest.UTC(), v.Newest.UTC()
		if s := byTenant[tenant]; s != nil {
			s.Volumes = append(s.Volumes, v)
		}
	}
	return rows.Err()
}

// volumes maps the disks of c's table's storage policy to their volumes.
func (m *Manager) volumes(ctx context.Context, c Class) (map[string]string, error) {
	volumeOf := map[string]string{}
	rows, err := m.conn.Query(ctx, `SELECT volume_name, disks FROM system.storage_policies
		WHERE policy_name = (SELECT storage_policy FROM system.tables WHERE database = ? AND name = ?)`, m.o.Database, string(c))
	if err != nil {
		return nil, fmt.Errorf("read storage policy: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var vol string
		var disks []string
		if err := rows.Scan(&vol, &disks); err != nil {
			return nil, fmt.Errorf("read storage policy: %w", err)
		}
		for _, d := range disks {
			volumeOf[d] = vol
		}
	}
	return volumeOf, rows.Err()
}
