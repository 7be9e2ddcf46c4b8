package kafkabroker_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/kafkabroker"
)

// One broker of each kind per test binary, started on first use and closed
// in TestMain; every test uses a fresh topic and consumer group.
var brokers = struct {
	fake, apache testBroker
}{
	fake: testBroker{start: func() (*kafkabroker.Broker, error) {
		return kafkabroker.StartFake(kafkabroker.FakeOptions{})
	}},
	apache: testBroker{
		skipEnv: "AGENTAUDIT_SKIP_APACHE_KAFKA",
		start: func() (*kafkabroker.Broker, error) {
			// Generous: a cold cache means a Maven download (~20 s on an empty
			// ~/.m2) before the JVM starts.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			return kafkabroker.StartApache(ctx, kafkabroker.ApacheOptions{Logger: log})
		},
	},
}

type testBroker struct {
	skipEnv string
	start   func() (*kafkabroker.Broker, error)

	once sync.Once
	b    *kafkabroker.Broker
	err  error
	took time.Duration
}

func (tb *testBroker) get(t *testing.T) *kafkabroker.Broker {
	t.Helper()
	if tb.skipEnv != "" && os.Getenv(tb.skipEnv) == "1" {
		t.Skipf("%s=1: skipping the Apache Kafka broker (quick local loop only; CI runs it)", tb.skipEnv)
	}
	tb.once.Do(func() {
		start := time.Now()
		tb.b, tb.err = tb.start()
		tb.took = time.Since(start)
		if tb.err == nil {
			// Once per test binary, so CI output shows what was tested.
			fmt.Printf("kafka: %s (%s, started in %v)\n", tb.b.Kind(), tb.b.Addr(), tb.took.Round(time.Millisecond))
		}
	})
	if tb.err != nil {
		t.Fatalf("start broker: %v", tb.err)
	}
	t.Logf("kafka: %s at %s (version %s, started in %v)", tb.b.Kind(), tb.b.Addr(), tb.b.Version(), tb.took.Round(time.Millisecond))
	return tb.b
}

func (tb *testBroker) close() error {
	if tb.b == nil {
		return nil
	}
	return tb.b.Close()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := errors.Join(brokers.fake.close(), brokers.apache.close()); err != nil {
		fmt.Fprintln(os.Stderr, "close brokers:", err)
		code = 1
	}
	// After Close: kfake's Close does not wait for its connection goroutines,
	// so they may still be winding down; goleak.Find retries with backoff
	// before it reports, which covers that without ignoring anything.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// eachKind runs fn against every broker kind, in parallel subtests.
func eachKind(t *testing.T, fn func(t *testing.T, b *kafkabroker.Broker)) {
	for _, k := range []struct {
		name string
		tb   *testBroker
	}{
		{"kfake", &brokers.fake},
		{"apache", &brokers.apache},
	} {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			fn(t, k.tb.get(t))
		})
	}
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// uniqueName returns a topic/group name unique to this test run.
func uniqueName(t *testing.T, prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, unsafeName.ReplaceAllString(t.Name(), "_"), time.Now().UnixNano())
}

// TestGroupResumesFromCommittedOffset: a group member commits what it read
// and leaves; the next member of the group gets exactly the rest.
func TestGroupResumesFromCommittedOffset(t *testing.T) {
	eachKind(t, func(t *testing.T, b *kafkabroker.Broker) {
		const (
			partitions = 3
			total      = 30
			first      = 12 // read and committed by the first reader
		)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		topic, group := uniqueName(t, "resume"), uniqueName(t, "group")
		if err := b.CreateTopic(ctx, topic, partitions); err != nil {
			t.Fatal(err)
		}

		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections() // the writer does not own its transport
		w := &kafka.Writer{
			Addr:         kafka.TCP(b.Addr()),
			Topic:        topic,
			Balancer:     &kafka.RoundRobin{},
			BatchTimeout: 10 * time.Millisecond,
			RequiredAcks: kafka.RequireAll,
			Transport:    tr,
		}
		want := make([]string, total)
		msgs := make([]kafka.Message, total)
		for i := range msgs {
			want[i] = fmt.Sprintf("m-%02d", i)
			msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("k-%02d", i)), Value: []byte(want[i])}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("close writer: %v", err)
		}

		r1 := newGroupReader(t, b, topic, group)
		got1 := fetchN(ctx, t, r1, first)
		if err := r1.CommitMessages(ctx, got1...); err != nil {
			t.Fatalf("commit: %v", err)
		}
		if err := r1.Close(); err != nil {
			t.Fatalf("close first reader: %v", err)
		}

		r2 := newGroupReader(t, b, topic, group)
		got2 := fetchN(ctx, t, r2, total-first)
		if err := r2.Close(); err != nil {
			t.Fatalf("close second reader: %v", err)
		}

		v1, v2 := values(got1), values(got2)
		for _, v := range v2 {
			if slices.Contains(v1, v) {
				t.Errorf("second reader got %s, which the first reader committed", v)
			}
		}
		all := slices.Sorted(slices.Values(append(v1, v2...)))
		if !slices.Equal(all, want) {
			t.Errorf("first+second reader got %v, want each of %v exactly once", all, want)
		}
		t.Logf("first reader committed %d, second resumed with %d, over %d partitions", len(got1), len(got2), partitions)
	})
}

func newGroupReader(t *testing.T, b *kafkabroker.Broker, topic, group string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{b.Addr()},
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    0, // commits are synchronous, in CommitMessages
		MaxWait:           250 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  250 * time.Millisecond,
		ErrorLogger:       kafka.LoggerFunc(t.Logf),
	})
}

