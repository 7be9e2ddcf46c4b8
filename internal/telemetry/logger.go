// Package telemetry gives every service the same logs, metrics and admin
// endpoints: a log/slog logger (JSON by default), a Prometheus registry with
// the Go and process collectors, and an admin HTTP server with /metrics,
// /healthz and /readyz.
//
// Nothing is global: the registry and the logger are passed in, so several
// services (or tests) can run in one process.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewLogger returns a logger writing to w at level ("debug", "info", "warn"
// or "error"; "" means info) in format ("json" or "text"; "" means json).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch f, _ := normalizeFormat(format); f {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown log format %q (want json or text)", format)
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

func normalizeFormat(s string) (string, bool) {
	switch f := strings.ToLower(s); f {
	case "", "json":
		return "json", true
	case "text":
		return "text", true
	}
	return "", false
}

// NewRegistry returns a new registry (never the global default one) with the
// Go runtime and process collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
