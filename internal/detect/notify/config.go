package notify

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentaudit/agentaudit/internal/config"
	"github.com/agentaudit/agentaudit/internal/webhooksink"
)

// Kinds of message. A detection goes to every enabled "notify" endpoint of
// its tenant; when the detector asks for a revocation (and the token was not
// already revoked in the revocation window) it also goes to the "revoke"
// endpoints.
const (
	KindRevoke = "revoke"
	KindNotify = "notify"
)

// Body formats of an endpoint.
const (
	FormatJSON    = "json"     // {"type","timestamp","data":{…}} (Standard Webhooks payload shape)
	FormatCAEPSET = "caep-set" // CAEP session-revoked Security Event Token claims, unsigned JSON
	FormatOCSF    = "ocsf"     // OCSF 1.3 Detection Finding (class_uid 2004)
)

// DefaultSchedule is the Standard Webhooks retry schedule: the delay before
// each attempt, the first immediate. Its length is the number of attempts.
var defaultSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DefaultSchedule returns a copy of the Standard Webhooks retry schedule.
func DefaultSchedule() []time.Duration { return slices.Clone(defaultSchedule) }

// Config of the webhook sender (YAML key and flag prefix "notify.").
type Config struct {
	Enabled bool `yaml:"enabled"`
	// Endpoints come from YAML; the flags below add one more, named
	// "default", when notify.url is set (handy for env-only deployments).
	Endpoints []Endpoint `yaml:"endpoints"`
	Default   Endpoint   `yaml:"default"`

	// Schedule: delay before each attempt (first usually 0); full jitter is
	// applied to each delay. len(Schedule) attempts at most.
	Schedule DurationList `yaml:"schedule"`
	// MaxRetryAfter caps a receiver's Retry-After (429/503).
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
	// RevocationWindow: at most one revocation per token per window.
	RevocationWindow time.Duration `yaml:"revocation_window"`
	// RevokedLookback: how far back Revoked() remembers revocations at
	// start (warmed from the revocations table).
	RevokedLookback time.Duration `yaml:"revoked_lookback"`
	// QueueSize bounds the pending messages held in memory per endpoint;
	// beyond it messages stay in the outbox and are reloaded when the queue
	// drains (counted in dropped_total{reason="queue_full"}).
	QueueSize int `yaml:"queue_size"`
	// StoreTimeout bounds each ClickHouse write and read of the sender.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// Issuer is the "iss" of CAEP SETs and the OCSF product name.
	Issuer string `yaml:"issuer"`
	// Instance names this detector instance in the outbox rows it writes;
	// at start it loads only the pending rows it owns (and rows without an
	// owner). Empty (one instance): every pending row. With several
	// instances give each a stable name (a StatefulSet pod name): rows of
	// an instance are sent when an instance of that name runs again.
	Instance string `yaml:"instance"`
	// RecordInterval: how often delivery attempts (webhook_deliveries,
	// outbox states, revocations) are written; see Sender.runRecorder.
	RecordInterval time.Duration `yaml:"record_interval"`
}

// Endpoint is one webhook receiver.
type Endpoint struct {
	// Name identifies the endpoint in metrics, logs and tables (never the
	// URL, which may carry credentials). [a-z0-9_.-], at most 64 chars.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Kinds: revoke and/or notify.
	Kinds config.StringSlice `yaml:"kinds"`
	// Tenants whose detections go here: "*" for all.
	Tenants config.StringSlice `yaml:"tenants"`
	// Secrets "whsec_…": the message carries one signature per secret, so
	// the receiver can rotate (add the new one, switch, drop the old one).
	// Prefer SecretsEnv or SecretsFile over secrets inline in YAML.
	Secrets []config.Secret `yaml:"secrets"`
	// SecretsEnv names an env var holding secrets separated by spaces or commas.
	SecretsEnv string `yaml:"secrets_env"`
	// SecretsFile holds one secret per line.
	SecretsFile string `yaml:"secrets_file"`
	// Format of the body: json, caep-set or ocsf.
	Format string `yaml:"format"`
	// Timeout of one request.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrency: requests in flight to this endpoint at most.
	MaxConcurrency int `yaml:"max_concurrency"`
	// Disabled endpoints get nothing.
	Disabled bool `yaml:"disabled"`
	// CAEP subject format for caep-set bodies: opaque (token_id as an opaque
	// id) or jwt_id (token_id as the jti of a JWT issued by TokenIssuer).
	CAEPSubjectFormat string `yaml:"caep_subject_format"`
	TokenIssuer       string `yaml:"token_issuer"`
}

