// Package allinone runs agentaudit on one machine in one process: embedded
// Kafka (kfake) and embedded ClickHouse (libchdb) unless external addresses
// are given, migrations applied, and the services selected by -target.
package allinone

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agentaudit/agentaudit/internal/chdb"
	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/detect"
	"github.com/agentaudit/agentaudit/internal/detect/notify"
	"github.com/agentaudit/agentaudit/internal/ingest"
	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/kafkabroker"
	"github.com/agentaudit/agentaudit/internal/otlphttp"
	"github.com/agentaudit/agentaudit/internal/query"
	"github.com/agentaudit/agentaudit/internal/query/auth"
	"github.com/agentaudit/agentaudit/internal/retention"
	"github.com/agentaudit/agentaudit/internal/sim"
	"github.com/agentaudit/agentaudit/internal/store/chstore"
	"github.com/agentaudit/agentaudit/internal/telemetry"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

// Config of the all-in-one process.
type Config struct {
	DataDir    string           `yaml:"data_dir"`
	Target     string           `yaml:"target"`
	Kafka      KafkaConfig      `yaml:"kafka"`
	ClickHouse ClickHouseConfig `yaml:"clickhouse"`
	Telemetry  telemetry.Config `yaml:"telemetry"`
	Ingest     ingest.Config    `yaml:"ingest"`
	OTLPHTTP   otlphttp.Config  `yaml:"otlp_http"`
	Integrity  IntegrityConfig  `yaml:"integrity"`
	Detect     detect.Config    `yaml:"detect"`
	Notify     notify.Config    `yaml:"notify"`
	Query      query.Config     `yaml:"query"`
	Sink       SinkConfig       `yaml:"sink"`
	Demo       DemoConfig       `yaml:"demo"`
}

// IntegrityConfig: ingest's tamper-evident log. Unless it is configured,
// the all-in-one seals with a key it generates once in the data directory.
type IntegrityConfig struct {
	integrity.Config `yaml:",inline"`
	AutoKey          bool `yaml:"auto_key"`
}

// SinkConfig: a local webhook receiver that verifies signatures and logs
// each revocation, wired as the notifier's endpoint when none is configured.
type SinkConfig struct {
	Enabled       bool   `yaml:"enabled"`
	ListenAddress string `yaml:"listen_address"`
}

// DemoConfig: simulated agent traffic with attacks, for a first look.
type DemoConfig struct {
	Enabled   bool    `yaml:"enabled"`
	TraceRate float64 `yaml:"trace_rate"`
	Seed      uint64  `yaml:"seed"`
	// AttackInterval: each of the 8 attack kinds recurs this often, kinds
	// staggered evenly, so one attack starts every AttackInterval/8.
	AttackInterval time.Duration `yaml:"attack_interval"`
	// AttackWarmup: benign baseline before the first attack.
	AttackWarmup time.Duration `yaml:"attack_warmup"`
}

// KafkaConfig: embedded kfake unless Brokers is set.
type KafkaConfig struct {
	Brokers     config.StringSlice `yaml:"brokers"`
	Port        int                `yaml:"port"`
	SpansTopic  string             `yaml:"spans_topic"`
	EventsTopic string             `yaml:"events_topic"`
	Partitions  int                `yaml:"partitions"`
}

// ClickHouseConfig: embedded engine unless External is set.
type ClickHouseConfig struct {
	External bool           `yaml:"external"`
	TCPPort  int            `yaml:"tcp_port"`
	HTTPPort int            `yaml:"http_port"`
	Conn     chstore.Config `yaml:"conn"`
}

