// Package query is the query API for auditors (cmd/query): a Gin HTTP
// server whose handlers parse and validate requests, a Service that owns
// every SQL statement (always tenant-scoped, every value bound), principals
// from API keys or JWTs (internal/query/auth), per-principal rate limits,
// RFC 9457 problem responses, an OpenAPI 3.1 document generated from the
// same route table that registers the routes, and query_audit: every call
// recorded, in batches, flushed on shutdown.
package query

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/integrity"
)

// DefaultListenAddress is loopback: expose the API deliberately.
const DefaultListenAddress = "127.0.0.1:8080"

// Config of the query API.
type Config struct {
	ListenAddress string `yaml:"listen_address"`
	// APIKeysFile is a YAML list of {name, key_sha256, role, tenants}.
	APIKeysFile string `yaml:"api_keys_file"`
	// APIKeys is the same YAML list given through the environment
	// (AGENTAUDIT_QUERY_AUTH_API_KEYS) or a -file; both sources are merged.
	APIKeys   config.Secret `yaml:"api_keys"`
	JWT       JWTConfig     `yaml:"jwt"`
	CursorKey config.Secret `yaml:"cursor_key"`
	RateLimit RateConfig    `yaml:"rate_limit"`
	// MaxRange bounds to-from of every time-ranged query.
	MaxRange        time.Duration `yaml:"max_range"`
	DefaultPageSize int           `yaml:"default_page_size"`
	MaxPageSize     int           `yaml:"max_page_size"`
	// MaxTraceSpans bounds the spans returned for one trace.
	MaxTraceSpans int `yaml:"max_trace_spans"`
	// MaxExportRows bounds one export response (0: unbounded); a client
	// continues with the cursor of the last row.
	MaxExportRows int64 `yaml:"max_export_rows"`
	// QueryTimeout bounds every query but exports (ExportTimeout).
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// MaxQueryThreads caps ClickHouse's threads per API query (0: the
	// server's max_threads). Pages and point lookups touch little data;
	// under many concurrent callers fewer threads each contend less.
	MaxQueryThreads int            `yaml:"max_query_threads"`
	ExportTimeout   time.Duration  `yaml:"export_timeout"`
	ShutdownTimeout time.Duration  `yaml:"shutdown_timeout"`
	Audit           AuditConfig    `yaml:"audit"`
	Manifest        ManifestConfig `yaml:"manifest"`
}

// ManifestConfig: signed manifests of exports (?manifest=1). Without a key
// the server offers none (400). Use a key of its own rather than the
// integrity log's signing key: a compromised API host must not be able to
// sign checkpoints. Auditors verify with its public key
// (integrity.VerifyManifest).
type ManifestConfig struct {
	// Key: ed25519 private key(s) in the integrity key format (PEM PRIVATE
	// KEY blocks or base64 32-byte seeds; the first signs).
	Key config.Secret `yaml:"key"`
	// Origin names the deployment in the manifest ("<origin>/export").
	Origin string `yaml:"origin"`
}

// signer returns the manifest signer, nil without a key.
func (c *ManifestConfig) signer() (*integrity.Signer, error) {
	if c.Key == "" {
		return nil, nil
	}
	s, err := integrity.NewSigner(integrity.Config{Key: c.Key, Origin: c.Origin})
	if err != nil {
		return nil, fmt.Errorf("manifest key: %w", err)
	}
	return s, nil
}

// JWTConfig: bearer tokens. HS256 with HMACSecret; RS256/ES256 with keys
// from JWKSFile or JWKSURL.
type JWTConfig struct {
	HMACSecret   config.Secret `yaml:"hmac_secret"`
	JWKSFile     string        `yaml:"jwks_file"`
	JWKSURL      string        `yaml:"jwks_url"`
	JWKSRefresh  time.Duration `yaml:"jwks_refresh"`
	Issuer       string        `yaml:"issuer"`
	Audience     string        `yaml:"audience"`
	Leeway       time.Duration `yaml:"leeway"`
	RoleClaim    string        `yaml:"role_claim"`
	TenantsClaim string        `yaml:"tenants_claim"`
}

// RateConfig: a token bucket per principal.
type RateConfig struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
}