// RegisterFlagsWithPrefix binds the config to flags (prefix "notify.").
func (c *Config) RegisterFlagsWithPrefix(p string, fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, p+"enabled", true, "send revocation and notification webhooks for detections")
	c.Schedule = DurationList(DefaultSchedule())
	fs.Var(&c.Schedule, p+"schedule", "delay before each delivery attempt, comma-separated (Standard Webhooks schedule); full jitter applies")
	fs.DurationVar(&c.MaxRetryAfter, p+"max-retry-after", time.Hour, "cap on a receiver's Retry-After")
	fs.DurationVar(&c.RevocationWindow, p+"revocation-window", time.Hour, "at most one revocation per token per window")
	fs.DurationVar(&c.RevokedLookback, p+"revoked-lookback", 7*24*time.Hour, "revocations older than this are forgotten at start (credential.revoked_reuse)")
	fs.IntVar(&c.QueueSize, p+"queue-size", 10_000, "pending messages held in memory per endpoint (the rest wait in the outbox)")
	fs.DurationVar(&c.StoreTimeout, p+"store-timeout", 10*time.Second, "timeout of each ClickHouse write or read")
	fs.StringVar(&c.Issuer, p+"issuer", "agentaudit", "iss of CAEP SETs, product name in OCSF findings")
	fs.DurationVar(&c.RecordInterval, p+"record-interval", time.Second, "how often delivery attempts are written to ClickHouse (2-3 inserts each time); after a crash the messages delivered since the last write are sent again, with the same webhook-id")
	fs.StringVar(&c.Instance, p+"instance", "", "name of this detector instance in the webhook outbox; with several instances each loads only its own pending rows (empty: all rows, one instance)")
	d := &c.Default
	d.Name = "default"
	fs.StringVar(&d.URL, p+"url", "", "URL of the default endpoint (empty: none; more endpoints in YAML notify.endpoints)")
	config.StringSliceVar(fs, (*[]string)(&d.Kinds), p+"kinds", []string{KindRevoke, KindNotify}, "kinds sent to the default endpoint: revoke, notify")
	config.StringSliceVar(fs, (*[]string)(&d.Tenants), p+"tenants", []string{"*"}, "tenants sent to the default endpoint (* for all)")
	fs.StringVar(&d.SecretsEnv, p+"secrets-env", "AGENTAUDIT_NOTIFY_SECRETS", "env var holding the default endpoint's whsec_ secrets (space or comma separated; first is current)")
	fs.StringVar(&d.SecretsFile, p+"secrets-file", "", "file holding the default endpoint's whsec_ secrets, one per line")
	fs.StringVar(&d.Format, p+"format", FormatJSON, "body format of the default endpoint: json, caep-set or ocsf")
	fs.DurationVar(&d.Timeout, p+"timeout", 5*time.Second, "request timeout of the default endpoint")
	fs.IntVar(&d.MaxConcurrency, p+"max-concurrency", 4, "requests in flight to the default endpoint")
	fs.StringVar(&d.CAEPSubjectFormat, p+"caep-subject-format", "opaque", "subject format of CAEP SETs: opaque or jwt_id")
}

// AllEndpoints returns the YAML endpoints plus the default one when its URL
// is set, with unset fields defaulted.
func (c *Config) AllEndpoints() []Endpoint {
	out := make([]Endpoint, 0, len(c.Endpoints)+1)
	out = append(out, c.Endpoints...)
	if c.Default.URL != "" {
		d := c.Default
		if d.Name == "" {
			d.Name = "default"
		}
		out = append(out, d)
	}
	for i := range out {
		out[i].applyDefaults()
	}
	return out
}

