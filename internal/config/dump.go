package config

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Dump renders the effective configuration as YAML, in the shape the config
// file takes, with every Secret shown as "[REDACTED]". It is what
// -config.check prints.
func Dump(cfg any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}