func fetchN(ctx context.Context, t *testing.T, r *kafka.Reader, n int) []kafka.Message {
	t.Helper()
	msgs := make([]kafka.Message, 0, n)
	for len(msgs) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch message %d of %d: %v", len(msgs)+1, n, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func values(msgs []kafka.Message) []string {
	vs := make([]string, len(msgs))
	for i, m := range msgs {
		vs[i] = string(m.Value)
	}
	return vs
}

func TestCreateTopic(t *testing.T) {
	eachKind(t, func(t *testing.T, b *kafkabroker.Broker) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		topic := uniqueName(t, "create")
		if err := b.CreateTopic(ctx, topic, 4); err != nil {
			t.Fatal(err)
		}
		conn, err := kafka.DialContext(ctx, "tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ps, err := conn.ReadPartitions(topic)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 4 {
			t.Fatalf("topic has %d partitions, want 4", len(ps))
		}
		if err := b.CreateTopic(ctx, topic, 4); err != nil {
			t.Errorf("create existing topic with the same partitions: %v", err)
		}
		if err := b.CreateTopic(ctx, topic, 2); err == nil || !strings.Contains(err.Error(), "exists with 4 partitions") {
			t.Errorf("create existing topic with other partitions: got %v, want an 'exists with 4 partitions' error", err)
		}
	})
}

func TestBrokerKind(t *testing.T) {
	eachKind(t, func(t *testing.T, b *kafkabroker.Broker) {
		switch k := b.Kind(); {
		case k == kafkabroker.KindFake:
			if b.LogPath() != "" {
				t.Errorf("kfake LogPath = %q, want empty", b.LogPath())
			}
		case k == kafkabroker.KindApache+" "+kafkabroker.DefaultKafkaVersion:
			if b.Version() != kafkabroker.DefaultKafkaVersion {
				t.Errorf("Version = %q, want %q", b.Version(), kafkabroker.DefaultKafkaVersion)
			}
			// The broker itself must report the version we claim.
			log, err := os.ReadFile(b.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			if want := "Kafka version: " + b.Version(); !strings.Contains(string(log), want) {
				t.Errorf("broker log %s lacks %q", b.LogPath(), want)
			}
		default:
			t.Errorf("unexpected Kind %q", k)
		}
	})
}

// TestFetchApacheUsesCache: once the broker has started, the jars are cached
// and verified from the manifest alone; Maven is not run again (a missing
// mvn would fail the fetch).
func TestFetchApacheUsesCache(t *testing.T) {
	brokers.apache.get(t) // fills the cache
	noMvn := filepath.Join(t.TempDir(), "no-such-mvn")
	libs, err := kafkabroker.FetchApache(t.Context(), kafkabroker.FetchOptions{Mvn: noMvn})
	if err != nil {
		t.Fatalf("fetch from warm cache ran maven: %v", err)
	}
	if _, err := os.Stat(filepath.Join(libs, "kafka_2.13-"+kafkabroker.DefaultKafkaVersion+".jar")); err != nil {
		t.Error(err)
	}
}

func TestStartFakeSeedTopics(t *testing.T) {
	b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{Topics: map[string]int{"seeded": 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := kafka.DialContext(t.Context(), "tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions("seeded")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Errorf("seeded topic has %d partitions, want 3", len(ps))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTopic(t.Context(), "late", 1); !errors.Is(err, kafkabroker.ErrClosed) {
		t.Errorf("CreateTopic after Close: got %v, want ErrClosed", err)
	}
}

// TestStartFakeSmallSegments: with SegmentBytes set, messages written over
// many segments (64 KiB each here) all read back, in order, from the first
// offset; a negative size is refused.
func TestStartFakeSmallSegments(t *testing.T) {
	if _, err := kafkabroker.StartFake(kafkabroker.FakeOptions{SegmentBytes: -1}); err == nil {
		t.Fatal("StartFake accepted negative segment bytes")
	}
	dir := t.TempDir()
	b, err := kafkabroker.StartFake(kafkabroker.FakeOptions{Topics: map[string]int{"segs": 1}, SegmentBytes: 64 << 10, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := kafka.DialLeader(t.Context(), "tcp", b.Addr(), "segs", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 2000 // 1 KiB each: about 30 segments
	value := make([]byte, 1<<10)
	for i := 0; i < n; i += 100 {
		msgs := make([]kafka.Message, 100)
		for j := range msgs {
			msgs[j] = kafka.Message{Key: []byte(strconv.Itoa(i + j)), Value: value}
		}
		if _, err := conn.WriteMessages(msgs...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Seek(0, kafka.SeekAbsolute); err != nil {
		t.Fatal(err)
	}
	next := 0
	for next < n {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		batch := conn.ReadBatch(1, 1<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if string(m.Key) != strconv.Itoa(next) || m.Offset != int64(next) {
				t.Fatalf("message %d: key %s at offset %d", next, m.Key, m.Offset)
			}
			next++
		}
		if err := batch.Close(); err != nil {
			t.Fatalf("after %d messages: %v", next, err)
		}
	}
	// The size applied: the partition's log is in many segment files
	// (kfake names them <base offset>.dat).
	var segments int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".dat") {
			segments++
		}
		return nil
	})
	if segments < 10 {
		t.Errorf("%d segment files for 2 MiB in 64 KiB segments", segments)
	}
}
