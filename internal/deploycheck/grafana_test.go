package deploycheck

import (
	"errors"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	r := TimeRange{
		From:     time.Date(2026, 1, 2, 3, 4, 5, 600e6, time.UTC),
		To:       time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC),
		Interval: 90 * time.Second,
	}
	from, to := "1767323045", "1767326645"
	vars := map[string][]string{"tenant": {"acme", "o'hare"}, "one": {"x"}}
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"WHERE $__timeFilter(ts)", "WHERE ts >= toDateTime(" + from + ") AND ts <= toDateTime(" + to + ")", nil},
		{"WHERE $__timeFilter( c.ts )", "WHERE c.ts >= toDateTime(" + from + ") AND c.ts <= toDateTime(" + to + ")", nil},
		{"$__timeFilter_ms(ts)", "ts >= fromUnixTimestamp64Milli(1767323045600) AND ts <= fromUnixTimestamp64Milli(1767326645000)", nil},
		{"$__dateFilter(d)", "d >= toDate('2026-01-02') AND d <= toDate('2026-01-02')", nil},
		{"$__dt(d, ts)", "(d >= toDate('2026-01-02') AND d <= toDate('2026-01-02')) AND (ts >= toDateTime(" + from + ") AND ts <= toDateTime(" + to + "))", nil},
		{"$__fromTime AND $__toTime", "toDateTime(" + from + ") AND toDateTime(" + to + ")", nil},
		{"$__fromTime_ms", "fromUnixTimestamp64Milli(1767323045600)", nil},
		{"$__timeInterval(ts) AS time", "toStartOfInterval(toDateTime(ts), INTERVAL 90 second) AS time", nil},
		{"$__timeInterval_ms(ts)", "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 90000 millisecond)", nil},
		{"INTERVAL $__interval_s second", "INTERVAL 90 second", nil},
		{"$__from..$__to", "1767323045600..1767326645000", nil},
		{"tenant_id IN (${tenant:singlequote})", `tenant_id IN ('acme','o\'hare')`, nil},
		{"tenant_id IN (${tenant:sqlstring})", `tenant_id IN ('acme','o''hare')`, nil},
		{"'$one' = [[one]] AND ${one}", "'x' = x AND x", nil},
		{"$tenant", "", ErrVariable},
		{"${nope}", "", ErrVariable},
		{"${one:json}", "", ErrVariable},
		{"$__timeGroup(ts)", "", ErrMacro},
		{"$__timeFilter(a, b)", "", ErrMacro},
		{"$__timeFilter(ts", "", ErrMacro},
		{"$__fromTime(ts)", "", ErrMacro},
	} {
		got, err := Expand(tc.in, r, vars)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Expand(%q) error %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Expand(%q) = %q, %v\nwant %q", tc.in, got, err, tc.want)
		}
	}
}

func TestExpandPromQL(t *testing.T) {
	r := TimeRange{From: time.Unix(0, 0), To: time.Unix(3600, 0), Interval: 30 * time.Second}
	got, err := ExpandPromQL(`rate(x[$__rate_interval]) + rate(y[$__interval]) + increase(z[$__range])`, r, nil)
	if want := `rate(x[120s]) + rate(y[30s]) + increase(z[3600s])`; err != nil || got != want {
		t.Errorf("ExpandPromQL = %q, %v, want %q", got, err, want)
	}
}
