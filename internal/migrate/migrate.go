// Package migrate applies the ordered ClickHouse migrations in schema/.
//
// Each migration is a file NNNN_name.sql of one or more statements, rendered
// as a text/template (database, cluster, engine, storage policy). Applied
// migrations are recorded with the SHA-256 of their file text in
// <db>.schema_migrations. Re-running is a no-op; a recorded migration whose
// text changed is refused (ErrChecksumMismatch). Every statement must be
// idempotent (IF NOT EXISTS, ADD COLUMN IF NOT EXISTS, ...) and the record is
// written after the last one, so a run that failed half-way is repaired by the
// next run re-executing the whole migration.
package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Errors callers can test for with errors.Is.
var (
	ErrChecksumMismatch = errors.New("applied migration was changed")
	ErrBadMigration     = errors.New("invalid migration file")
	ErrUnknownApplied   = errors.New("database has a migration this build does not know")
)

// Options select how migrations are rendered.
type Options struct {
	// Database the tables live in (created if missing). Default "agentaudit".
	Database string
	// Cluster, when set, adds ON CLUSTER to every statement and uses
	// Replicated* engines. Empty for a single server.
	Cluster string
	// StoragePolicy for the data tables ("" keeps the server default).
	StoragePolicy string
	Logger        *slog.Logger
}

// Migration is one parsed file.
type Migration struct {
	Version  int
	Name     string
	Checksum string // hex SHA-256 of the file text
	text     string
}

var fileRE = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Load reads and orders the migrations in dir of fsys.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("%w: %s: name must be NNNN_name.sql", ErrBadMigration, e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("%w: %s and %s share version %d", ErrBadMigration, prev, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: m[2], Checksum: hex.EncodeToString(sum[:]), text: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// CheckIdentifier reports an error unless name can be spliced into SQL as an
// identifier (a database, cluster or storage policy name: ClickHouse takes
// no bound parameters there): letters, digits and '_', not starting with a
// digit, at most 64 characters. what names the setting in the error.
func CheckIdentifier(what, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%s %q: must match %s", what, name, identRE)
	}
	return nil
}

func (o *Options) validate() error {
	if o.Database == "" {
		o.Database = "agentaudit"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckIdentifier("database name", o.Database); err != nil {
		return err
	}
	if o.Cluster != "" {
		if err := CheckIdentifier("cluster name", o.Cluster); err != nil {
			return err
		}
	}
	if o.StoragePolicy != "" {
		if err := CheckIdentifier("storage policy", o.StoragePolicy); err != nil {
			return err
		}
	}
	return nil
}

// templateData is what migration templates see.
type templateData struct {
	DB                   string
	OnCluster            string
	StoragePolicySetting string
	cluster              string
}

// Engine renders a MergeTree-family engine: plain on a single server,
// Replicated* with the conventional ZooKeeper path on a cluster.
func (d templateData) Engine(kind, table string) string {
	if d.cluster == "" {
		return kind
	}
	return fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s', '{replica}')", kind, d.DB, table)
}

// EngineVersioned is Engine with a version column, for ReplacingMergeTree
// tables whose rows are replaced by newer versions (state tables).
func (d templateData) EngineVersioned(kind, table, version string) string {
	if d.cluster == "" {
		return kind + "(" + version + ")"
	}
	return fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s', '{replica}', %s)", kind, d.DB, table, version)
}

// Render returns the statements of m for the given options.
func Render(m Migration, o Options) ([]string, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	data := templateData{DB: "`" + o.Database + "`", cluster: o.Cluster}
	if o.Cluster != "" {
		data.OnCluster = "ON CLUSTER `" + o.Cluster + "`"
	}
	if o.StoragePolicy != "" {
		data.StoragePolicySetting = ", storage_policy = '" + o.StoragePolicy + "'"
	}
	tmpl, err := template.New(m.Name).Option("missingkey=error").Parse(m.text)
	if err != nil {
		return nil, fmt.Errorf("%w: %04d_%s: %v", ErrBadMigration, m.Version, m.Name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("%w: %04d_%s: %v", ErrBadMigration, m.Version, m.Name, err)
	}
	stmts := SplitStatements(buf.String())
	if len(stmts) == 0 {
		return nil, fmt.Errorf("%w: %04d_%s has no statements", ErrBadMigration, m.Version, m.Name)
	}
	return stmts, nil
}

// SplitStatements splits SQL text at semicolons that are outside quotes and
// comments, dropping comment-only and empty statements.
func SplitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		s := strings.TrimSpace(cur.String())
		if s != "" && strings.TrimSpace(stripComments(s)) != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				j = len(sql) - i
			}
			cur.WriteString(sql[i : i+j])
			i += j - 1
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			j := strings.Index(sql[i+2:], "*/")
			end := len(sql)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			cur.WriteString(sql[i:end])
			i = end - 1
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(sql) {
				if sql[j] == '\\' {
					j += 2
					continue
				}
				if sql[j] == c {
					break
				}
				j++
			}
			end := min(j+1, len(sql))
			cur.WriteString(sql[i:end])
			i = end - 1
		case c == ';':
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
	}
	return b.String()
}

