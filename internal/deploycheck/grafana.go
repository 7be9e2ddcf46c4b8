package deploycheck

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Datasource types of the dashboards.
const (
	ClickHouseType = "grafana-clickhouse-datasource"
	PrometheusType = "prometheus"
)

// ErrMacro is returned for a macro the ClickHouse plugin does not know or a
// macro called with the wrong arguments.
var ErrMacro = errors.New("grafana macro")

// ErrVariable is returned for a template variable that is not defined or
// formatted in a way Expand does not implement.
var ErrVariable = errors.New("grafana variable")

// TimeRange is the dashboard time range and the interval Grafana computed
// for a panel.
type TimeRange struct {
	From, To time.Time
	Interval time.Duration
}

// Expand turns a ClickHouse panel query into the SQL the Grafana
// ClickHouse plugin (v4) sends: template variables first (Grafana's
// frontend interpolates them), then the plugin's macros:
//
//	$__timeFilter(col)     col >= toDateTime(from) AND col <= toDateTime(to)
//	$__timeFilter_ms(col)  same with fromUnixTimestamp64Milli(ms)
//	$__dateFilter(col)     col >= toDate('…') AND col <= toDate('…')
//	$__dateTimeFilter(d, t), $__dt(d, t)   both of the above
//	$__fromTime, $__toTime        toDateTime(unix seconds)
//	$__fromTime_ms, $__toTime_ms  fromUnixTimestamp64Milli(unix ms)
//	$__timeInterval(col)   toStartOfInterval(toDateTime(col), INTERVAL s second)
//	$__timeInterval_ms(col) the same in milliseconds
//	$__interval_s          the interval in seconds (at least 1)
//
// vars maps a variable name to its current values (several for a
// multi-value or "All" selection). Variables are written $name, ${name} or
// ${name:format} with format singlequote, sqlstring, csv, raw or pipe; the
// global $__from and $__to (epoch milliseconds) are expanded too.
func Expand(sql string, r TimeRange, vars map[string][]string) (string, error) {
	s, err := expandVariables(sql, r, vars)
	if err != nil {
		return "", err
	}
	return expandMacros(s, r)
}

// ExpandPromQL expands the Grafana variables a PromQL panel query may use
// ($__rate_interval, $__interval, $__range and the dashboard's own) so
// that promtool can parse it.
func ExpandPromQL(expr string, r TimeRange, vars map[string][]string) (string, error) {
	step := promDuration(max(r.Interval, 15*time.Second))
	rng := promDuration(r.To.Sub(r.From))
	expr = strings.NewReplacer(
		"$__rate_interval", promDuration(4*max(r.Interval, 15*time.Second)),
		"${__rate_interval}", promDuration(4*max(r.Interval, 15*time.Second)),
		"$__interval", step, "${__interval}", step,
		"$__range", rng, "${__range}", rng,
	).Replace(expr)
	return expandVariables(expr, r, vars)
}

func promDuration(d time.Duration) string {
	return strconv.FormatInt(int64(math.Max(d.Seconds(), 1)), 10) + "s"
}

