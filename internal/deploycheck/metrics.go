package deploycheck

import (
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Recorder is a prometheus.Registerer that remembers the metric names and
// label names of everything registered with it, so a test can build a
// service with it and learn what that service exports (Gather would only
// show vectors that already have a child).
type Recorder struct {
	mu      sync.Mutex
	metrics map[string][]string
}

var _ prometheus.Registerer = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{metrics: map[string][]string{}} }

var descRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// Register records the collector's descriptors.
func (r *Recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		var labels []string
		for l := range strings.SplitSeq(m[2], ",") {
			l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")")
			if l != "" {
				labels = append(labels, l)
			}
		}
		r.metrics[m[1]] = labels
	}
	return nil
}

// MustRegister records the collectors.
func (r *Recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

// Unregister does nothing and reports true.
func (r *Recorder) Unregister(prometheus.Collector) bool { return true }

// Metrics returns metric name → label names of everything registered.
func (r *Recorder) Metrics() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.metrics))
	for k, v := range r.metrics {
		out[k] = slices.Clone(v)
	}
	return out
}

// promIdentRE matches PromQL identifiers; metric names are the ones not
// followed by "(" (functions) and not inside label matchers or by/without
// lists, which MetricNames strips first.
var (
	promIdentRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promStringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promBracesRE   = regexp.MustCompile(`\{[^}]*\}`)
	promGroupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promRangeRE    = regexp.MustCompile(`\[[^\]]*\]`)
)

// promKeywords are PromQL words that are not metric names.
var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "stddev": true, "stdvar": true,
	"topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true, "atan2": true,
}

// MetricNames returns the metric names a PromQL expression selects, in
// order of appearance. It is a lexical scan, good for the expressions of
// dashboards and alert rules; promtool checks the syntax.
func MetricNames(expr string) []string {
	s := promStringRE.ReplaceAllString(expr, `""`)
	s = promGroupingRE.ReplaceAllString(s, " ")
	s = promBracesRE.ReplaceAllString(s, " ")
	s = promRangeRE.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdentRE.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the unit of a number, e.g. 5m or 1e3
		}
		if promKeywords[strings.ToLower(name)] || strings.HasPrefix(strings.TrimSpace(s[loc[1]:]), "(") {
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// HistogramBase returns the histogram name for a _bucket, _sum or _count
// series name, and false for other names.
func HistogramBase(name string) (string, bool) {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			return base, true
		}
	}
	return "", false
}