// AuditConfig: how query_audit rows are written.
type AuditConfig struct {
	QueueSize     int           `yaml:"queue_size"`
	BatchSize     int           `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// RegisterFlagsWithPrefix binds the config to flags (prefix e.g. "query.").
func (c *Config) RegisterFlagsWithPrefix(p string, fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddress, p+"listen-address", DefaultListenAddress, "API address (host:port)")
	fs.StringVar(&c.APIKeysFile, p+"auth.keys-file", "", "YAML list of API keys: {name, key_sha256, role: auditor|admin, tenants: [...]}")
	config.SecretVar(fs, &c.APIKeys, p+"auth.api-keys", "API keys as the same YAML list as the keys file.")
	config.SecretVar(fs, &c.JWT.HMACSecret, p+"auth.jwt.hmac-secret", "HS256 key for JWT bearer tokens.")
	fs.StringVar(&c.JWT.JWKSFile, p+"auth.jwt.jwks-file", "", "JWK Set file with the RS256/ES256 public keys of JWT issuers")
	fs.StringVar(&c.JWT.JWKSURL, p+"auth.jwt.jwks-url", "", "JWK Set URL (fetched at start and refreshed)")
	fs.DurationVar(&c.JWT.JWKSRefresh, p+"auth.jwt.jwks-refresh", 5*time.Minute, "how often the JWK Set is re-read")
	fs.StringVar(&c.JWT.Issuer, p+"auth.jwt.issuer", "", "required iss claim (empty: any)")
	fs.StringVar(&c.JWT.Audience, p+"auth.jwt.audience", "", "required aud claim (empty: any)")
	fs.DurationVar(&c.JWT.Leeway, p+"auth.jwt.leeway", 30*time.Second, "clock skew allowed on exp and nbf")
	fs.StringVar(&c.JWT.RoleClaim, p+"auth.jwt.role-claim", "role", "claim holding the role (auditor or admin)")
	fs.StringVar(&c.JWT.TenantsClaim, p+"auth.jwt.tenants-claim", "tenants", "claim holding the tenants (array, or space/comma separated)")
	config.SecretVar(fs, &c.CursorKey, p+"cursor-key", "HMAC key signing pagination cursors; empty: a random key per process (cursors then do not survive a restart or cross replicas).")
	fs.Float64Var(&c.RateLimit.RequestsPerSecond, p+"rate-limit.rps", 20, "requests per second per principal")
	fs.IntVar(&c.RateLimit.Burst, p+"rate-limit.burst", 40, "burst per principal")
	fs.DurationVar(&c.MaxRange, p+"max-range", 32*24*time.Hour, "largest to-from of a query")
	fs.IntVar(&c.DefaultPageSize, p+"default-page-size", 100, "page size when limit is not given")
	fs.IntVar(&c.MaxPageSize, p+"max-page-size", 1000, "largest limit")
	fs.IntVar(&c.MaxTraceSpans, p+"max-trace-spans", 10_000, "most spans returned for one trace")
	fs.Int64Var(&c.MaxExportRows, p+"max-export-rows", 0, "most rows in one export response (0: unbounded); continue with the last row's cursor")
	fs.DurationVar(&c.QueryTimeout, p+"query-timeout", 30*time.Second, "time allowed for a query")
	fs.IntVar(&c.MaxQueryThreads, p+"max-query-threads", 0, "ClickHouse threads per query (0: server default)")
	fs.DurationVar(&c.ExportTimeout, p+"export-timeout", time.Hour, "time allowed for an export")
	fs.DurationVar(&c.ShutdownTimeout, p+"shutdown-timeout", 15*time.Second, "time allowed for requests in flight and the query_audit flush on shutdown")
	fs.IntVar(&c.Audit.QueueSize, p+"audit.queue-size", 10_000, "query_audit records buffered; requests wait when it is full (records are never dropped)")
	fs.IntVar(&c.Audit.BatchSize, p+"audit.batch-size", 1_000, "query_audit rows per insert")
	fs.DurationVar(&c.Audit.FlushInterval, p+"audit.flush-interval", time.Second, "longest a query_audit record waits for its insert")
	config.SecretVar(fs, &c.Manifest.Key, p+"manifest.key", "ed25519 key signing export manifests (?manifest=1): PEM PRIVATE KEY or base64 32-byte seed; empty: no manifests.")
	fs.StringVar(&c.Manifest.Origin, p+"manifest.origin", "agentaudit", "origin named in export manifests")
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	var errs []error
	add := func(field string, err error) { errs = append(errs, config.Field(field, err)) }
	positive := func(field string, v int64) {
		if v <= 0 {
			add(field, fmt.Errorf("%w: must be > 0", config.ErrInvalid))
		}
	}
	if _, port, err := net.SplitHostPort(c.ListenAddress); err != nil {
		add("listen_address", fmt.Errorf("%w: %w", config.ErrInvalid, err))
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		add("listen_address", fmt.Errorf("%w: port %q, want 0-65535", config.ErrInvalid, port))
	}
	if c.JWT.JWKSFile != "" && c.JWT.JWKSURL != "" {
		add("jwt.jwks_url", fmt.Errorf("%w: set jwks_file or jwks_url, not both", config.ErrInvalid))
	}
	if n := len(c.JWT.HMACSecret.Reveal()); n > 0 && n < 32 {
		add("jwt.hmac_secret", fmt.Errorf("%w: at least 32 bytes for HS256", config.ErrInvalid))
	}
	if c.RateLimit.RequestsPerSecond <= 0 {
		add("rate_limit.requests_per_second", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	positive("rate_limit.burst", int64(c.RateLimit.Burst))
	positive("max_range", int64(c.MaxRange))
	positive("default_page_size", int64(c.DefaultPageSize))
	if c.MaxPageSize < c.DefaultPageSize {
		add("max_page_size", fmt.Errorf("%w: must be >= default_page_size", config.ErrInvalid))
	}
	positive("max_trace_spans", int64(c.MaxTraceSpans))
	if c.MaxExportRows < 0 {
		add("max_export_rows", fmt.Errorf("%w: must be >= 0", config.ErrInvalid))
	}
	positive("query_timeout", int64(c.QueryTimeout))
	if c.MaxQueryThreads < 0 {
		add("max_query_threads", fmt.Errorf("%w: must be >= 0", config.ErrInvalid))
	}
	positive("export_timeout", int64(c.ExportTimeout))
	positive("shutdown_timeout", int64(c.ShutdownTimeout))
	positive("audit.queue_size", int64(c.Audit.QueueSize))
	positive("audit.batch_size", int64(c.Audit.BatchSize))
	positive("audit.flush_interval", int64(c.Audit.FlushInterval))
	if c.Manifest.Origin == "" || strings.ContainsAny(c.Manifest.Origin, " \n\t") {
		add("manifest.origin", fmt.Errorf("%w: must be non-empty without spaces", config.ErrInvalid))
	}
	if _, err := c.Manifest.signer(); err != nil {
		add("manifest.key", err) // never holds key material
	}
	return errors.Join(errs...)
}
