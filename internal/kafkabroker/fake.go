package kafkabroker

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

const kfakeModule = "github.com/twmb/franz-go/pkg/kfake"

// FakeOptions configures StartFake. The zero value is a one-broker cluster on
// a free loopback port, no topics, no auto-creation, data in memory.
type FakeOptions struct {
	// Port to listen on (127.0.0.1); 0 picks a free port.
	Port int
	// Brokers is the number of brokers in the fake cluster (default 1). With
	// more than one, Port must be 0 and Addr returns the first broker's
	// address (any broker bootstraps the whole cluster).
	Brokers int
	// Topics are created at start: name → partition count.
	Topics map[string]int
	// DefaultPartitions is used for auto-created topics (default 1).
	DefaultPartitions int
	// AutoCreateTopics lets metadata requests create missing topics.
	AutoCreateTopics bool
	// DataDir, if set, persists the cluster's state there and reloads it on
	// the next start; empty keeps everything in memory.
	DataDir string
	// SegmentBytes is log.segment.bytes (0: kfake's default, 100 MiB). In
	// memory, kfake keeps a segment as one byte slice grown by doubling,
	// and every growth copies the whole segment inside the broker's single
	// request loop: a 64 MiB copy stalls every produce and fetch for tens
	// of milliseconds, which a real broker (appending to a file) does not.
	// Small segments (a few MiB) keep those copies short.
	SegmentBytes int64
	// Logger receives kfake's logs (its per-request Info logs at Debug).
	// Nil discards them.
	Logger *slog.Logger
}

// StartFake starts an in-process kfake cluster. kafka-go producers,
// consumers and consumer groups (including offset commits) work against it.
func StartFake(opts FakeOptions) (*Broker, error) {
	if opts.Brokers == 0 {
		opts.Brokers = 1
	}
	if opts.DefaultPartitions == 0 {
		opts.DefaultPartitions = 1
	}
	switch {
	case opts.Brokers < 0:
		return nil, fmt.Errorf("start kfake: brokers must be positive, got %d", opts.Brokers)
	case opts.Port != 0 && opts.Brokers != 1:
		return nil, fmt.Errorf("start kfake: a fixed port needs exactly one broker, got %d", opts.Brokers)
	case opts.Port < 0 || opts.Port > 65535:
		return nil, fmt.Errorf("start kfake: invalid port %d", opts.Port)
	case opts.SegmentBytes < 0:
		return nil, fmt.Errorf("start kfake: segment bytes must not be negative, got %d", opts.SegmentBytes)
	case opts.DefaultPartitions < 0:
		return nil, fmt.Errorf("start kfake: default partitions must be positive, got %d", opts.DefaultPartitions)
	}

	kopts := []kfake.Opt{
		kfake.NumBrokers(opts.Brokers),
		kfake.DefaultNumPartitions(opts.DefaultPartitions),
		kfake.ClusterID("agentaudit-kfake"),
	}
	if opts.Port != 0 {
		kopts = append(kopts, kfake.Ports(opts.Port))
	}
	if opts.AutoCreateTopics {
		kopts = append(kopts, kfake.AllowAutoTopicCreation())
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	if opts.SegmentBytes > 0 {
		kopts = append(kopts, kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.FormatInt(opts.SegmentBytes, 10)}))
	}
	if opts.Logger != nil {
		kopts = append(kopts, kfake.WithLogger(kfakeLogger{opts.Logger}))
	}
	// Sorted so the cluster's state does not depend on map iteration order.
	names := make([]string, 0, len(opts.Topics))
	for name, p := range opts.Topics {
		if p < 1 {
			return nil, fmt.Errorf("start kfake: topic %s: partitions must be at least 1, got %d", name, p)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		kopts = append(kopts, kfake.SeedTopics(int32(opts.Topics[name]), name))
	}

	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, fmt.Errorf("start kfake: cluster has no listeners")
	}
	return &Broker{
		addr:    addrs[0],
		kind:    KindFake,
		version: kfakeVersion(),
		stop: func() error {
			c.Close()
			return nil
		},
	}, nil
}

// kfakeVersion reports the kfake module version linked into this binary, or
// "unknown" where the build info has no dependencies (test binaries).
func kfakeVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == kfakeModule {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return "unknown"
}

// kfakeLogger adapts slog to kfake.Logger. kfake logs every request at Info;
// that is per-event noise for us, so it is demoted to Debug.
type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var lvl slog.Level
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	default:
		lvl = slog.LevelDebug
	}
	ctx := context.Background()
	if !k.l.Enabled(ctx, lvl) {
		return
	}
	k.l.Log(ctx, lvl, fmt.Sprintf(format, args...), slog.String("component", "kfake"))
}
