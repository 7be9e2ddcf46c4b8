package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// APIKeyEntry is one entry of an API keys file: the key itself is never
// stored, only its SHA-256 (hex). Generate one with
//
//	key=$(openssl rand -base64 32); printf %s "$key" | sha256sum
type APIKeyEntry struct {
	Name      string   `yaml:"name"`
	KeySHA256 string   `yaml:"key_sha256"`
	Role      Role     `yaml:"role"`
	Tenants   []string `yaml:"tenants"`
}

// KeyStore maps the hashes of API keys to principals.
type KeyStore struct {
	byHash map[[sha256.Size]byte]Principal
}

// ErrBadKeyFile is returned for an API keys file or value that does not parse
// or holds an invalid entry.
var ErrBadKeyFile = errors.New("invalid api keys")

// ParseKeys parses a YAML list of APIKeyEntry.
func ParseKeys(data []byte) ([]APIKeyEntry, error) {
	var es []APIKeyEntry
	if strings.TrimSpace(string(data)) == "" {
		return nil, nil
	}
	if err := yaml.Unmarshal(data, &es); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKeyFile, err)
	}
	return es, nil
}

// LoadKeyFile reads a YAML list of APIKeyEntry from path.
func LoadKeyFile(path string) ([]APIKeyEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read api keys file: %w", err)
	}
	es, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("api keys file %s: %w", path, err)
	}
	return es, nil
}

// NewKeyStore validates the entries (names and hashes unique, hashes 64 hex
// digits, roles and tenants valid) and indexes them.
func NewKeyStore(entries []APIKeyEntry) (*KeyStore, error) {
	ks := &KeyStore{byHash: map[[sha256.Size]byte]Principal{}}
	names := map[string]bool{}
	for i, e := range entries {
		if e.Name == "" {
			return nil, fmt.Errorf("%w: entry %d: name is empty", ErrBadKeyFile, i)
		}
		if names[e.Name] {
			return nil, fmt.Errorf("%w: entry %q: duplicate name", ErrBadKeyFile, e.Name)
		}
		names[e.Name] = true
		var h [sha256.Size]byte
		raw, err := hex.DecodeString(strings.ToLower(e.KeySHA256))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%w: entry %q: key_sha256 must be 64 hex digits", ErrBadKeyFile, e.Name)
		}
		copy(h[:], raw)
		if _, dup := ks.byHash[h]; dup {
			return nil, fmt.Errorf("%w: entry %q: duplicate key_sha256", ErrBadKeyFile, e.Name)
		}
		p, err := NewPrincipal(e.Name, "api_key", e.Role, e.Tenants)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %q: %w", ErrBadKeyFile, e.Name, err)
		}
		ks.byHash[h] = p
	}
	return ks, nil
}

// Len is the number of keys.
func (ks *KeyStore) Len() int { return len(ks.byHash) }

// Lookup returns the principal of key. The map is keyed by the key's
// SHA-256, so lookup timing can at most leak bits of a hash of a
// high-entropy key, never of the key.
func (ks *KeyStore) Lookup(key string) (Principal, bool) {
	p, ok := ks.byHash[sha256.Sum256([]byte(key))]
	return p, ok
}

// HashKey returns the hex SHA-256 of key, as stored in a keys file.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}
