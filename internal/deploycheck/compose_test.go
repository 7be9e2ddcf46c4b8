package deploycheck

import (
	"encoding/xml"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/agentaudit/agentaudit/internal/app"
	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect"
	"github.com/agentaudit/agentaudit/internal/ingest"
	"github.com/agentaudit/agentaudit/internal/query"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
)

// serviceConfigs returns, per compose service run from the agentaudit
// image, a fresh value of that service's real configuration (what its main
// hands to app.Main).
//
// Services whose package is not on main yet are in pendingServices with
// the flag prefixes their own config will use: their AGENTAUDIT_CLICKHOUSE_*
// and AGENTAUDIT_TELEMETRY_* variables are still loaded and validated
// through chstore.Config and telemetry.Config, the others only checked for
// their prefix. When the service's package lands, move it here (the test
// fails once cmd/<service> exists while it is still pending).
func serviceConfigs() map[string]func() app.Config {
	return map[string]func() app.Config{
		"ingest":   func() app.Config { return &ingest.ServiceConfig{} },
		"detector": func() app.Config { return &detect.ServiceConfig{} },
		"query":    func() app.Config { return &query.ServiceConfig{} },
	}
}

func pendingServices() map[string][]string {
	return map[string][]string{}
}

// commonConfig is the part every service config has (app.Config.Common):
// a stand-in for a pending service.
type commonConfig struct {
	ClickHouse chstore.Config   `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
}

func (c *commonConfig) RegisterFlags(fs *flag.FlagSet) {
	c.ClickHouse.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:0", fs)
}

func (c *commonConfig) Common() (*chstore.Config, *telemetry.Config) {
	return &c.ClickHouse, &c.Telemetry
}

// envNames returns the AGENTAUDIT_* variables cfg reads.
func envNames(cfg config.FlagRegisterer) map[string]string {
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.String(config.FlagConfigFile, "", "")
	names := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { names[config.EnvName(app.EnvPrefix, f.Name)] = f.Name })
	return names
}

// loadedService is a compose service with its configuration loaded from its
// environment exactly as app.Main loads it.
type loadedService struct {
	name string
	svc  ComposeService
	cfg  app.Config
	env  map[string]string // interpolated
}

func loadCompose(t *testing.T) *Compose {
	t.Helper()
	c, err := LoadCompose(repoPath(t, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// agentauditServices loads the config of every service built from the
// Dockerfile, failing the test on unknown variables or invalid values.
func agentauditServices(t *testing.T, c *Compose) []loadedService {
	t.Helper()
	configs, pending := serviceConfigs(), pendingServices()
	var out []loadedService
	for _, name := range sortedKeys(c.Services) {
		svc := c.Services[name]
		if svc.Build == nil {
			continue
		}
		env := map[string]string{}
		for k, v := range svc.Environment {
			env[k] = Interpolate(v)
		}
		var cfg app.Config
		var allowed []string // env prefixes not checked against flags (pending services)
		if mk, ok := configs[name]; ok {
			cfg = mk()
		} else if prefixes, ok := pending[name]; ok {
			cfg = &commonConfig{}
			for _, p := range prefixes {
				allowed = append(allowed, config.EnvName(app.EnvPrefix, p))
			}
		} else {
			t.Errorf("service %s is built from the Dockerfile but has no entry in serviceConfigs or pendingServices", name)
			continue
		}
		known := envNames(cfg)
		for k := range env {
			if !strings.HasPrefix(k, app.EnvPrefix+"_") {
				t.Errorf("service %s: env %s: agentaudit services read only %s_* variables", name, k, app.EnvPrefix)
				continue
			}
			if _, ok := known[k]; ok {
				continue
			}
			if slices.ContainsFunc(allowed, func(p string) bool { return strings.HasPrefix(k, p) }) {
				t.Logf("service %s: env %s not verified: the service's config is not merged yet", name, k)
				continue
			}
			t.Errorf("service %s: env %s sets no flag of the service (known: %s…)", name, k, strings.Join(firstKeys(known, 8), ", "))
		}
		if _, err := config.Load(cfg, nil, func(k string) string { return env[k] }, app.EnvPrefix); err != nil {
			t.Errorf("service %s: load config from its environment: %v", name, err)
			continue
		}
		if err := config.Validate(cfg); err != nil {
			t.Errorf("service %s: config from its environment is invalid: %v", name, err)
			continue
		}
		out = append(out, loadedService{name: name, svc: svc, cfg: cfg, env: env})
	}
	return out
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	want := []string{"clickhouse", "detector", "grafana", "ingest", "kafka", "kafka-init", "otel-collector", "prometheus", "query"}
	if got := sortedKeys(c.Services); !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
	published := map[string]string{} // host port → service
	for _, name := range sortedKeys(c.Services) {
		svc := c.Services[name]
		for _, p := range svc.Ports {
			host, _, _ := strings.Cut(p, ":")
			if other, dup := published[host]; dup {
				t.Errorf("host port %s is published by %s and %s", host, other, name)
			}
			published[host] = name
		}
		repo, tag, ok := strings.Cut(Interpolate(svc.Image), ":")
		if svc.Image == "" || !ok || tag == "" || tag == "latest" || strings.Contains(tag, "/") {
			t.Errorf("service %s: image %q is not pinned to a tag", name, svc.Image)
		}
		if svc.Build != nil {
			if repo != "agentaudit" || svc.Build.Context != "." || svc.Build.Dockerfile != "Dockerfile" {
				t.Errorf("service %s: build %+v image %s, want the repository's Dockerfile as image agentaudit", name, *svc.Build, repo)
			}
			if _, err := os.Stat(repoPath(t, svc.Build.Dockerfile)); err != nil {
				t.Errorf("service %s: %v", name, err)
			}
		}
		for dep, d := range svc.DependsOn {
			other, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("service %s depends on unknown service %s", name, dep)
			case d.Condition == "service_healthy" && other.Healthcheck == nil:
				t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			case d.Condition == "service_completed_successfully" && other.Restart != "no":
				t.Errorf("service %s waits for %s to complete, but %s restarts (restart: %q)", name, dep, dep, other.Restart)
			case d.Condition != "service_healthy" && d.Condition != "service_completed_successfully" && d.Condition != "service_started":
				t.Errorf("service %s: depends_on %s: condition %q", name, dep, d.Condition)
			}
		}
		for _, v := range svc.Volumes {
			cv, err := ParseVolume(v)
			if err != nil {
				t.Errorf("service %s: %v", name, err)
				continue
			}
			if cv.Bind {
				if !strings.HasPrefix(cv.Source, "./") {
					t.Errorf("service %s: bind mount %s: use a path relative to the repository", name, cv.Source)
				} else if _, err := os.Stat(repoPath(t, cv.Source)); err != nil {
					t.Errorf("service %s: bind mount source: %v", name, err)
				}
				if !cv.ReadOnly {
					t.Errorf("service %s: bind mount %s is writable; configuration is mounted :ro", name, cv.Source)
				}
			} else if _, ok := c.Volumes[cv.Source]; !ok {
				t.Errorf("service %s: named volume %s is not declared under volumes:", name, cv.Source)
			}
		}
		for _, p := range append(slices.Clone(svc.Ports), svc.Expose...) {
			if !validPort(p) {
				t.Errorf("service %s: port %q: want PORT or HOST_PORT:PORT", name, p)
			}
		}
	}
	for v := range c.Volumes {
		used := false
		for _, svc := range c.Services {
			for _, m := range svc.Volumes {
				if cv, err := ParseVolume(m); err == nil && cv.Source == v {
					used = true
				}
			}
		}
		if !used {
			t.Errorf("volume %s is declared but no service mounts it", v)
		}
	}
}

func validPort(p string) bool {
	parts := strings.Split(p, ":")
	if len(parts) > 2 {
		return false
	}
	for _, x := range parts {
		if x == "" || strings.Trim(x, "0123456789") != "" {
			return false
		}
	}
	return true
}

// TestComposeAgentauditServices loads each service's configuration from its
// compose environment through the real config loader and checks it against
// the rest of the stack.
func TestComposeAgentauditServices(t *testing.T) {
	c := loadCompose(t)
	services := agentauditServices(t, c)
	prom := loadPrometheusConfig(t)
	migrators := 0
	for _, s := range services {
		ch, tel := s.cfg.Common()

		// The entrypoint is the service's own binary, built from cmd/<name>.
		if want := []string{"/usr/local/bin/" + s.name}; !slices.Equal(s.svc.Entrypoint, want) {
			t.Errorf("service %s: entrypoint %v, want %v", s.name, s.svc.Entrypoint, want)
		}
		_, statErr := os.Stat(repoPath(t, "cmd/"+s.name))
		_, pending := pendingServices()[s.name]
		switch {
		case statErr != nil && !pending:
			t.Errorf("service %s: cmd/%s: %v", s.name, s.name, statErr)
		case statErr == nil && pending:
			t.Errorf("service %s: cmd/%s exists now: move it from pendingServices to serviceConfigs", s.name, s.name)
		}

		// Admin port: reachable from Prometheus, probed by the healthcheck.
		host, port, err := net.SplitHostPort(tel.ListenAddress)
		if err != nil {
			t.Errorf("service %s: telemetry listen address %q: %v", s.name, tel.ListenAddress, err)
			continue
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("service %s: admin server listens on %s: Prometheus in another container cannot scrape it", s.name, tel.ListenAddress)
		}
		if !slices.Contains(s.svc.Expose, port) && !slices.ContainsFunc(s.svc.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) || p == port }) {
			t.Errorf("service %s: admin port %s is neither exposed nor published", s.name, port)
		}
		wantProbe := []string{"CMD", "/usr/local/bin/healthcheck", "http://127.0.0.1:" + port + "/readyz"}
		if s.svc.Healthcheck == nil || !slices.Equal(s.svc.Healthcheck.Test, wantProbe) {
			t.Errorf("service %s: healthcheck %v, want %v", s.name, s.svc.Healthcheck, wantProbe)
		}
		job := "agentaudit-" + s.name
		if got := prom.targets[job]; !slices.Equal(got, []string{s.name + ":" + port}) {
			t.Errorf("prometheus.yml job %s targets %v, want [%s:%s]", job, got, s.name, port)
		}

		// ClickHouse: the compose server, its credentials, its storage policy.
		for _, a := range ch.Addr {
			if h, p, _ := net.SplitHostPort(a); h != "clickhouse" || p != "9000" {
				t.Errorf("service %s: clickhouse.addr %s, want clickhouse:9000", s.name, a)
			}
		}
		chEnv := c.Services["clickhouse"].Environment
		if ch.Username != chEnv["CLICKHOUSE_USER"] || ch.Password.Reveal() != Interpolate(chEnv["CLICKHOUSE_PASSWORD"]) {
			t.Errorf("service %s: clickhouse user %q (password set: %v) is not the one the clickhouse service creates (%q)",
				s.name, ch.Username, ch.Password.Reveal() != "", chEnv["CLICKHOUSE_USER"])
		}
		if ch.Migrate {
			migrators++
			if ch.StoragePolicy != chdb.StoragePolicy {
				t.Errorf("service %s: clickhouse.storage-policy %q, want %q (deploy/clickhouse/config.d/storage.xml)", s.name, ch.StoragePolicy, chdb.StoragePolicy)
			}
		}
	}
	if migrators != 1 {
		t.Errorf("%d services apply migrations, want exactly one (the others wait for it)", migrators)
	}
	// Whoever does not migrate must start after the one that does.
	for _, s := range services {
		if ch, _ := s.cfg.Common(); ch.Migrate {
			continue
		}
		if !dependsHealthyOnMigrator(c, services, s.name, map[string]bool{}) {
			t.Errorf("service %s does not migrate and does not wait (service_healthy) for the service that does", s.name)
		}
	}
}

func dependsHealthyOnMigrator(c *Compose, services []loadedService, name string, seen map[string]bool) bool {
	if seen[name] {
		return false
	}
	seen[name] = true
	for dep, d := range c.Services[name].DependsOn {
		if d.Condition != "service_healthy" {
			continue
		}
		for _, s := range services {
			if ch, _ := s.cfg.Common(); s.name == dep && ch.Migrate {
				return true
			}
		}
		if dependsHealthyOnMigrator(c, services, dep, seen) {
			return true
		}
	}
	return false
}

// TestComposeKafka checks that ingest's brokers and topics are what the
// Kafka service advertises and kafka-init creates, and that the Collector
// exports to the topic ingest reads in the encoding it expects.
func TestComposeKafka(t *testing.T) {
	c := loadCompose(t)
	var cfg *ingest.ServiceConfig
	for _, s := range agentauditServices(t, c) {
		if s.name == "ingest" {
			cfg = s.cfg.(*ingest.ServiceConfig)
		}
	}
	if cfg == nil {
		t.Fatal("no ingest service")
	}
	advertised := c.Services["kafka"].Environment["KAFKA_ADVERTISED_LISTENERS"]
	for _, b := range cfg.Ingest.Brokers {
		if !strings.Contains(advertised, "://"+b) {
			t.Errorf("ingest broker %s is not advertised by kafka (%s)", b, advertised)
		}
	}
	initWords := strings.FieldsFunc(strings.Join(c.Services["kafka-init"].Command, " "), func(r rune) bool {
		return !(r == '_' || r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	for _, topic := range []string{cfg.Ingest.SpansTopic, cfg.Ingest.EventsTopic, cfg.Ingest.SpansTopic + cfg.Ingest.DeadLetterSuffix, cfg.Ingest.EventsTopic + cfg.Ingest.DeadLetterSuffix} {
		if !slices.Contains(initWords, topic) {
			t.Errorf("kafka-init does not create topic %s", topic)
		}
	}
	if c.Services["kafka"].Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] != "false" {
		t.Errorf("kafka auto-creates topics: a typo in a topic name would silently create a new one")
	}

	// The Collector's config file is the mounted one, and it feeds ingest.
	col := c.Services["otel-collector"]
	var cfgPath string
	for _, a := range col.Command {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgPath = v
		}
	}
	var src string
	for _, v := range col.Volumes {
		if cv, err := ParseVolume(v); err == nil && cv.Target == cfgPath {
			src = cv.Source
		}
	}
	if src == "" {
		t.Fatalf("otel-collector: --config=%s is not a mounted file", cfgPath)
	}
	var oc struct {
		Exporters map[string]struct {
			Brokers []string `yaml:"brokers"`
			Traces  struct {
				Topic    string `yaml:"topic"`
				Encoding string `yaml:"encoding"`
			} `yaml:"traces"`
			PartitionTracesByID bool `yaml:"partition_traces_by_id"`
		} `yaml:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Receivers []string `yaml:"receivers"`
				Exporters []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	readYAML(t, repoPath(t, src), &oc)
	k, ok := oc.Exporters["kafka"]
	if !ok {
		t.Fatal("otel-collector: no kafka exporter")
	}
	if k.Traces.Topic != cfg.Ingest.SpansTopic || k.Traces.Encoding != cfg.Ingest.SpansEncoding {
		t.Errorf("otel-collector exports traces to %s as %s; ingest reads %s as %s",
			k.Traces.Topic, k.Traces.Encoding, cfg.Ingest.SpansTopic, cfg.Ingest.SpansEncoding)
	}
	if !k.PartitionTracesByID {
		t.Errorf("otel-collector: partition_traces_by_id is off: one message would mix traces and spread a trace over partitions")
	}
	for _, b := range k.Brokers {
		if !slices.Contains(cfg.Ingest.Brokers, b) {
			t.Errorf("otel-collector broker %s is not one of ingest's %v", b, cfg.Ingest.Brokers)
		}
	}
	if p, ok := oc.Service.Pipelines["traces"]; !ok || !slices.Contains(p.Exporters, "kafka") || !slices.Contains(p.Receivers, "otlp") {
		t.Errorf("otel-collector: the traces pipeline must go from otlp to kafka: %+v", oc.Service.Pipelines)
	}
}

