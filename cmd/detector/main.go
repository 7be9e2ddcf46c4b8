// Command detector consumes audit events and OTLP spans from Kafka, detects
// scope escalation, cross-tenant access, revoked-token reuse and rate abuse
// by non-human actors, stores each detection in ClickHouse and then acts on
// it. See internal/detect.
package main

import (
	"context"
	"os"

	"github.com/agentaudit/agentaudit/internal/app"
	"github.com/agentaudit/agentaudit/internal/detect"
)

func main() {
	var cfg detect.ServiceConfig
	os.Exit(app.Main("detector", &cfg, os.Args[1:], os.Stderr, func(ctx context.Context, d app.Deps) error {
		// The GC settings are the process's: set here, where the detector
		// is the process (the all-in-one keeps Go's defaults).
		defer cfg.Detect.GC.Apply(os.Getenv)()
		return detect.RunService(ctx, &cfg, d.Conn, d.Database, d.Logger, d.Registry)
	}))
}
