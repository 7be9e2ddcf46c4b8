package query

import (
	"errors"
	"strings"
	"time"
)

// stmt collects a WHERE clause and its bound arguments. Conditions are
// fixed SQL text written in this package; every value is a `?` argument
// (clickhouse-go binds it, quoting and escaping), never spliced.
type stmt struct {
	conds []string
	args  []any
}

var errEmptyScope = errors.New("query: empty tenant scope")

// tenant adds the isolation condition. A scope without tenants is a bug
// (scopeFor never makes one), refused rather than read as "no filter".
func (q *stmt) tenant(s Scope, col string) error {
	if s.all {
		return nil
	}
	if len(s.tenants) == 0 {
		return errEmptyScope
	}
	q.add(col+" IN (?)", s.tenants)
	return nil
}

func (q *stmt) add(cond string, args ...any) {
	q.conds = append(q.conds, cond)
	q.args = append(q.args, args...)
}

// eq adds col = ? when v is set.
func (q *stmt) eq(col, v string) {
	if v != "" {
		q.add(col+" = ?", v)
	}
}

// timeRange adds from <= col < to when the range is set.
func (q *stmt) timeRange(col string, from, to time.Time) {
	if !from.IsZero() {
		q.add(col+" >= "+tsSQL, nanos(from))
	}
	if !to.IsZero() {
		q.add(col+" < "+tsSQL, nanos(to))
	}
}

func (q *stmt) where() string {
	if len(q.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(q.conds, " AND ")
}

// tsSQL turns a bound int64 of Unix nanoseconds into a DateTime64(9): exact
// to the nanosecond, which the keyset cursors need.
const tsSQL = "fromUnixTimestamp64Nano(toInt64(?), 'UTC')"

func nanos(t time.Time) int64 { return t.UnixNano() }
