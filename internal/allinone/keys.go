package allinone

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// demoAPIKey returns the all-in-one's demo API key, created once and kept
// in the data directory so the printed curl commands stay valid across
// restarts. Only its hash is given to the query API.
func demoAPIKey(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "demo-api-key")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("demo api key: %w", err)
	}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	key := "aa_demo_" + hex.EncodeToString(raw)
	if err := writeSecretFile(path, key+"\n"); err != nil {
		return "", fmt.Errorf("demo api key: %w", err)
	}
	return key, nil
}

// ensureSigningKey creates an ed25519 signing key (base64 seed) at path
// unless one is there.
func ensureSigningKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("integrity key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("integrity key: %w", err)
	}
	if err := writeSecretFile(path, base64.StdEncoding.EncodeToString(priv.Seed())+"\n"); err != nil {
		return fmt.Errorf("integrity key: %w", err)
	}
	return nil
}

func writeSecretFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
