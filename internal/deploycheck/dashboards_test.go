package deploycheck

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// TestDashboardQueries runs every ClickHouse query of every dashboard —
// template variables first, in order, each feeding the next, then every
// panel target — against the embedded ClickHouse holding simulated traffic
// that went through the real ingest pipeline. A query that does not run,
// returns no rows on that data, or (time series) has no time column fails.
func TestDashboardQueries(t *testing.T) {
	dashboards, err := LoadDashboards(repoPath(t, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	data := loadSimData(t)
	ctx := context.Background()
	r := TimeRange{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Interval: 30 * time.Second}
	ran := 0
	for _, d := range dashboards {
		t.Run(d.Title, func(t *testing.T) {
			vars := map[string][]string{}
			for _, v := range d.Variables {
				values, err := variableValues(ctx, data.conn, v, r, vars)
				if err != nil {
					t.Errorf("variable %s: %v", v.Name, err)
					continue
				}
				if len(values) == 0 {
					t.Errorf("variable %s has no values on the simulated data", v.Name)
				}
				vars[v.Name] = values
				ran++
			}
			for _, q := range d.Queries {
				if q.Datasource.Type != ClickHouseType {
					continue
				}
				ran++
				t.Run(q.Name(), func(t *testing.T) {
					sql, err := Expand(q.SQL, r, vars)
					if err != nil {
						t.Fatalf("expand: %v\n%s", err, q.SQL)
					}
					n, cols, err := runQuery(ctx, data.conn, sql)
					if err != nil {
						t.Fatalf("%v\n%s", err, sql)
					}
					if n == 0 {
						t.Errorf("no rows on the simulated data:\n%s", sql)
					}
					if q.Format == "timeseries" && (len(cols) == 0 || !strings.HasPrefix(cols[0], "DateTime")) {
						t.Errorf("time series query: first column is %v, want a DateTime:\n%s", cols, sql)
					}
				})
			}
		})
	}
	if ran == 0 {
		t.Fatal("no ClickHouse query in the dashboards")
	}
	t.Logf("%d ClickHouse queries ran", ran)
}

// variableValues returns the values of a template variable as Grafana
// would select them on load: all of them for a multi-value variable with
// "All", otherwise the first.
func variableValues(ctx context.Context, conn driver.Conn, v Variable, r TimeRange, vars map[string][]string) ([]string, error) {
	var values []string
	switch v.Type {
	case "query":
		if v.Datasource.Type != ClickHouseType {
			return nil, fmt.Errorf("query variables from %s are not checked", v.Datasource.Type)
		}
		sql, err := Expand(v.Query, r, vars)
		if err != nil {
			return nil, err
		}
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, sql)
		}
		defer rows.Close()
		cols := rows.ColumnTypes()
		for rows.Next() {
			dst := make([]any, len(cols))
			for i, c := range cols {
				dst[i] = reflect.New(c.ScanType()).Interface()
			}
			if err := rows.Scan(dst...); err != nil {
				return nil, err
			}
			values = append(values, fmt.Sprint(reflect.ValueOf(dst[0]).Elem().Interface()))
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	case "custom":
		for s := range strings.SplitSeq(v.Query, ",") {
			values = append(values, strings.TrimSpace(s))
		}
	case "constant", "textbox":
		values = []string{v.Query}
	default:
		return nil, fmt.Errorf("variable type %q is not supported by this check", v.Type)
	}
	if !(v.Multi && v.IncludeAll) && len(values) > 1 {
		values = values[:1]
	}
	return values, nil
}

// runQuery runs sql, reads every row and returns the row count and the
// column types.
func runQuery(ctx context.Context, conn driver.Conn, sql string) (int, []string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	var cols []string
	for _, c := range rows.ColumnTypes() {
		cols = append(cols, c.DatabaseTypeName())
	}
	n := 0
	for rows.Next() {
		n++
	}
	return n, cols, rows.Err()
}