// TestComposeClickHouseStorage checks the mounted storage configuration
// declares the policy and volumes the services and the embedded engine use,
// with each disk on a mounted volume.
func TestComposeClickHouseStorage(t *testing.T) {
	c := loadCompose(t)
	svc := c.Services["clickhouse"]
	var storageFile string
	var targets []string
	for _, v := range svc.Volumes {
		cv, err := ParseVolume(v)
		if err != nil {
			t.Fatal(err)
		}
		if cv.Bind && strings.HasPrefix(cv.Target, "/etc/clickhouse-server/config.d/") && strings.Contains(cv.Source, "storage") {
			storageFile = cv.Source
		} else if !cv.Bind {
			targets = append(targets, cv.Target)
		}
	}
	if storageFile == "" {
		t.Fatal("clickhouse: no storage configuration mounted into config.d")
	}
	type disk struct {
		XMLName xml.Name
		Path    string `xml:"path"`
	}
	type volume struct {
		XMLName xml.Name
		Disks   []string `xml:"disk"`
	}
	type policy struct {
		XMLName xml.Name
		Volumes struct {
			List []volume `xml:",any"`
		} `xml:"volumes"`
	}
	var sc struct {
		Disks struct {
			List []disk `xml:",any"`
		} `xml:"storage_configuration>disks"`
		Policies struct {
			List []policy `xml:",any"`
		} `xml:"storage_configuration>policies"`
	}
	b, err := os.ReadFile(repoPath(t, storageFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &sc); err != nil {
		t.Fatalf("%s: %v", storageFile, err)
	}
	disks := map[string]string{}
	for _, d := range sc.Disks.List {
		disks[d.XMLName.Local] = d.Path
		mounted := slices.ContainsFunc(targets, func(tg string) bool {
			return strings.HasPrefix(path.Clean(d.Path)+"/", path.Clean(tg)+"/")
		})
		if !mounted {
			t.Errorf("disk %s at %s is on no volume of the clickhouse service (%v): its data would be lost with the container", d.XMLName.Local, d.Path, targets)
		}
	}
	var found bool
	for _, p := range sc.Policies.List {
		if p.XMLName.Local != chdb.StoragePolicy {
			continue
		}
		found = true
		var vols []string
		for _, v := range p.Volumes.List {
			vols = append(vols, v.XMLName.Local)
			for _, d := range v.Disks {
				if _, ok := disks[d]; !ok {
					t.Errorf("policy %s volume %s: disk %s is not declared", p.XMLName.Local, v.XMLName.Local, d)
				}
			}
		}
		if want := []string{chdb.HotVolume, chdb.ColdVolume}; !slices.Equal(vols, want) {
			t.Errorf("policy %s has volumes %v, want %v (in this order: new parts go to the first)", chdb.StoragePolicy, vols, want)
		}
	}
	if !found {
		t.Errorf("%s: no storage policy %q", storageFile, chdb.StoragePolicy)
	}
}

// TestComposeGrafana checks the provisioning: data source uids are the ones
// the dashboards use, the ClickHouse data source logs in like the services
// into their database, and the dashboards directory is where the provider
// looks.
func TestComposeGrafana(t *testing.T) {
	c := loadCompose(t)
	g := c.Services["grafana"]
	mounts := map[string]string{} // source → target
	for _, v := range g.Volumes {
		if cv, err := ParseVolume(v); err == nil && cv.Bind {
			mounts[path.Clean(cv.Source)] = cv.Target
		}
	}
	prov, ok := mounts["deploy/grafana/provisioning"]
	if !ok || prov != "/etc/grafana/provisioning" {
		t.Fatalf("grafana: deploy/grafana/provisioning must be mounted at /etc/grafana/provisioning (mounts %v)", mounts)
	}
	var dsFile struct {
		Datasources []struct {
			Name     string         `yaml:"name"`
			UID      string         `yaml:"uid"`
			Type     string         `yaml:"type"`
			URL      string         `yaml:"url"`
			JSONData map[string]any `yaml:"jsonData"`
			Secure   map[string]any `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, repoPath(t, "deploy/grafana/provisioning/datasources/agentaudit.yaml"), &dsFile)
	uids := map[string]string{}
	var ingestCH *chstore.Config
	for _, s := range agentauditServices(t, c) {
		if s.name == "ingest" {
			ingestCH, _ = s.cfg.Common()
		}
	}
	if ingestCH == nil {
		t.Fatal("no ingest service")
	}
	for _, ds := range dsFile.Datasources {
		uids[ds.UID] = ds.Type
		switch ds.Type {
		case ClickHouseType:
			if ds.JSONData["host"] != "clickhouse" || ds.JSONData["port"] != 9000 || ds.JSONData["protocol"] != "native" {
				t.Errorf("ClickHouse data source: %v, want host clickhouse, port 9000, protocol native", ds.JSONData)
			}
			if ds.JSONData["username"] != ingestCH.Username || ds.JSONData["defaultDatabase"] != ingestCH.Database {
				t.Errorf("ClickHouse data source logs in as %v into %v; the services use %s and %s",
					ds.JSONData["username"], ds.JSONData["defaultDatabase"], ingestCH.Username, ingestCH.Database)
			}
			pw, _ := ds.Secure["password"].(string)
			envName := strings.TrimPrefix(pw, "$")
			if !strings.HasPrefix(pw, "$") || Interpolate(g.Environment[envName]) != ingestCH.Password.Reveal() {
				t.Errorf("ClickHouse data source password %q: want $VAR with VAR in grafana's environment set to the ClickHouse password", pw)
			}
		case PrometheusType:
			u, err := url.Parse(ds.URL)
			if err != nil || u.Hostname() != "prometheus" || u.Port() != "9090" {
				t.Errorf("Prometheus data source URL %q, want http://prometheus:9090", ds.URL)
			}
		default:
			t.Errorf("data source %s: unexpected type %s", ds.Name, ds.Type)
		}
	}
	if !strings.Contains(g.Environment["GF_PLUGINS_PREINSTALL_SYNC"], ClickHouseType) {
		t.Errorf("grafana does not install the %s plugin", ClickHouseType)
	}

	var provFile struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, repoPath(t, "deploy/grafana/provisioning/dashboards/agentaudit.yaml"), &provFile)
	if len(provFile.Providers) != 1 || mounts["dashboards"] != provFile.Providers[0].Options.Path {
		t.Errorf("dashboards/ is mounted at %q but the provider reads %+v", mounts["dashboards"], provFile.Providers)
	}

	dashboards, err := LoadDashboards(repoPath(t, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboards) == 0 {
		t.Fatal("no dashboards")
	}
	seen := map[string]string{}
	for _, d := range dashboards {
		if d.UID == "" || seen[d.UID] != "" {
			t.Errorf("%s: uid %q is empty or also used by %s", d.File, d.UID, seen[d.UID])
		}
		seen[d.UID] = d.File
		for _, q := range d.Queries {
			if typ, ok := uids[q.Datasource.UID]; !ok || typ != q.Datasource.Type {
				t.Errorf("%s: %s: data source %+v is not provisioned (%v)", d.Title, q.Name(), q.Datasource, uids)
			}
		}
		for _, v := range d.Variables {
			if v.Type == "query" {
				if typ, ok := uids[v.Datasource.UID]; !ok || typ != v.Datasource.Type {
					t.Errorf("%s: variable %s: data source %+v is not provisioned", d.Title, v.Name, v.Datasource)
				}
			}
		}
	}
}

// TestDockerfile checks every COPY source of the build context exists and
// is not excluded by .dockerignore, the builder has the Go version go.mod
// asks for, and the runtime image is distroless and runs as non-root.
func TestDockerfile(t *testing.T) {
	df, err := LoadDockerfile(repoPath(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	di, err := LoadDockerIgnore(repoPath(t, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	copied := map[string]bool{}
	for _, cp := range df.Copies {
		if cp.From != "" {
			continue
		}
		for _, src := range cp.Sources {
			copied[path.Clean(src)] = true
			if _, err := os.Stat(repoPath(t, src)); err != nil {
				t.Errorf("Dockerfile:%d: COPY %s: %v", cp.Line, src, err)
			}
			if pat, ok := di.Excludes(src); ok {
				t.Errorf("Dockerfile:%d: COPY %s is excluded by .dockerignore pattern %q", cp.Line, src, pat)
			}
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd", "internal", "schema", "deploy/healthcheck"} {
		if !copied[need] {
			t.Errorf("Dockerfile does not COPY %s", need)
		}
	}
	gomod, err := os.ReadFile(repoPath(t, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for l := range strings.SplitSeq(string(gomod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			goVersion = strings.TrimSpace(v)
		}
	}
	mm := strings.Join(strings.SplitN(goVersion, ".", 3)[:2], ".")
	if len(df.Stages) != 2 {
		t.Fatalf("Dockerfile has %d stages, want builder + runtime", len(df.Stages))
	}
	if !strings.HasPrefix(df.Stages[0], "golang:"+mm) {
		t.Errorf("builder image %s, want golang:%s… (go.mod says go %s)", df.Stages[0], mm, goVersion)
	}
	if !strings.HasPrefix(df.Stages[1], "gcr.io/distroless/") || !strings.HasSuffix(df.Stages[1], ":nonroot") {
		t.Errorf("runtime image %s, want a distroless :nonroot image", df.Stages[1])
	}
	if df.User != "nonroot:nonroot" && df.User != "65532:65532" {
		t.Errorf("runtime USER %q, want nonroot", df.User)
	}
	// A binary can import only what is copied: every top-level directory
	// holding Go code (deploy/ only through deploy/healthcheck) is copied.
	entries, err := os.ReadDir(root(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || copied[e.Name()] {
			continue
		}
		goFiles, _ := filepath.Glob(filepath.Join(root(t), e.Name(), "*.go"))
		deeper, _ := filepath.Glob(filepath.Join(root(t), e.Name(), "*", "*.go"))
		if len(goFiles)+len(deeper) > 0 && e.Name() != "deploy" {
			t.Errorf("%s/ holds Go code but the Dockerfile does not copy it: a binary importing it would not build", e.Name())
		}
	}
}

// TestDockerIgnore checks the .dockerignore matcher the Dockerfile test
// relies on.
func TestDockerIgnore(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, ".dockerignore")
	if err := os.WriteFile(file, []byte("# comment\n.git\n/bin\n**/*.test\ninternal/*/testdata\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	di, err := LoadDockerIgnore(file)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		".git": true, ".git/config": true, "bin/ingest": true, "cmd": false, "internal/x/y.test": true,
		"a.test": true, "internal/event/testdata/f": true, "internal/event": false, "go.mod": false,
	} {
		if _, got := di.Excludes(p); got != want {
			t.Errorf("Excludes(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestInterpolate(t *testing.T) {
	for in, want := range map[string]string{
		"${CLICKHOUSE_PASSWORD:-agentaudit}":    "agentaudit",
		"agentaudit:${AGENTAUDIT_VERSION:-dev}": "agentaudit:dev",
		"${X-def}":                              "def",
		"$${t}":                                 "${t}",
		"${UNSET}":                              "",
		"plain":                                 "plain",
	} {
		if got := Interpolate(in); got != want {
			t.Errorf("Interpolate(%q) = %q, want %q", in, got, want)
		}
	}
}

type promConfig struct {
	ruleFiles []string
	targets   map[string][]string // job → targets
}

func loadPrometheusConfig(t *testing.T) promConfig {
	t.Helper()
	var raw struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, repoPath(t, "deploy/prometheus/prometheus.yml"), &raw)
	pc := promConfig{ruleFiles: raw.RuleFiles, targets: map[string][]string{}}
	for _, sc := range raw.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			pc.targets[sc.JobName] = append(pc.targets[sc.JobName], st.Targets...)
		}
	}
	return pc
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func firstKeys[V any](m map[string]V, n int) []string {
	k := sortedKeys(m)
	return k[:min(n, len(k))]
}

// TestDockerfileBuild checks the Dockerfile's `go build` without Docker:
// with its environment (CGO_ENABLED=0) every package it builds resolves
// without errors and without cgo (the distroless static image has no libc),
// and its main packages include every binary docker-compose runs.
//
// It asks `go list` rather than building: a cold static build (-trimpath,
// CGO_ENABLED=0 share no build cache with `make build`) took 264 s on the
// shared 2-core machine; the code itself is compiled by every other test.
func TestDockerfileBuild(t *testing.T) {
	df, err := LoadDockerfile(repoPath(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var build []string
	for _, r := range df.Runs {
		if strings.Contains(r, "go build") {
			build, err = shellWords(r)
			if err != nil {
				t.Fatalf("RUN %s: %v", r, err)
			}
		}
	}
	if build == nil {
		t.Fatal("no go build in the Dockerfile")
	}
	var env, patterns []string
	goSeen := false
	for _, a := range build {
		switch {
		case a == "go":
			goSeen = true
		case !goSeen && strings.Contains(a, "=") && !strings.HasPrefix(a, "--"):
			env = append(env, a)
		case goSeen && strings.HasPrefix(a, "./"):
			patterns = append(patterns, a)
		}
	}
	if !slices.Contains(env, "CGO_ENABLED=0") || len(patterns) == 0 {
		t.Fatalf("build step %q: want CGO_ENABLED=0 go build … ./packages for static binaries", build)
	}
	cmd := exec.Command("go", append([]string{"list", "-e", "-deps", "-f", "{{.ImportPath}}|{{.Name}}|{{len .CgoFiles}}|{{.DepOnly}}|{{if .Error}}{{.Error}}{{end}}"}, patterns...)...)
	cmd.Dir = root(t)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", patterns, err)
	}
	binaries := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "|", 5)
		if len(f) != 5 {
			t.Fatalf("go list: %q", line)
		}
		if f[4] != "" {
			t.Errorf("%s: %s", f[0], f[4])
		}
		if f[2] != "0" {
			t.Errorf("%s needs cgo: the binary would not be static", f[0])
		}
		if f[1] == "main" && f[3] == "false" {
			binaries[path.Base(f[0])] = true
		}
	}
	c := loadCompose(t)
	want := map[string]bool{"healthcheck": true}
	for name, svc := range c.Services {
		if svc.Build == nil || len(svc.Entrypoint) == 0 {
			continue
		}
		if _, pending := pendingServices()[name]; pending {
			continue // its cmd/ is not merged yet
		}
		want[path.Base(svc.Entrypoint[0])] = true
	}
	for bin := range want {
		if !binaries[bin] {
			t.Errorf("the image would not contain %s (built: %v)", bin, sortedKeys(binaries))
		}
	}
	t.Logf("image binaries %v; compose runs %v", sortedKeys(binaries), sortedKeys(want))
}

// shellWords splits a RUN command line into words as sh does for the simple
// commands a Dockerfile build step uses: blanks separate words, single and
// double quotes group (and are removed); no expansions.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	got, err := shellWords(`CGO_ENABLED=0 go build -ldflags="-s -w" -o '/out dir/' ./cmd/...`)
	want := []string{"CGO_ENABLED=0", "go", "build", "-ldflags=-s -w", "-o", "/out dir/", "./cmd/..."}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("shellWords = %q, %v, want %q", got, err, want)
	}
	if _, err := shellWords(`a "b`); err == nil {
		t.Error("unterminated quote accepted")
	}
}