// variableRE matches ${name}, ${name:format}, [[name]] and $name.
var variableRE = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)`)

func expandVariables(s string, r TimeRange, vars map[string][]string) (string, error) {
	var errs []error
	out := variableRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := variableRE.FindStringSubmatch(m)
		name, format := sub[1], sub[2]
		if name == "" {
			name = sub[3]
		}
		if name == "" {
			name = sub[4]
		}
		switch name {
		case "__from":
			return strconv.FormatInt(r.From.UnixMilli(), 10)
		case "__to":
			return strconv.FormatInt(r.To.UnixMilli(), 10)
		}
		if strings.HasPrefix(name, "__") {
			return m // a macro, expanded later
		}
		values, ok := vars[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: $%s is not defined", ErrVariable, name))
			return m
		}
		v, err := formatValues(values, format)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: $%s: %w", ErrVariable, name, err))
			return m
		}
		return v
	})
	return out, errors.Join(errs...)
}

// formatValues formats a variable's values as Grafana does for format.
func formatValues(values []string, format string) (string, error) {
	switch format {
	case "singlequote":
		q := make([]string, len(values))
		for i, v := range values {
			q[i] = "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
		}
		return strings.Join(q, ","), nil
	case "sqlstring":
		q := make([]string, len(values))
		for i, v := range values {
			q[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
		return strings.Join(q, ","), nil
	case "csv", "":
		if format == "" && len(values) > 1 {
			// Grafana would write {a,b}, which is no SQL: the dashboard
			// must say how to quote a multi-value variable.
			return "", fmt.Errorf("multi-value variable without a format (use ${var:singlequote})")
		}
		return strings.Join(values, ","), nil
	case "raw":
		return strings.Join(values, ","), nil
	case "pipe":
		return strings.Join(values, "|"), nil
	}
	return "", fmt.Errorf("format %q not supported", format)
}

var macroRE = regexp.MustCompile(`\$__(\w+)`)

func expandMacros(s string, r TimeRange) (string, error) {
	var b strings.Builder
	for {
		loc := macroRE.FindStringSubmatchIndex(s)
		if loc == nil {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:loc[0]])
		name := s[loc[2]:loc[3]]
		rest := s[loc[1]:]
		var args []string
		hasArgs := strings.HasPrefix(rest, "(")
		if hasArgs {
			end := closingParen(rest)
			if end < 0 {
				return "", fmt.Errorf("%w: $__%s: unbalanced parentheses", ErrMacro, name)
			}
			for a := range strings.SplitSeq(rest[1:end], ",") {
				if a = strings.TrimSpace(a); a != "" {
					args = append(args, a)
				}
			}
			rest = rest[end+1:]
		}
		v, err := macro(name, args, r)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		s = rest
	}
}

// closingParen returns the index of the parenthesis closing s[0].
func closingParen(s string) int {
	depth := 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func macro(name string, args []string, r TimeRange) (string, error) {
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%w: $__%s takes %d argument(s), got %d", ErrMacro, name, n, len(args))
		}
		return nil
	}
	dt := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	dt64 := func(t time.Time) string { return fmt.Sprintf("fromUnixTimestamp64Milli(%d)", t.UnixMilli()) }
	date := func(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }
	between := func(col string, f func(time.Time) string) string {
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, f(r.From), col, f(r.To))
	}
	noArgs := []string{"fromTime", "toTime", "fromTime_ms", "toTime_ms", "interval_s"}
	if slices.Contains(noArgs, name) && len(args) > 0 {
		return "", fmt.Errorf("%w: $__%s takes no arguments", ErrMacro, name)
	}
	switch name {
	case "fromTime":
		return dt(r.From), nil
	case "toTime":
		return dt(r.To), nil
	case "fromTime_ms":
		return dt64(r.From), nil
	case "toTime_ms":
		return dt64(r.To), nil
	case "timeFilter":
		if err := want(1); err != nil {
			return "", err
		}
		return between(args[0], dt), nil
	case "timeFilter_ms":
		if err := want(1); err != nil {
			return "", err
		}
		return between(args[0], dt64), nil
	case "dateFilter":
		if err := want(1); err != nil {
			return "", err
		}
		return between(args[0], date), nil
	case "dateTimeFilter", "dt":
		if err := want(2); err != nil {
			return "", err
		}
		return "(" + between(args[0], date) + ") AND (" + between(args[1], dt) + ")", nil
	case "timeInterval":
		if err := want(1); err != nil {
			return "", err
		}
		return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", args[0], int(math.Max(r.Interval.Seconds(), 1))), nil
	case "timeInterval_ms":
		if err := want(1); err != nil {
			return "", err
		}
		return fmt.Sprintf("toStartOfInterval(toDateTime64(%s, 3), INTERVAL %d millisecond)", args[0], max(r.Interval.Milliseconds(), 1)), nil
	case "interval_s":
		return strconv.Itoa(int(math.Max(r.Interval.Seconds(), 1))), nil
	}
	return "", fmt.Errorf("%w: $__%s is not a ClickHouse plugin macro", ErrMacro, name)
}
