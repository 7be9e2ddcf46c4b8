// Command query serves the query API for auditors: tenant-isolated
// compliance queries over ClickHouse. See internal/query.
package main

import (
	"context"
	"os"

	"github.com/agentaudit/agentaudit/internal/app"
	"github.com/agentaudit/agentaudit/internal/query"
)

func main() {
	var cfg query.ServiceConfig
	os.Exit(app.Main("query", &cfg, os.Args[1:], os.Stderr, func(ctx context.Context, d app.Deps) error {
		return query.RunService(ctx, &cfg, d.Conn, d.Database, d.Logger, d.Registry)
	}))
}
