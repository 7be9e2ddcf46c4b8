package otlphttp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/goleak"

	"github.com/agentaudit/agentaudit/internal/event"
	"github.com/agentaudit/agentaudit/internal/kafkabroker"
)

// One kfake broker per test binary, started on first use; every test uses a
// fresh topic.
var broker struct {
	once sync.Once
	b    *kafkabroker.Broker
	err  error
}

func testBroker(t *testing.T) *kafkabroker.Broker {
	t.Helper()
	broker.once.Do(func() {
		broker.b, broker.err = kafkabroker.StartFake(kafkabroker.FakeOptions{})
	})
	if broker.err != nil {
		t.Fatalf("start kfake: %v", broker.err)
	}
	return broker.b
}

func TestMain(m *testing.M) {
	code := m.Run()
	if broker.b != nil {
		if err := broker.b.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close broker:", err)
			code = 1
		}
	}
	// After Close: kfake's connection goroutines may still be winding down;
	// goleak.Find retries with backoff before it reports.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const testPartitions = 4

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// newTopic creates a topic unique to this test.
func newTopic(t *testing.T) string {
	t.Helper()
	topic := fmt.Sprintf("otlp-%s-%d", unsafeName.ReplaceAllString(t.Name(), "_"), time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := testBroker(t).CreateTopic(ctx, topic, testPartitions); err != nil {
		t.Fatal(err)
	}
	return topic
}

// newWriter returns NewKafkaWriter against the test broker, closed with the test.
func newWriter(t *testing.T) *kafka.Writer {
	w := NewKafkaWriter([]string{testBroker(t).Addr()})
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close writer: %v", err)
		}
		w.Transport.(*kafka.Transport).CloseIdleConnections()
	})
	return w
}

func testConfig(topic string) Config {
	var c Config
	c.RegisterFlagsWithPrefix("otlphttp.", flag.NewFlagSet("test", flag.ContinueOnError))
	c.ListenAddress = "127.0.0.1:0"
	c.Topic = topic
	return c
}

func testLogger() *slog.Logger {
	w := io.Discard
	if os.Getenv("AGENTAUDIT_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// server is a running receiver.
type server struct {
	r      *Receiver
	reg    *prometheus.Registry
	url    string // http://host:port
	client *http.Client
	stop   func() error
}

// startReceiver runs a receiver with cfg and pub until the test ends.
func startReceiver(t *testing.T, cfg Config, pub Publisher) *server {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := New(cfg, pub, event.DefaultSpanOptions(), testLogger(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tr := &http.Transport{}
	s := &server{r: r, reg: reg, url: "http://" + r.Addr(), client: &http.Client{Transport: tr, Timeout: time.Minute}}
	var once sync.Once
	var runErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				runErr = errors.New("Run did not return within a minute")
			}
			tr.CloseIdleConnections()
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// post sends body to path with the content type and encoding ("" for none).
func (s *server) post(t *testing.T, path, contentType, contentEncoding string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if contentEncoding != "" {
		req.Header.Set("Content-Encoding", contentEncoding)
	}
	return s.do(t, req)
}

func (s *server) do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// consume reads every message of topic, partition by partition, up to the
// high watermarks: the receiver answers only after Kafka acknowledged, so
// what it published is there.
func consume(t *testing.T, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for p := range testPartitions {
		conn, err := kafka.DialLeader(ctx, "tcp", testBroker(t).Addr(), topic, p)
		if err != nil {
			t.Fatalf("dial partition %d: %v", p, err)
		}
		first, last, err := conn.ReadOffsets()
		if err != nil {
			conn.Close()
			t.Fatalf("read offsets of partition %d: %v", p, err)
		}
		if _, err := conn.Seek(first, kafka.SeekAbsolute); err != nil {
			conn.Close()
			t.Fatal(err)
		}
		for off := first; off < last; off++ {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, err := conn.ReadMessage(64 << 20)
			if err != nil {
				conn.Close()
				t.Fatalf("read partition %d offset %d: %v", p, off, err)
			}
			out = append(out, m)
		}
		conn.Close()
	}
	return out
}

// Test data: an SDK-style batch, as a BatchSpanProcessor exports it: spans
// of several traces interleaved, from two resources and three scopes.

func traceID(n byte) pcommon.TraceID {
	return pcommon.TraceID{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, n}
}

func spanID(trace, n byte) pcommon.SpanID {
	return pcommon.SpanID{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, trace, n}
}

type spanSpec struct {
	res, scope int // indexes into the batch's resources and scopes
	trace, id  byte
	parent     byte // 0 for a root span
	name       string
	start      time.Time
	zeroSpanID bool
	bigAttr    int // bytes of a filler attribute
}

// buildBatch builds the request: resource 0 (agent runtime) has scopes 0 and
// 1, resource 1 (MCP tool server) has scope 2.
func buildBatch(specs []spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	var scopes [3]ptrace.ScopeSpans
	for i, svc := range []string{"agent-runtime", "mcp-tools"} {
		rs := td.ResourceSpans().AppendEmpty()
		rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.37.0")
		rs.Resource().Attributes().PutStr("service.name", svc)
		rs.Resource().Attributes().PutStr("tenant.id", "acme")
		if i == 0 {
			rs.Resource().Attributes().PutStr("gen_ai.agent.id", "agent-7")
			for j, name := range []string{"openai-agents", "mcp-client"} {
				ss := rs.ScopeSpans().AppendEmpty()
				ss.Scope().SetName(name)
				ss.Scope().SetVersion("1.2.3")
				scopes[j] = ss
			}
		} else {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName("mcp-server")
			ss.SetSchemaUrl("https://opentelemetry.io/schemas/1.36.0")
			scopes[2] = ss
		}
	}
	for _, sp := range specs {
		s := scopes[sp.scope].Spans().AppendEmpty()
		s.SetTraceID(traceID(sp.trace))
		if !sp.zeroSpanID {
			s.SetSpanID(spanID(sp.trace, sp.id))
		}
		if sp.parent != 0 {
			s.SetParentSpanID(spanID(sp.trace, sp.parent))
		}
		s.SetName(sp.name)
		s.SetKind(ptrace.SpanKindInternal)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(sp.start))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(sp.start.Add(20 * time.Millisecond)))
		s.Attributes().PutStr("gen_ai.operation.name", "execute_tool")
		s.Attributes().PutStr("gen_ai.tool.name", sp.name)
		if sp.bigAttr > 0 {
			s.Attributes().PutStr("filler", string(bytes.Repeat([]byte("x"), sp.bigAttr)))
		}
	}
	return td
}

// validSpecs: three traces (1, 2, 3) of 3, 2 and 2 spans, interleaved over
// both resources and all scopes.
func validSpecs(now time.Time) []spanSpec {
	at := func(ms int) time.Time { return now.Add(-time.Minute + time.Duration(ms)*time.Millisecond) }
	return []spanSpec{
		{res: 0, scope: 0, trace: 1, id: 1, name: "invoke_agent planner", start: at(0)},
		{res: 0, scope: 0, trace: 2, id: 1, name: "invoke_agent billing", start: at(1)},
		{res: 0, scope: 1, trace: 1, id: 2, parent: 1, name: "tools/call search", start: at(2)},
		{res: 1, scope: 2, trace: 1, id: 3, parent: 2, name: "search", start: at(3)},
		{res: 0, scope: 0, trace: 3, id: 1, name: "invoke_agent support", start: at(4)},
		{res: 1, scope: 2, trace: 2, id: 2, parent: 1, name: "refund", start: at(5)},
		{res: 0, scope: 0, trace: 3, id: 2, parent: 1, name: "chat gpt-4o", start: at(6)},
	}
}

// only returns the part of td that belongs to trace id, built independently
// of splitByTrace: a copy with every other span removed, then the resources
// and scopes left empty.
func only(td ptrace.Traces, id pcommon.TraceID) ptrace.Traces {
	out := ptrace.NewTraces()
	td.CopyTo(out)
	out.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return s.TraceID() != id })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	return out
}

