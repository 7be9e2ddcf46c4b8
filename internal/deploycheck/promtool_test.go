package deploycheck

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect"
	"github.com/agentaudit/agentaudit/internal/ingest"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/otlphttp"
)

// promtool returns the path of promtool, fetched by scripts/fetch-promtool.sh
// into $AGENTAUDIT_CACHE on first use.
func promtool(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(root(t), "scripts", "fetch-promtool.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/fetch-promtool.sh: %v\n%s", err, stderr.String())
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("scripts/fetch-promtool.sh printed %q: %v", p, err)
	}
	return p
}

func runPromtool(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func alertRuleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(repoPath(t, "deploy/prometheus/rules/*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no alert rule files in deploy/prometheus/rules (%v)", err)
	}
	return files
}

// TestAlertRules: promtool check rules, promtool test rules (every alert
// has a unit test that makes it fire), promtool check config, and the rule
// files are the ones Prometheus loads in docker-compose.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	t.Log(strings.SplitN(runPromtool(t, bin, root(t), "--version"), "\n", 2)[0])
	rules := alertRuleFiles(t)
	runPromtool(t, bin, root(t), append([]string{"check", "rules"}, rules...)...)

	tests, _ := filepath.Glob(repoPath(t, "deploy/prometheus/tests/*.yml"))
	if len(tests) == 0 {
		t.Fatal("no promtool rule tests in deploy/prometheus/tests")
	}
	for _, f := range tests {
		out := runPromtool(t, bin, filepath.Dir(f), "test", "rules", filepath.Base(f))
		if !strings.Contains(out, "SUCCESS") {
			t.Errorf("promtool test rules %s:\n%s", f, out)
		}
	}
	tested := map[string]bool{}
	for _, f := range tests {
		var tf struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		readYAML(t, f, &tf)
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					tested[a.Alertname] = true
				}
			}
		}
	}
	for _, f := range rules {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" && !tested[r.Alert] {
					t.Errorf("alert %s has no promtool test in which it fires", r.Alert)
				}
			}
		}
	}

	runPromtool(t, bin, root(t), "check", "config", repoPath(t, "deploy/prometheus/prometheus.yml"))
	// Prometheus in docker-compose loads exactly these files.
	prom := loadCompose(t).Services["prometheus"]
	var mounted string
	for _, v := range prom.Volumes {
		if cv, err := ParseVolume(v); err == nil && filepath.Clean(cv.Source) == "deploy/prometheus/rules" {
			mounted = cv.Target
		}
	}
	pc := loadPrometheusConfig(t)
	if mounted == "" || !slices.Contains(pc.ruleFiles, mounted+"/*.yml") {
		t.Errorf("prometheus loads rule files %v but deploy/prometheus/rules is mounted at %q", pc.ruleFiles, mounted)
	}
}

// knownMetric is a metric the code registers (or, for services not merged
// yet, that was agreed in testdata/agreed_metrics.txt).
type knownMetric struct {
	labels    []string
	histogram bool // unknown for registered metrics: _bucket etc. allowed
	agreed    bool
}

