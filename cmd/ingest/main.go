// Command ingest consumes OTLP spans and agent audit events from Kafka and
// writes them to ClickHouse, every row exactly once. See internal/ingest.
package main

import (
	"context"
	"os"

	"github.com/agentaudit/agentaudit/internal/app"
	"github.com/agentaudit/agentaudit/internal/ingest"
)

func main() {
	var cfg ingest.ServiceConfig
	os.Exit(app.Main("ingest", &cfg, os.Args[1:], os.Stderr, func(ctx context.Context, d app.Deps) error {
		return ingest.RunService(ctx, &cfg, d.Conn, d.Database, d.Logger, d.Registry, d.Admin)
	}))
}
