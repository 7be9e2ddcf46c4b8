package main

import (
	"os"
	"testing"

	"github.com/agentaudit/agentaudit/internal/chdb/chtest"
)

// smokeChildEnv makes the test binary run `agentaudit run` (see smoke_test.go).
const smokeChildEnv = "AGENTAUDIT_SMOKE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(smokeChildEnv) == "1" {
		os.Exit(runMain(os.Args[1:]))
	}
	chtest.Main(m)
}
