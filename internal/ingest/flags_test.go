package ingest

import (
	"flag"

	"github.com/prometheus/client_golang/prometheus"
)

func flagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }

func promRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