func (e *Endpoint) applyDefaults() {
	if len(e.Kinds) == 0 {
		e.Kinds = config.StringSlice{KindRevoke, KindNotify}
	}
	if len(e.Tenants) == 0 {
		e.Tenants = config.StringSlice{"*"}
	}
	if e.Format == "" {
		e.Format = FormatJSON
	}
	if e.Timeout == 0 {
		e.Timeout = 5 * time.Second
	}
	if e.MaxConcurrency == 0 {
		e.MaxConcurrency = 4
	}
	if e.CAEPSubjectFormat == "" {
		e.CAEPSubjectFormat = "opaque"
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Validate reports configuration errors (config.Validate walks into the
// endpoints).
func (c *Config) Validate() error {
	var errs []error
	add := func(field string, err error) { errs = append(errs, config.Field(field, err)) }
	if len(c.Schedule) == 0 {
		add("schedule", config.ErrRequired)
	}
	for _, d := range c.Schedule {
		if d < 0 {
			add("schedule", fmt.Errorf("%w: negative delay %s", config.ErrInvalid, d))
		}
	}
	if c.MaxRetryAfter <= 0 {
		add("max_retry_after", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	if c.RevocationWindow <= 0 {
		add("revocation_window", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	if c.RevokedLookback < c.RevocationWindow {
		add("revoked_lookback", fmt.Errorf("%w: must be >= revocation_window", config.ErrInvalid))
	}
	if c.QueueSize <= 0 {
		add("queue_size", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	if c.StoreTimeout <= 0 {
		add("store_timeout", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	if c.RecordInterval <= 0 {
		add("record_interval", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	seen := map[string]bool{}
	for i, e := range c.AllEndpoints() {
		path := fmt.Sprintf("endpoints[%d]", i)
		if i == len(c.Endpoints) {
			path = "default"
		}
		if seen[e.Name] {
			add(path+".name", fmt.Errorf("%w: duplicate %q", config.ErrInvalid, e.Name))
		}
		seen[e.Name] = true
		if err := e.check(); err != nil {
			for _, fe := range err.(interface{ Unwrap() []error }).Unwrap() {
				var f *config.FieldError
				if errors.As(fe, &f) {
					add(path+"."+f.Path, f.Err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// check validates one endpoint (defaults applied to a copy first). It is
// not named Validate so that config.Validate does not check the unused
// flag-built default endpoint; Config.Validate calls it for every endpoint.
func (e Endpoint) check() error {
	e.applyDefaults()
	var errs []error
	add := func(field string, err error) { errs = append(errs, config.Field(field, err)) }
	if !nameRE.MatchString(e.Name) {
		add("name", fmt.Errorf("%w: %q must match %s", config.ErrInvalid, e.Name, nameRE))
	}
	if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("url", fmt.Errorf("%w: want an http(s) URL", config.ErrInvalid)) // the URL itself is not echoed: it may hold credentials
	}
	for _, k := range e.Kinds {
		if k != KindRevoke && k != KindNotify {
			add("kinds", fmt.Errorf("%w: %q, want revoke or notify", config.ErrInvalid, k))
		}
	}
	switch e.Format {
	case FormatJSON, FormatOCSF:
	case FormatCAEPSET:
		if slices.Contains(e.Kinds, KindNotify) {
			add("format", fmt.Errorf("%w: caep-set is a session-revoked event: kinds must be [revoke]", config.ErrInvalid))
		}
	default:
		add("format", fmt.Errorf("%w: %q, want json, caep-set or ocsf", config.ErrInvalid, e.Format))
	}
	if e.CAEPSubjectFormat != "opaque" && e.CAEPSubjectFormat != "jwt_id" {
		add("caep_subject_format", fmt.Errorf("%w: %q, want opaque or jwt_id", config.ErrInvalid, e.CAEPSubjectFormat))
	}
	if e.CAEPSubjectFormat == "jwt_id" && e.Format == FormatCAEPSET && e.TokenIssuer == "" {
		add("token_issuer", fmt.Errorf("%w: needed by caep_subject_format jwt_id", config.ErrRequired))
	}
	if len(e.Secrets) == 0 && e.SecretsEnv == "" && e.SecretsFile == "" {
		add("secrets", fmt.Errorf("%w: one of secrets, secrets_env, secrets_file", config.ErrRequired))
	}
	for i, s := range e.Secrets {
		if _, err := webhooksink.ParseSecret(s.Reveal()); err != nil {
			add(fmt.Sprintf("secrets[%d]", i), err)
		}
	}
	if e.Timeout <= 0 {
		add("timeout", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	if e.MaxConcurrency <= 0 {
		add("max_concurrency", fmt.Errorf("%w: must be > 0", config.ErrInvalid))
	}
	return errors.Join(errs...)
}

// keys resolves the endpoint's secrets, in order: inline, env, file.
func (e *Endpoint) keys(getenv func(string) string) ([][]byte, error) {
	var raw []string
	for _, s := range e.Secrets {
		raw = append(raw, s.Reveal())
	}
	if e.SecretsEnv != "" {
		raw = append(raw, strings.FieldsFunc(getenv(e.SecretsEnv), func(r rune) bool { return r == ' ' || r == ',' || r == '\n' })...)
	}
	if e.SecretsFile != "" {
		b, err := os.ReadFile(e.SecretsFile)
		if err != nil {
			return nil, fmt.Errorf("read secrets file: %w", err)
		}
		raw = append(raw, strings.Fields(string(b))...)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("endpoint %s: no secret found (secrets, env %s, file)", e.Name, e.SecretsEnv)
	}
	keys := make([][]byte, 0, len(raw))
	for i, s := range raw {
		k, err := webhooksink.ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("endpoint %s secret %d: %w", e.Name, i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (e *Endpoint) has(kind, tenant string) bool {
	return slices.Contains(e.Kinds, kind) && (slices.Contains(e.Tenants, "*") || slices.Contains(e.Tenants, tenant))
}

// DurationList is a list of durations: comma-separated in a flag or env
// var, a list (or comma-separated string) in YAML.
type DurationList []time.Duration

func (l *DurationList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, d := range *l {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}

// Set replaces the list.
func (l *DurationList) Set(v string) error {
	var out DurationList
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		d, err := time.ParseDuration(item)
		if err != nil {
			return err
		}
		out = append(out, d)
	}
	*l = out
	return nil
}

// UnmarshalYAML accepts a list of durations or a comma-separated string.
func (l *DurationList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return l.Set(n.Value)
	case yaml.SequenceNode:
		var ds []time.Duration
		if err := n.Decode(&ds); err != nil {
			return err
		}
		*l = ds
		return nil
	}
	return fmt.Errorf("line %d: want a list of durations", n.Line)
}

// MarshalYAML renders the list as durations ("5s").
func (l DurationList) MarshalYAML() (any, error) {
	s := make([]string, len(l))
	for i, d := range l {
		s[i] = d.String()
	}
	return s, nil
}
