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
	for _, c := range Classes() {
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
		ts.Note = "table has no " + c.timeColumn() + " column; retention skipped"
	}

	volumeOf := map[string]string{}
	vrows, err := m.conn.Query(ctx, `SELECT volume_name, disks FROM system.storage_policies
		WHERE policy_name = (SELECT storage_policy FROM system.tables WHERE database = ? AND name = ?)`, m.o.Database, string(c))
	if err != nil {
		return ts, fmt.Errorf("read storage policy: %w", err)
	}
	for vrows.Next() {
		var vol string
		var disks []string
		if err := vrows.Scan(&vol, &disks); err != nil {
			vrows.Close()
			return ts, fmt.Errorf("read storage policy: %w", err)
		}
		for _, d := range disks {
			volumeOf[d] = vol
		}
	}
	vrows.Close()

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
