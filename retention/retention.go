// Package retention holds retention policies as data: the documented default
// policy file. internal/retention parses it and turns it into ClickHouse TTLs.
package retention

import _ "embed"

// DefaultPolicy is the shipped default policy (YAML).
//
//go:embed default.yaml
var DefaultPolicy []byte
