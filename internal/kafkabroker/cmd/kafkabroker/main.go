// Command kafkabroker is the developer and Makefile entry point of package
// kafkabroker (scripts/kafka-broker.sh calls it), so the Kafka version and
// artifact list live in one place, the Go package:
//
//	kafkabroker fetch              prefetch the Apache Kafka jars into the cache
//	kafkabroker run [-port N] ...  run a broker until interrupted
//	kafkabroker version            print the Kafka version and artifacts
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/agentaudit/agentaudit/internal/kafkabroker"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(os.Args[1:], log); err != nil {
		log.Error("kafkabroker failed", slog.Any("error", err))
		os.Exit(1)
	}
}

func run(args []string, log *slog.Logger) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: kafkabroker fetch|run|version [flags]")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	version := fs.String("kafka-version", kafkabroker.DefaultKafkaVersion, "Apache Kafka version")
	cacheDir := fs.String("cache-dir", "", "jar cache root (default $AGENTAUDIT_CACHE or ~/.cache/agentaudit)")
	kind := fs.String("kind", "apache", "run: apache or kfake")
	port := fs.Int("port", 9092, "run: PLAINTEXT listener port on 127.0.0.1 (0 = free)")
	dataDir := fs.String("data-dir", "", "run: data directory, kept across runs (default: temporary)")
	partitions := fs.Int("partitions", 1, "run: num.partitions for auto-created topics")
	autoCreate := fs.Bool("auto-create-topics", true, "run: allow auto topic creation")
	segmentBytes := fs.Int64("segment-bytes", 0, "run, kfake: log.segment.bytes (0: kfake's default); small segments keep kfake's in-memory segment growth copies short")
	cpuProfile := fs.String("cpuprofile", "", "run: write a CPU profile of the broker process here (kfake: the broker's own work)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "fetch":
		libs, err := kafkabroker.FetchApache(ctx, kafkabroker.FetchOptions{Version: *version, CacheDir: *cacheDir, Logger: log})
		if err != nil {
			return err
		}
		fmt.Println(libs)
		return nil
	case "version":
		fmt.Println(*version)
		for _, a := range kafkabroker.Artifacts(*version) {
			fmt.Println(a)
		}
		return nil
	case "run":
		var (
			b   *kafkabroker.Broker
			err error
		)
		switch *kind {
		case "apache":
			b, err = kafkabroker.StartApache(ctx, kafkabroker.ApacheOptions{
				Version: *version, CacheDir: *cacheDir, DataDir: *dataDir, Port: *port,
				Partitions: *partitions, AutoCreateTopics: *autoCreate, Logger: log,
			})
		case "kfake":
			b, err = kafkabroker.StartFake(kafkabroker.FakeOptions{
				Port: *port, DataDir: *dataDir, DefaultPartitions: *partitions, AutoCreateTopics: *autoCreate, SegmentBytes: *segmentBytes, Logger: log,
			})
		default:
			return fmt.Errorf("unknown -kind %q (want apache or kfake)", *kind)
		}
		if err != nil {
			return err
		}
		log.Info("kafka broker running; interrupt to stop", slog.String("kind", b.Kind()), slog.String("addr", b.Addr()))
		fmt.Println(b.Addr())
		<-ctx.Done()
		return b.Close()
	default:
		return fmt.Errorf("unknown command %q (want fetch, run or version)", cmd)
	}
}