// Applied is one row of the migrations table.
type Applied struct {
	Version   int
	Name      string
	Checksum  string
	AppliedAt time.Time
}

// Status reads the applied migrations (empty when none).
func Status(ctx context.Context, conn driver.Conn, o Options) ([]Applied, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var exists uint8
	if err := conn.QueryRow(ctx, "SELECT count() > 0 FROM system.tables WHERE database = ? AND name = 'schema_migrations'", o.Database).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look for migrations table: %w", err)
	}
	if exists == 0 {
		return nil, nil
	}
	// Two services starting at once may both record a migration; the rows
	// are identical, so any one of them will do.
	rows, err := conn.Query(ctx, "SELECT version, any(name), any(checksum), min(applied_at) FROM `"+o.Database+"`.schema_migrations GROUP BY version ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read migrations table: %w", err)
	}
	defer rows.Close()
	var out []Applied
	for rows.Next() {
		var a Applied
		var v uint32
		if err := rows.Scan(&v, &a.Name, &a.Checksum, &a.AppliedAt); err != nil {
			return nil, fmt.Errorf("read migrations table: %w", err)
		}
		a.Version = int(v)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Apply runs every migration not yet recorded, in order, and returns those it
// ran. It refuses to run anything when a recorded migration's text changed.
func Apply(ctx context.Context, conn driver.Conn, migrations []Migration, o Options) ([]Migration, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	applied, err := Status(ctx, conn, o)
	if err != nil {
		return nil, err
	}
	known := make(map[int]Migration, len(migrations))
	for _, m := range migrations {
		known[m.Version] = m
	}
	done := make(map[int]bool, len(applied))
	for _, a := range applied {
		m, ok := known[a.Version]
		if !ok {
			return nil, fmt.Errorf("%w: version %d (%s); is this an older build?", ErrUnknownApplied, a.Version, a.Name)
		}
		if m.Checksum != a.Checksum {
			return nil, fmt.Errorf("%w: %04d_%s.sql has sha256 %s but %s was applied on %s; add a new migration instead of editing an applied one",
				ErrChecksumMismatch, m.Version, m.Name, m.Checksum, a.Checksum, a.AppliedAt.Format(time.RFC3339))
		}
		done[a.Version] = true
	}
	onCluster := ""
	if o.Cluster != "" {
		onCluster = " ON CLUSTER `" + o.Cluster + "`"
	}
	bootstrap := []string{
		"CREATE DATABASE IF NOT EXISTS `" + o.Database + "`" + onCluster,
		"CREATE TABLE IF NOT EXISTS `" + o.Database + "`.schema_migrations" + onCluster + ` (
			version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC')
		) ENGINE = ` + templateData{DB: o.Database, cluster: o.Cluster}.Engine("ReplacingMergeTree", "schema_migrations") + ` ORDER BY version`,
	}
	for _, s := range bootstrap {
		if err := conn.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("create migrations table: %w", err)
		}
	}
	var ran []Migration
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		stmts, err := Render(m, o)
		if err != nil {
			return ran, err
		}
		start := time.Now()
		for i, s := range stmts {
			if err := conn.Exec(ctx, s); err != nil {
				return ran, fmt.Errorf("migration %04d_%s statement %d of %d: %w", m.Version, m.Name, i+1, len(stmts), err)
			}
		}
		if err := conn.Exec(ctx, "INSERT INTO `"+o.Database+"`.schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
			uint32(m.Version), m.Name, m.Checksum, time.Now().UTC()); err != nil {
			return ran, fmt.Errorf("record migration %04d_%s: %w", m.Version, m.Name, err)
		}
		o.Logger.Info("applied migration", "version", m.Version, "name", m.Name, "statements", len(stmts), "duration", time.Since(start))
		ran = append(ran, m)
	}
	return ran, nil
}
