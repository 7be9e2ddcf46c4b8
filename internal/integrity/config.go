package integrity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/agentaudit/agentaudit/internal/config"
)

// Config configures the tamper-evident log of the audit events.
type Config struct {
	// Enabled turns sealing on in ingest.
	Enabled bool `yaml:"enabled"`
	// Key holds the ed25519 private key(s): PEM "PRIVATE KEY" (PKCS #8)
	// blocks, or base64 32-byte seeds one per line. Several keys mean
	// rotation: the first signs, the others stay known for verification.
	// From env AGENTAUDIT_INTEGRITY_KEY or -integrity.key-file, never a flag.
	Key config.Secret `yaml:"key"`
	// KeyFile is a file with the same content as Key (YAML or programmatic
	// use; the -integrity.key-file flag reads its file into Key). Used when
	// Key is empty.
	KeyFile string `yaml:"key_file"`
	// CheckpointInterval is the least time between two checkpoints of a log.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// PublishDir, when set, receives the latest signed note of every log
	// as <dir>/<origin with "/" replaced by "_">.checkpoint (written
	// atomically), for a web server, a witness or a backup job to pick up.
	// ClickHouse stays the record; publishing is best effort.
	PublishDir string `yaml:"publish_dir"`
	// Origin names this deployment's logs: a checkpoint's origin line is
	// Origin + "/" + log id, e.g. "agentaudit.example.com/audit_events/3".
	Origin string `yaml:"origin"`
}

// DefaultCheckpointInterval is the default CheckpointInterval: an event is
// provable at most about half a second after it was sealed (ingest signs
// all its partitions' logs in one insert per interval).
const DefaultCheckpointInterval = 500 * time.Millisecond

// RegisterFlagsWithPrefix binds the fields to flags (prefix e.g. "integrity.").
func (c *Config) RegisterFlagsWithPrefix(prefix string, fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, prefix+"enabled", false, "seal every audit event into a signed Merkle log per Kafka partition")
	config.SecretVar(fs, &c.Key, prefix+"key", "ed25519 signing key(s): PEM PRIVATE KEY blocks or base64 32-byte seeds, first signs.")
	fs.DurationVar(&c.CheckpointInterval, prefix+"checkpoint-interval", DefaultCheckpointInterval, "least time between two signed checkpoints of a log")
	fs.StringVar(&c.PublishDir, prefix+"publish-dir", "", "directory that receives the latest signed checkpoint of each log (empty: none)")
	fs.StringVar(&c.Origin, prefix+"origin", "agentaudit", "origin prefix of checkpoints (a name for this deployment)")
}

// Validate reports configuration errors; keys are required when enabled.
func (c *Config) Validate() error {
	var errs []error
	if c.CheckpointInterval < 0 {
		errs = append(errs, config.Field("checkpoint_interval", fmt.Errorf("%w: must not be negative", config.ErrInvalid)))
	}
	if c.Origin == "" || strings.ContainsAny(c.Origin, " \n\t") {
		errs = append(errs, config.Field("origin", fmt.Errorf("%w: must be non-empty without spaces", config.ErrInvalid)))
	}
	if c.Enabled {
		if c.Key == "" && c.KeyFile == "" {
			errs = append(errs, config.Field("key", fmt.Errorf("%w: a signing key is needed when enabled", config.ErrRequired)))
		} else if _, err := c.keys(); err != nil {
			errs = append(errs, config.Field("key", err)) // err never holds key material
		}
	}
	return errors.Join(errs...)
}

func (c *Config) keys() ([]ed25519.PrivateKey, error) {
	text := c.Key.Reveal()
	if text == "" && c.KeyFile != "" {
		b, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("read key file: %w", err)
		}
		text = string(b)
	}
	priv, _, err := parseKeys(text)
	if err != nil {
		return nil, err
	}
	if len(priv) == 0 {
		return nil, errors.New("no private key found")
	}
	return priv, nil
}

// Signer signs checkpoints with the first key and knows the public keys of
// all configured keys.
type Signer struct {
	origin   string
	interval time.Duration
	key      ed25519.PrivateKey
	keyID    string
	pub      PublicKeys
	publish  string   // directory for the latest note of each log, or ""
	metrics  *metrics // nil until Instrument
}