// registeredMetrics builds each service the way its main does, on a
// Recorder, and returns what it registers. Add the detector, notifier and
// query API here when they land (and drop their lines from
// testdata/agreed_metrics.txt).
func registeredMetrics(t *testing.T) map[string][]string {
	t.Helper()
	rec := NewRecorder()
	var cfg ingest.ServiceConfig
	config.ApplyDefaults(&cfg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := ingest.New(cfg.Ingest, nil, cfg.ClickHouse, log, rec); err != nil {
		t.Fatal(err)
	}
	w := otlphttp.NewKafkaWriter(cfg.Ingest.Brokers)
	defer w.Close()
	if _, err := otlphttp.New(cfg.OTLPHTTP, w, cfg.Ingest.Spans, log, rec); err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.NewSigner(integrity.Config{Enabled: true, Key: config.Secret(base64.StdEncoding.EncodeToString(priv.Seed()))})
	if err != nil {
		t.Fatal(err)
	}
	if err := signer.Instrument(rec); err != nil {
		t.Fatal(err)
	}
	var dcfg detect.ServiceConfig
	config.ApplyDefaults(&dcfg)
	if _, err := detect.New(dcfg.Detect, nil, detect.LogActions{Log: log}, log, rec); err != nil {
		t.Fatal(err)
	}
	return rec.Metrics()
}

func knownMetrics(t *testing.T) map[string]knownMetric {
	t.Helper()
	known := map[string]knownMetric{"up": {labels: []string{"job", "instance"}}}
	subsystems := map[string]bool{}
	for name, labels := range registeredMetrics(t) {
		known[name] = knownMetric{labels: labels, histogram: true}
		subsystems[subsystem(name)] = true
	}
	f, err := os.Open(filepath.Join("testdata", "agreed_metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("agreed_metrics.txt: %q: want name type labels", line)
		}
		name := fields[0]
		if subsystems[subsystem(name)] {
			if _, ok := known[name]; !ok {
				t.Errorf("agreed metric %s: the %s code is merged and does not register it", name, subsystem(name))
			}
			continue // the registration is the truth
		}
		var labels []string
		if fields[2] != "-" {
			labels = strings.Split(fields[2], ",")
		}
		known[name] = knownMetric{labels: labels, histogram: fields[1] == "histogram", agreed: true}
	}
	return known
}

// subsystem is "agentaudit_<subsystem>" of a metric name.
func subsystem(name string) string {
	parts := strings.SplitN(name, "_", 3)
	if len(parts) < 3 {
		return name
	}
	return parts[0] + "_" + parts[1]
}

// promExprs returns every PromQL expression of the alert rules and the
// dashboards (Grafana variables expanded), named for messages.
func promExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	for _, f := range alertRuleFiles(t) {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				exprs[filepath.Base(f)+": "+r.Alert+r.Record] = r.Expr
			}
		}
	}
	dashboards, err := LoadDashboards(repoPath(t, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	r := TimeRange{From: time.Now().Add(-time.Hour), To: time.Now(), Interval: 15 * time.Second}
	for _, d := range dashboards {
		for _, q := range d.Queries {
			if q.Datasource.Type != PrometheusType {
				continue
			}
			e, err := ExpandPromQL(q.Expr, r, nil)
			if err != nil {
				t.Errorf("%s: %s: %v", d.Title, q.Name(), err)
				continue
			}
			exprs[d.Title+": "+q.Name()] = e
		}
	}
	return exprs
}

var (
	matcherRE  = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	labelRE    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// TestPromQLMetrics: every metric an alert rule or a dashboard panel
// selects is registered by the code (or agreed, for services not merged
// yet), with the labels it is filtered and grouped by.
func TestPromQLMetrics(t *testing.T) {
	known := knownMetrics(t)
	exprs := promExprs(t)
	if len(exprs) == 0 {
		t.Fatal("no PromQL expressions found")
	}
	used := map[string]bool{}
	for _, where := range sortedKeys(exprs) {
		expr := exprs[where]
		names := MetricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		labelsOf := map[string][]string{}
		for _, n := range names {
			base := n
			m, ok := known[n]
			if !ok {
				if b, isHist := HistogramBase(n); isHist {
					if hm, ok2 := known[b]; ok2 && hm.histogram {
						m, ok, base = hm, true, b
						m.labels = append(slices.Clone(m.labels), "le")
					}
				}
			}
			if !ok {
				t.Errorf("%s: metric %s is not registered by the code nor agreed (testdata/agreed_metrics.txt)", where, n)
				continue
			}
			used[base] = true
			labelsOf[n] = m.labels
		}
		for _, mm := range matcherRE.FindAllStringSubmatch(expr, -1) {
			labels, ok := labelsOf[mm[1]]
			if !ok {
				continue
			}
			for _, l := range labelRE.FindAllStringSubmatch(mm[2], -1) {
				if !slices.Contains(labels, l[1]) && l[1] != "job" && l[1] != "instance" {
					t.Errorf("%s: %s has no label %s (labels: %v)", where, mm[1], l[1], labels)
				}
			}
		}
		for _, g := range groupingRE.FindAllStringSubmatch(expr, -1) {
			for l := range strings.SplitSeq(g[1], ",") {
				l = strings.TrimSpace(l)
				if l == "" || l == "job" || l == "instance" {
					continue
				}
				found := false
				for _, labels := range labelsOf {
					found = found || slices.Contains(labels, l)
				}
				if !found {
					t.Errorf("%s: grouping by %s, which none of %v has", where, l, names)
				}
			}
		}
	}
	t.Logf("%d expressions, %d distinct metrics used", len(exprs), len(used))
}

// TestDashboardPromQLParses: promtool parses every dashboard PromQL
// expression (as recording rules of a generated rule file).
func TestDashboardPromQLParses(t *testing.T) {
	bin := promtool(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	exprs := promExprs(t)
	for i, where := range sortedKeys(exprs) {
		if strings.Contains(where, ".yml: ") {
			continue // alert rules are checked as they are
		}
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard_expr_%d", i), Expr: exprs[where]})
	}
	if len(rules) == 0 {
		t.Fatal("no dashboard PromQL")
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboards.yml")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runPromtool(t, bin, root(t), "check", "rules", file)
	t.Logf("%d dashboard expressions: %s", len(rules), strings.TrimSpace(out))
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (topic) (rate(agentaudit_ingest_dead_letters_total{reason="x"}[5m])) / sum by (topic) (rate(agentaudit_ingest_messages_total[5m])) > 0.01`: {"agentaudit_ingest_dead_letters_total", "agentaudit_ingest_messages_total"},
		`histogram_quantile(0.99, sum by (le, table) (rate(agentaudit_ingest_flush_duration_seconds_bucket[5m]))) > 10`:                                    {"agentaudit_ingest_flush_duration_seconds_bucket"},
		`up{job=~"agentaudit-.*"} == 0`: {"up"},
		`max by (endpoint) (agentaudit_webhook_endpoint_disabled) == 1 and on (endpoint) agentaudit_webhook_queue_length offset 5m > 1e3`: {"agentaudit_webhook_endpoint_disabled", "agentaudit_webhook_queue_length"},
	} {
		if got := MetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("MetricNames(%q) = %v, want %v", expr, got, want)
		}
	}
}