// RegisterFlags binds the config to flags with defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "data", "directory for the embedded engines' data (kept across restarts)")
	fs.StringVar(&c.Target, "target", "all", "services to run: all or a comma list of ingest,detector,query")
	config.StringSliceVar(fs, (*[]string)(&c.Kafka.Brokers), "kafka.brokers", nil, "external Kafka bootstrap brokers (empty: embedded kfake)")
	fs.IntVar(&c.Kafka.Port, "kafka.port", 9092, "embedded Kafka port on 127.0.0.1 (0: free port)")
	fs.StringVar(&c.Kafka.SpansTopic, "kafka.spans-topic", "otlp_spans", "topic of OTLP trace messages")
	fs.StringVar(&c.Kafka.EventsTopic, "kafka.events-topic", "agent_audit_events", "topic of audit events")
	fs.IntVar(&c.Kafka.Partitions, "kafka.partitions", 4, "partitions of topics created in the embedded Kafka")
	fs.BoolVar(&c.ClickHouse.External, "clickhouse.external", false, "use the ClickHouse at -clickhouse.addr instead of the embedded engine")
	fs.IntVar(&c.ClickHouse.TCPPort, "clickhouse.tcp-port", 9000, "embedded ClickHouse native port on 127.0.0.1 (0: free port)")
	fs.IntVar(&c.ClickHouse.HTTPPort, "clickhouse.http-port", 8123, "embedded ClickHouse HTTP port on 127.0.0.1 (0: free port)")
	c.ClickHouse.Conn.RegisterFlagsWithPrefix("clickhouse.", fs)
	c.Telemetry.RegisterFlagsWithPrefix("telemetry.", "127.0.0.1:9464", fs)
	c.Ingest.RegisterFlagsWithPrefix("ingest.", fs)
	c.OTLPHTTP.RegisterFlagsWithPrefix("otlp-http.", fs)
	c.Integrity.RegisterFlagsWithPrefix("integrity.", fs)
	fs.BoolVar(&c.Integrity.AutoKey, "integrity.auto-key", true, "unless -integrity.enabled is set with a key, seal with a key generated once in the data directory")
	c.Detect.RegisterFlagsWithPrefix("detect.", fs)
	c.Notify.RegisterFlagsWithPrefix("notify.", fs)
	c.Query.RegisterFlagsWithPrefix("query.", fs)
	fs.BoolVar(&c.Sink.Enabled, "sink", true, "run a local webhook receiver (verifies signatures, logs revocations) as the webhook endpoint when none is configured")
	fs.StringVar(&c.Sink.ListenAddress, "sink.listen-address", "127.0.0.1:8090", "address of the local webhook receiver")
	fs.BoolVar(&c.Demo.Enabled, "demo", true, "produce simulated agent traffic (with attacks) into the topics")
	fs.Float64Var(&c.Demo.TraceRate, "demo.trace-rate", 20, "simulated traces per second")
	fs.Uint64Var(&c.Demo.Seed, "demo.seed", 1, "simulator seed")
	fs.DurationVar(&c.Demo.AttackInterval, "demo.attack-interval", 40*time.Second, "each attack kind recurs this often (8 kinds, staggered: one attack every interval/8)")
	fs.DurationVar(&c.Demo.AttackWarmup, "demo.attack-warmup", 15*time.Second, "benign traffic before the first attack")
}

func (c *Config) runs(target string) bool {
	for _, t := range strings.Split(c.Target, ",") {
		if t = strings.TrimSpace(t); t == "all" || t == target {
			return true
		}
	}
	return false
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	for _, t := range strings.Split(c.Target, ",") {
		switch strings.TrimSpace(t) {
		case "all", "ingest", "detector", "query":
		default:
			errs = append(errs, config.Field("target", fmt.Errorf("%w: unknown target %q", config.ErrInvalid, t)))
		}
	}
	if c.Kafka.Partitions < 1 {
		errs = append(errs, config.Field("kafka.partitions", fmt.Errorf("%w: must be >= 1", config.ErrInvalid)))
	}
	return errors.Join(errs...)
}