// NewSigner parses the configured keys.
func NewSigner(cfg Config) (*Signer, error) {
	priv, err := cfg.keys()
	if err != nil {
		return nil, fmt.Errorf("integrity keys: %w", err)
	}
	if cfg.Origin == "" {
		cfg.Origin = "agentaudit"
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	s := &Signer{origin: cfg.Origin, interval: cfg.CheckpointInterval, key: priv[0], pub: PublicKeys{}, publish: cfg.PublishDir}
	for _, k := range priv {
		pk := k.Public().(ed25519.PublicKey)
		s.pub[KeyID(pk)] = pk
	}
	s.keyID = KeyID(priv[0].Public().(ed25519.PublicKey))
	return s, nil
}

// KeyID returns the id of the signing key.
func (s *Signer) KeyID() string { return s.keyID }

// CheckpointInterval is the least time between two checkpoints of a log.
func (s *Signer) CheckpointInterval() time.Duration { return s.interval }

// PublicKeys returns the public keys of all configured keys, by id.
func (s *Signer) PublicKeys() PublicKeys { return s.pub }

// Origin returns the origin line of the log logID's checkpoints.
func (s *Signer) Origin(logID string) string { return s.origin + "/" + logID }

// PublicKeys are the verification keys by key id.
type PublicKeys map[string]ed25519.PublicKey

// KeyID is the id of an ed25519 public key: the hex of the first 4 bytes
// of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:4])
}

// ParsePublicKeys reads verification keys: PEM "PUBLIC KEY" (PKIX) blocks,
// PEM "PRIVATE KEY" (PKCS #8) blocks and base64 32-byte seed lines (their
// public halves are taken), and "ed25519:<base64 public key>" lines, the
// form MarshalPublicKeys writes.
func ParsePublicKeys(text string) (PublicKeys, error) {
	priv, pub, err := parseKeys(text)
	if err != nil {
		return nil, err
	}
	out := PublicKeys{}
	for _, k := range priv {
		pk := k.Public().(ed25519.PublicKey)
		out[KeyID(pk)] = pk
	}
	for _, pk := range pub {
		out[KeyID(pk)] = pk
	}
	if len(out) == 0 {
		return nil, errors.New("no key found")
	}
	return out, nil
}

// MarshalPublicKeys writes keys as "ed25519:<base64>" lines, one per key,
// suitable for ParsePublicKeys; these can be shared with auditors.
func MarshalPublicKeys(keys PublicKeys) string {
	var b strings.Builder
	for id, k := range keys {
		fmt.Fprintf(&b, "ed25519:%s # key id %s\n", base64.StdEncoding.EncodeToString(k), id)
	}
	return b.String()
}

// parseKeys parses key text: either PEM blocks only, or lines of seeds
// and "ed25519:" public keys ('#' starts a comment). Its errors never quote
// key material.
func parseKeys(text string) ([]ed25519.PrivateKey, []ed25519.PublicKey, error) {
	var priv []ed25519.PrivateKey
	var pub []ed25519.PublicKey
	if strings.Contains(text, "-----BEGIN") {
		rest := []byte(text)
		for {
			block, r := pem.Decode(rest)
			if block == nil {
				break
			}
			rest = r
			switch block.Type {
			case "PRIVATE KEY":
				k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
				if err != nil {
					return nil, nil, fmt.Errorf("parse PEM private key: %w", err)
				}
				ek, ok := k.(ed25519.PrivateKey)
				if !ok {
					return nil, nil, fmt.Errorf("PEM private key is %T, want ed25519", k)
				}
				priv = append(priv, ek)
			case "PUBLIC KEY":
				k, err := x509.ParsePKIXPublicKey(block.Bytes)
				if err != nil {
					return nil, nil, fmt.Errorf("parse PEM public key: %w", err)
				}
				ek, ok := k.(ed25519.PublicKey)
				if !ok {
					return nil, nil, fmt.Errorf("PEM public key is %T, want ed25519", k)
				}
				pub = append(pub, ek)
			default:
				return nil, nil, fmt.Errorf("unexpected PEM block %q", block.Type)
			}
		}
		if strings.TrimSpace(string(rest)) != "" {
			return nil, nil, errors.New("unparsable text beside PEM blocks; use either PEM blocks or seed lines")
		}
		return priv, pub, nil
	}
	for n, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if p, ok := strings.CutPrefix(line, "ed25519:"); ok {
			b, err := base64.StdEncoding.DecodeString(p)
			if err != nil || len(b) != ed25519.PublicKeySize {
				return nil, nil, fmt.Errorf("line %d: want ed25519:<base64 of a 32-byte public key>", n+1)
			}
			pub = append(pub, ed25519.PublicKey(b))
			continue
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(b) != ed25519.SeedSize {
			return nil, nil, fmt.Errorf("line %d: want base64 of a 32-byte ed25519 seed", n+1)
		}
		priv = append(priv, ed25519.NewKeyFromSeed(b))
	}
	return priv, pub, nil
}