func marshalProto(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func marshalJSON(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// protoField is one field of a protobuf message, for checking the
// hand-written encodings against an independent reader.
type protoField struct {
	num    int
	varint uint64
	bytes  []byte
}

func parseProto(t *testing.T, b []byte) []protoField {
	t.Helper()
	var out []protoField
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			t.Fatalf("bad protobuf tag in % x", b)
		}
		b = b[n:]
		f := protoField{num: int(tag >> 3)}
		switch tag & 7 {
		case 0:
			f.varint, n = binary.Uvarint(b)
			if n <= 0 {
				t.Fatalf("bad varint in % x", b)
			}
			b = b[n:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				t.Fatalf("bad length in % x", b)
			}
			f.bytes = b[n : n+int(l)]
			b = b[n+int(l):]
		default:
			t.Fatalf("unexpected wire type %d", tag&7)
		}
		out = append(out, f)
	}
	return out
}

// rpcStatus decodes a google.rpc.Status in protobuf.
func rpcStatus(t *testing.T, b []byte) (code int, msg string) {
	t.Helper()
	for _, f := range parseProto(t, b) {
		switch f.num {
		case 1:
			code = int(f.varint)
		case 2:
			msg = string(f.bytes)
		default:
			t.Errorf("unexpected field %d in Status", f.num)
		}
	}
	return code, msg
}

// partialSuccess decodes an ExportTraceServiceResponse in protobuf; set is
// whether partial_success is present.
func partialSuccess(t *testing.T, b []byte) (set bool, rejected int64, msg string) {
	t.Helper()
	for _, f := range parseProto(t, b) {
		if f.num != 1 {
			t.Errorf("unexpected field %d in ExportTraceServiceResponse", f.num)
			continue
		}
		set = true
		for _, g := range parseProto(t, f.bytes) {
			switch g.num {
			case 1:
				rejected = int64(g.varint)
			case 2:
				msg = string(g.bytes)
			default:
				t.Errorf("unexpected field %d in ExportTracePartialSuccess", g.num)
			}
		}
	}
	return set, rejected, msg
}