// Run starts everything and blocks until ctx is cancelled, then stops in
// reverse order. out receives the short human-readable start summary.
func Run(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	var stops []func(context.Context) error
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			if err := stops[i](sctx); err != nil {
				log.Error("stop", "err", err)
			}
		}
	}()

	chCfg := cfg.ClickHouse.Conn
	chKind := "external"
	if !cfg.ClickHouse.External {
		s, err := chdb.StartInProcess(ctx, chdb.Options{
			DataDir:  filepath.Join(cfg.DataDir, "clickhouse"),
			TCPPort:  cfg.ClickHouse.TCPPort,
			HTTPPort: cfg.ClickHouse.HTTPPort,
			Logger:   log,
		})
		if err != nil {
			return fmt.Errorf("embedded clickhouse: %w", err)
		}
		stops = append(stops, s.Stop)
		chCfg.Addr = config.StringSlice{s.Addr()}
		chKind = "embedded, data in " + s.DataDir()
	}
	ran, err := chstore.Migrate(ctx, chCfg, log)
	if err != nil {
		return err
	}
	conn, err := chstore.Open(ctx, chCfg)
	if err != nil {
		return err
	}
	stops = append(stops, func(context.Context) error { return conn.Close() })
	version, err := chstore.ServerVersion(ctx, conn)
	if err != nil {
		return err
	}
	// A fresh database gets the default retention policy (hot/cold/delete
	// TTLs with their floors); an operator's applied policy is never replaced.
	rm, err := retention.New(conn, retention.Options{Database: chCfg.Database, Cluster: chCfg.Cluster, Logger: log})
	if err != nil {
		return err
	}
	if _, applied, err := rm.ApplyIfNone(ctx, retention.DefaultPolicy(), retention.ApplyOptions{Actor: "agentaudit run", Reason: "default policy on a fresh database"}); err != nil {
		return fmt.Errorf("apply default retention policy: %w", err)
	} else if applied {
		log.Info("applied the default retention policy", "policy", "retention/default.yaml")
	}

	brokers := []string(cfg.Kafka.Brokers)
	kafkaKind := "external"
	if len(brokers) == 0 {
		b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{
			Port:    cfg.Kafka.Port,
			DataDir: filepath.Join(cfg.DataDir, "kafka"),
			Topics: map[string]int{
				cfg.Kafka.SpansTopic:  cfg.Kafka.Partitions,
				cfg.Kafka.EventsTopic: cfg.Kafka.Partitions,
			},
			AutoCreateTopics:  true,
			DefaultPartitions: cfg.Kafka.Partitions,
			Logger:            log,
		})
		if err != nil {
			return fmt.Errorf("embedded kafka: %w", err)
		}
		stops = append(stops, func(context.Context) error { return b.Close() })
		brokers = []string{b.Addr()}
		kafkaKind = b.Kind() + " (embedded)"
	}

	reg := telemetry.NewRegistry()
	admin := telemetry.NewServer(cfg.Telemetry.ListenAddress, reg, log)
	admin.AddReadinessCheck("clickhouse", conn.Ping)
	if err := admin.Listen(); err != nil {
		return err
	}

	// The local webhook receiver, and the notifier pointed at it, unless
	// webhook endpoints are configured.
	var sinkAddr string
	if cfg.Sink.Enabled && cfg.runs("detector") && len(cfg.Notify.Endpoints) == 0 && cfg.Notify.Default.URL == "" {
		secret := webhooksink.NewSecret()
		sink, err := webhooksink.New(webhooksink.Options{Secrets: []string{secret}, Logger: log.With("service", "webhook-sink"), Registerer: reg})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Sink.ListenAddress)
		if err != nil {
			return fmt.Errorf("webhook sink: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("POST /webhooks", sink)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		stops = append(stops, srv.Shutdown)
		sinkAddr = ln.Addr().String()
		cfg.Notify.Endpoints = []notify.Endpoint{{
			Name: "demo-sink", URL: "http://" + sinkAddr + "/webhooks",
			Kinds: config.StringSlice{notify.KindRevoke, notify.KindNotify}, Tenants: config.StringSlice{"*"},
			Secrets: []config.Secret{config.Secret(secret)}, Format: notify.FormatJSON,
		}}
	}
	var apiKey string
	if cfg.runs("query") && cfg.Query.APIKeysFile == "" && cfg.Query.APIKeys == "" && cfg.Query.JWT.HMACSecret == "" && cfg.Query.JWT.JWKSFile == "" && cfg.Query.JWT.JWKSURL == "" {
		apiKey, err = demoAPIKey(cfg.DataDir)
		if err != nil {
			return err
		}
		cfg.Query.APIKeys = config.Secret(fmt.Sprintf("- {name: demo-admin, key_sha256: %s, role: admin, tenants: ['*']}\n", auth.HashKey(apiKey)))
	}
	var signer *integrity.Signer
	if cfg.runs("ingest") {
		ic := cfg.Integrity.Config
		if !ic.Enabled && cfg.Integrity.AutoKey {
			ic.Enabled, ic.KeyFile = true, filepath.Join(cfg.DataDir, "integrity.key")
			if err := ensureSigningKey(ic.KeyFile); err != nil {
				return err
			}
		}
		if ic.Enabled {
			if signer, err = integrity.NewSigner(ic); err != nil {
				return err
			}
			if err := signer.Instrument(reg); err != nil {
				return err
			}
		}
	}

	fmt.Fprintf(out, "agentaudit all-in-one is up\n")
	fmt.Fprintf(out, "  clickhouse  %s  ClickHouse %s (%s), database %s, %d migrations applied now\n", chCfg.Addr[0], version, chKind, chCfg.Database, len(ran))
	fmt.Fprintf(out, "  kafka       %s  %s, topics %s and %s\n", strings.Join(brokers, ","), kafkaKind, cfg.Kafka.SpansTopic, cfg.Kafka.EventsTopic)
	fmt.Fprintf(out, "  metrics     http://%s/metrics   health http://%s/readyz\n", admin.Addr(), admin.Addr())
	fmt.Fprintf(out, "  Ctrl-C stops everything; data is kept in %s\n", cfg.DataDir)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return admin.Run(gctx) })
	if cfg.runs("ingest") {
		icfg := ingest.ServiceConfig{Ingest: cfg.Ingest, OTLPHTTP: cfg.OTLPHTTP, ClickHouse: chCfg}
		icfg.Ingest.Brokers = brokers
		icfg.Ingest.SpansTopic, icfg.Ingest.EventsTopic = cfg.Kafka.SpansTopic, cfg.Kafka.EventsTopic
		icfg.OTLPHTTP.Topic = cfg.Kafka.SpansTopic
		g.Go(func() error {
			return ingest.RunServiceWith(gctx, &icfg, conn, chCfg.Database, signer, log.With("service", "ingest"), reg, admin)
		})
		fmt.Fprintf(out, "  ingest      consuming %s, %s; OTLP/HTTP receiver http://%s/v1/traces\n", cfg.Kafka.SpansTopic, cfg.Kafka.EventsTopic, cfg.OTLPHTTP.ListenAddress)
		if signer != nil {
			fmt.Fprintf(out, "  integrity   audit events sealed into signed Merkle logs (key %s); check with: agentaudit verify -keys %s\n", signer.KeyID(), filepath.Join(cfg.DataDir, "integrity.key"))
		}
	}
	if cfg.runs("detector") {
		dcfg := detect.ServiceConfig{Detect: cfg.Detect, Notify: cfg.Notify, ClickHouse: chCfg}
		dcfg.Detect.Brokers = brokers
		dcfg.Detect.SpansTopic, dcfg.Detect.EventsTopic = cfg.Kafka.SpansTopic, cfg.Kafka.EventsTopic
		g.Go(func() error {
			return detect.RunService(gctx, &dcfg, conn, chCfg.Database, log.With("service", "detector"), reg)
		})
		fmt.Fprintf(out, "  detector    rules on %s and %s; webhooks to %d endpoint(s)\n", cfg.Kafka.EventsTopic, cfg.Kafka.SpansTopic, len(cfg.Notify.Endpoints)+btoi(cfg.Notify.Default.URL != ""))
		if sinkAddr != "" {
			fmt.Fprintf(out, "  webhooks    local receiver http://%s/webhooks verifies signatures and logs each revocation\n", sinkAddr)
		}
	}
	if cfg.runs("query") {
		qcfg := query.ServiceConfig{Query: cfg.Query, ClickHouse: chCfg}
		g.Go(func() error {
			return query.RunService(gctx, &qcfg, conn, chCfg.Database, log.With("service", "query"), reg)
		})
		base := "http://" + cfg.Query.ListenAddress
		fmt.Fprintf(out, "  query API   %s  (OpenAPI: %s/openapi.json)\n", base, base)
		if apiKey != "" {
			fmt.Fprintf(out, "  API key     %s  (demo admin, all tenants; kept in %s)\n", apiKey, filepath.Join(cfg.DataDir, "demo-api-key"))
			fmt.Fprintf(out, "  try         curl -s -H 'X-API-Key: %s' \"%s/v1/detections?from=$(date -u -d '-1 hour' +%%FT%%TZ)&to=$(date -u -d '+1 min' +%%FT%%TZ)\"\n", apiKey, base)
			fmt.Fprintf(out, "              curl -s -H 'X-API-Key: %s' \"%s/v1/agents/AGENT_ID/timeline?from=$(date -u -d '-1 hour' +%%FT%%TZ)&to=$(date -u -d '+1 min' +%%FT%%TZ)\"\n", apiKey, base)
		}
	}
	if cfg.Demo.Enabled {
		g.Go(func() error { return runDemo(gctx, cfg, brokers, log) })
		fmt.Fprintf(out, "  demo        simulated agents at %.0f traces/s with an attack every few seconds (-demo=false to turn off)\n", cfg.Demo.TraceRate)
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func runDemo(ctx context.Context, cfg Config, brokers []string, log *slog.Logger) error {
	sc := sim.DefaultConfig()
	sc.Seed = cfg.Demo.Seed
	sc.TraceRate = cfg.Demo.TraceRate
	sc.Start = time.Now().UTC()
	sc.SpansTopic, sc.EventsTopic = cfg.Kafka.SpansTopic, cfg.Kafka.EventsTopic
	sc.Attacks = sim.DefaultAttackConfig()
	sc.Attacks.Interval, sc.Attacks.Warmup = cfg.Demo.AttackInterval, cfg.Demo.AttackWarmup
	kinds, err := sim.ParseAttackKinds("all")
	if err != nil {
		return err
	}
	sc.Attacks.Kinds = kinds
	s, err := sim.New(sc)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	p, err := sim.NewProducer(sim.ProducerConfig{Brokers: brokers})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer p.Close()
	log.Info("demo traffic started", "trace_rate", sc.TraceRate)
	if err := sim.Stream(ctx, s, p, sim.StreamOptions{RealTime: true}); err != nil && ctx.Err() == nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
