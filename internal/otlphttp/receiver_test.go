package otlphttp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/event"
)

// checkPublished checks that topic holds exactly one message per trace id of
// want, keyed by the hex trace id, whose value (in enc) is exactly that
// trace's part of sent, and that ingest would accept it.
func checkPublished(t *testing.T, topic string, enc event.Encoding, sent ptrace.Traces, want ...byte) {
	t.Helper()
	msgs := consume(t, topic)
	var keys, wantKeys []string
	for _, n := range want {
		id := traceID(n)
		wantKeys = append(wantKeys, hex.EncodeToString(id[:]))
	}
	byKey := map[string]kafka.Message{}
	for _, m := range msgs {
		keys = append(keys, string(m.Key))
		byKey[string(m.Key)] = m
	}
	slices.Sort(keys)
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("published keys %v, want %v", keys, wantKeys)
	}
	for _, n := range want {
		id := traceID(n)
		m := byKey[hex.EncodeToString(id[:])]
		var (
			got ptrace.Traces
			err error
		)
		if enc == event.EncodingJSON {
			got, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(m.Value)
		} else {
			got, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(m.Value)
		}
		if err != nil {
			t.Fatalf("trace %d: message does not decode as %s: %v", n, enc, err)
		}
		if g, w := string(marshalJSON(t, got)), string(marshalJSON(t, only(sent, id))); g != w {
			t.Errorf("trace %d: message holds\n%s\nwant\n%s", n, g, w)
		}
		rows, _, err := event.DecodeSpans(m.Value, enc, event.DefaultSpanOptions(), nil)
		if err != nil {
			t.Errorf("trace %d: ingest would reject the message: %v", n, err)
		}
		for _, r := range rows {
			if r.TraceID != string(m.Key) {
				t.Errorf("trace %d: row of trace %s in message keyed %s", n, r.TraceID, m.Key)
			}
		}
	}
}

// metricValue is the value of a counter (testutil.ToFloat64 would need a
// module this one does not require).
func metricValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func spansTotal(t *testing.T, s *server, outcome string) int {
	return int(metricValue(t, s.r.m.spans.WithLabelValues(outcome)))
}

func requestsTotal(t *testing.T, s *server, code string) int {
	return int(metricValue(t, s.r.m.requests.WithLabelValues(code)))
}

// TestExportProtobuf: an SDK-style protobuf request with three interleaved
// traces becomes three Kafka messages, one per trace.
func TestExportProtobuf(t *testing.T) {
	topic := newTopic(t)
	s := startReceiver(t, testConfig(topic), newWriter(t))
	td := buildBatch(validSpecs(time.Now()))

	resp := s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(marshalProto(t, td)))
	if resp.status != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/x-protobuf" {
		t.Errorf("Content-Type %q, want application/x-protobuf", ct)
	}
	if set, _, _ := partialSuccess(t, resp.body); set {
		t.Errorf("partial_success set on full success: % x", resp.body)
	}
	checkPublished(t, topic, event.EncodingProto, td, 1, 2, 3)
	if got := spansTotal(t, s, outcomeAccepted); got != 7 {
		t.Errorf("accepted spans metric %d, want 7", got)
	}
	if got := requestsTotal(t, s, "200"); got != 1 {
		t.Errorf("requests_total{code=200} = %d, want 1", got)
	}
	if got := metricValue(t, s.r.m.published); got != 3 {
		t.Errorf("messages published metric %v, want 3", got)
	}
}

// TestExportEncodings: JSON requests are answered in JSON; the published
// encoding follows Config.Encoding, not the request's.
func TestExportEncodings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		json     bool // request in JSON
		kafkaEnc event.Encoding
	}{
		{"json request to otlp_proto", true, event.EncodingProto},
		{"proto request to otlp_json", false, event.EncodingJSON},
		{"json request to otlp_json", true, event.EncodingJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := newTopic(t)
			cfg := testConfig(topic)
			cfg.Encoding = string(tc.kafkaEnc)
			s := startReceiver(t, cfg, newWriter(t))
			td := buildBatch(validSpecs(time.Now()))
			ct, body := "application/x-protobuf", marshalProto(t, td)
			if tc.json {
				ct, body = "application/json; charset=utf-8", marshalJSON(t, td)
			}
			resp := s.post(t, TracesPath, ct, "", bytes.NewReader(body))
			if resp.status != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.status, resp.body)
			}
			if tc.json {
				if got := resp.header.Get("Content-Type"); got != "application/json" {
					t.Errorf("Content-Type %q, want application/json", got)
				}
				if string(resp.body) != "{}" {
					t.Errorf("body %q, want {}", resp.body)
				}
			}
			checkPublished(t, topic, tc.kafkaEnc, td, 1, 2, 3)
		})
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportGzip(t *testing.T) {
	topic := newTopic(t)
	s := startReceiver(t, testConfig(topic), newWriter(t))
	td := buildBatch(validSpecs(time.Now()))
	// Twice: the second request reuses the pooled gzip reader.
	for i := range 2 {
		resp := s.post(t, TracesPath, "application/x-protobuf", "gzip", bytes.NewReader(gzipped(t, marshalProto(t, td))))
		if resp.status != http.StatusOK {
			t.Fatalf("request %d: status %d, body %q", i, resp.status, resp.body)
		}
	}
	msgs := consume(t, topic)
	if len(msgs) != 6 {
		t.Fatalf("%d messages published, want 6 (3 traces, twice)", len(msgs))
	}
}

// TestPartialSuccess: invalid traces are rejected as a whole and reported in
// partial_success with HTTP 200; the valid ones are published.
func TestPartialSuccess(t *testing.T) {
	now := time.Now()
	specs := append(validSpecs(now),
		// Trace 4: its second span has an all-zero span id.
		spanSpec{res: 0, scope: 0, trace: 4, id: 1, name: "invoke_agent x", start: now},
		spanSpec{res: 0, scope: 1, trace: 4, zeroSpanID: true, parent: 1, name: "tools/call", start: now},
		// Trace 5: started 10 years ago.
		spanSpec{res: 1, scope: 2, trace: 5, id: 1, name: "old", start: now.AddDate(-10, 0, 0)},
		spanSpec{res: 1, scope: 2, trace: 5, id: 2, parent: 1, name: "old child", start: now.AddDate(-10, 0, 0)},
		spanSpec{res: 1, scope: 2, trace: 5, id: 3, parent: 1, name: "old child", start: now.AddDate(-10, 0, 0)},
	)
	for _, useJSON := range []bool{false, true} {
		name := "protobuf"
		if useJSON {
			name = "json"
		}
		t.Run(name, func(t *testing.T) {
			topic := newTopic(t)
			s := startReceiver(t, testConfig(topic), newWriter(t))
			td := buildBatch(specs)
			var resp response
			var rejected int64
			var msg string
			if useJSON {
				resp = s.post(t, TracesPath, "application/json", "", bytes.NewReader(marshalJSON(t, td)))
				var body struct {
					PartialSuccess struct {
						RejectedSpans string `json:"rejectedSpans"`
						ErrorMessage  string `json:"errorMessage"`
					} `json:"partialSuccess"`
				}
				if err := json.Unmarshal(resp.body, &body); err != nil {
					t.Fatalf("response %q: %v", resp.body, err)
				}
				// proto3 JSON renders int64 as a string.
				if body.PartialSuccess.RejectedSpans != "5" {
					t.Errorf("rejectedSpans %q, want \"5\"", body.PartialSuccess.RejectedSpans)
				}
				rejected, msg = 5, body.PartialSuccess.ErrorMessage
			} else {
				resp = s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(marshalProto(t, td)))
				var set bool
				set, rejected, msg = partialSuccess(t, resp.body)
				if !set {
					t.Fatalf("partial_success not set: % x", resp.body)
				}
			}
			if resp.status != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.status, resp.body)
			}
			if rejected != 5 {
				t.Errorf("rejected_spans %d, want 5 (2 of trace 4, 3 of trace 5)", rejected)
			}
			for _, want := range []string{"invalid_id", "timestamp_out_of_range", "rejected 5 of 12 spans"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error_message %q lacks %q", msg, want)
				}
			}
			t.Logf("error_message: %s", msg)
			checkPublished(t, topic, event.EncodingProto, td, 1, 2, 3)
			if got := spansTotal(t, s, outcomeAccepted); got != 7 {
				t.Errorf("accepted spans metric %d, want 7", got)
			}
			if got := spansTotal(t, s, outcomeRejected); got != 5 {
				t.Errorf("rejected spans metric %d, want 5", got)
			}
			for _, r := range []event.Reason{event.ReasonInvalidID, event.ReasonTimestampOutOfRange} {
				if got := metricValue(t, s.r.m.rejected.WithLabelValues(string(r))); got != 1 {
					t.Errorf("rejected_traces_total{reason=%s} = %v, want 1", r, got)
				}
			}
		})
	}
}

// TestAllRejected: nothing valid, nothing published, still 200.
func TestAllRejected(t *testing.T) {
	topic := newTopic(t)
	s := startReceiver(t, testConfig(topic), newWriter(t))
	td := buildBatch([]spanSpec{{trace: 9, id: 1, name: "ancient", start: time.Now().AddDate(-10, 0, 0)}})
	resp := s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(marshalProto(t, td)))
	if resp.status != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.status, resp.body)
	}
	if set, rejected, _ := partialSuccess(t, resp.body); !set || rejected != 1 {
		t.Errorf("partial_success set=%v rejected=%d, want set with 1", set, rejected)
	}
	if msgs := consume(t, topic); len(msgs) != 0 {
		t.Errorf("%d messages published, want 0", len(msgs))
	}
}

func TestEmptyRequest(t *testing.T) {
	topic := newTopic(t)
	s := startReceiver(t, testConfig(topic), newWriter(t))
	for _, tc := range []struct{ ct, body, want string }{
		{"application/x-protobuf", "", ""},
		{"application/json", "{}", "{}"},
		{"application/json", `{"resourceSpans":[{"resource":{},"scopeSpans":[{"spans":[]}]}]}`, "{}"},
	} {
		resp := s.post(t, TracesPath, tc.ct, "", strings.NewReader(tc.body))
		if resp.status != http.StatusOK || string(resp.body) != tc.want {
			t.Errorf("%s %q: status %d body %q, want 200 %q", tc.ct, tc.body, resp.status, resp.body, tc.want)
		}
	}
	if msgs := consume(t, topic); len(msgs) != 0 {
		t.Errorf("%d messages published, want 0", len(msgs))
	}
}

// hideLength makes the client send a body without Content-Length (chunked).
type hideLength struct{ r io.Reader }

func (h hideLength) Read(p []byte) (int, error) { return h.r.Read(p) }

// TestRefused: requests refused as a whole get the status the OTLP/HTTP
// specification asks for, with a google.rpc.Status body in the request's
// encoding, and publish nothing.
func TestRefused(t *testing.T) {
	topic := newTopic(t)
	cfg := testConfig(topic)
	cfg.MaxRequestBytes = 1 << 20
	s := startReceiver(t, cfg, newWriter(t))
	valid := marshalProto(t, buildBatch(validSpecs(time.Now())))
	big := bytes.Repeat([]byte{0}, 1<<20+1)
	bomb := gzipped(t, make([]byte, 16<<20)) // 16 MiB of zeros in ~16 KiB

	for _, tc := range []struct {
		name           string
		method, path   string
		ct, ce         string
		body           io.Reader
		want           int
		wantJSON       bool
		wantMsg        string
		wantRetryAfter string
	}{
		{name: "undecodable protobuf", ct: "application/x-protobuf", body: bytes.NewReader([]byte{0x0a, 0x64, 0x01, 0x02}), want: 400, wantMsg: "decode ExportTraceServiceRequest"},
		{name: "undecodable json", ct: "application/json", body: strings.NewReader(`{"resourceSpans": [`), want: 400, wantJSON: true, wantMsg: "decode ExportTraceServiceRequest"},
		{name: "trace id of wrong length", ct: "application/json", body: strings.NewReader(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abcd","spanId":"0102030405060708"}]}]}]}`), want: 400, wantJSON: true},
		{name: "bad gzip", ct: "application/x-protobuf", ce: "gzip", body: bytes.NewReader(valid), want: 400, wantMsg: "gzip"},
		{name: "truncated gzip", ct: "application/x-protobuf", ce: "gzip", body: bytes.NewReader(gzipped(t, valid)[:40]), want: 400, wantMsg: "gzip"},
		{name: "too large", ct: "application/x-protobuf", body: bytes.NewReader(big), want: 413},
		{name: "too large without content-length", ct: "application/x-protobuf", body: hideLength{bytes.NewReader(big)}, want: 413},
		{name: "gzip bomb", ct: "application/x-protobuf", ce: "gzip", body: bytes.NewReader(bomb), want: 413, wantMsg: "decompressed"},
		{name: "json gzip bomb", ct: "application/json", ce: "gzip", body: hideLength{bytes.NewReader(bomb)}, want: 413, wantJSON: true},
		{name: "text/plain", ct: "text/plain", body: bytes.NewReader(valid), want: 415, wantMsg: "Content-Type"},
		{name: "no content type", body: bytes.NewReader(valid), want: 415},
		{name: "brotli", ct: "application/x-protobuf", ce: "br", body: bytes.NewReader(valid), want: 415, wantMsg: "Content-Encoding"},
		{name: "GET", method: http.MethodGet, want: 405},
		{name: "PUT json", method: http.MethodPut, ct: "application/json", body: strings.NewReader("{}"), want: 405, wantJSON: true},
		{name: "metrics path", path: "/v1/metrics", ct: "application/x-protobuf", body: bytes.NewReader(valid), want: 404},
		{name: "traces with a trailing slash", path: "/v1/traces/", ct: "application/x-protobuf", body: bytes.NewReader(valid), want: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = TracesPath
			}
			req, err := http.NewRequestWithContext(t.Context(), method, s.url+path, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			if tc.ce != "" {
				req.Header.Set("Content-Encoding", tc.ce)
			}
			resp := s.do(t, req)
			if resp.status != tc.want {
				t.Fatalf("status %d, want %d (body %q)", resp.status, tc.want, resp.body)
			}
			var msg string
			if tc.wantJSON {
				if ct := resp.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				var st struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(resp.body, &st); err != nil {
					t.Fatalf("body %q is not a JSON Status: %v", resp.body, err)
				}
				msg = st.Message
			} else {
				if ct := resp.header.Get("Content-Type"); ct != "application/x-protobuf" {
					t.Errorf("Content-Type %q, want application/x-protobuf", ct)
				}
				var code int
				code, msg = rpcStatus(t, resp.body)
				if code == 0 {
					t.Errorf("Status.code unset")
				}
			}
			if msg == "" || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("Status.message %q, want one containing %q", msg, tc.wantMsg)
			}
			if tc.want == 405 && resp.header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow %q, want POST", resp.header.Get("Allow"))
			}
			if ra := resp.header.Get("Retry-After"); ra != "" {
				t.Errorf("Retry-After %q on a non-retryable status", ra)
			}
			t.Logf("%d %s", resp.status, msg)
		})
	}
	if msgs := consume(t, topic); len(msgs) != 0 {
		t.Errorf("%d messages published, want 0", len(msgs))
	}
	for code, want := range map[string]int{"400": 5, "413": 4, "415": 3, "405": 2, "404": 2} {
		if got := requestsTotal(t, s, code); got != want {
			t.Errorf("requests_total{code=%s} = %d, want %d", code, got, want)
		}
	}
	// The receiver still works after all that.
	if resp := s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(valid)); resp.status != http.StatusOK {
		t.Errorf("valid request after refusals: status %d", resp.status)
	}
}

// failingPublisher fails every write, as a kafka.Writer does when the
// brokers are down.
type failingPublisher struct{ err error }

func (p failingPublisher) WriteMessages(context.Context, ...kafka.Message) error { return p.err }

// TestPublishFailure: a Kafka failure is retryable: 503 with Retry-After,
// nothing claimed as accepted.
func TestPublishFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"broker down", errors.New("dial tcp 127.0.0.1:9092: connect: connection refused")},
		{"leader not available", kafka.WriteErrors{kafka.LeaderNotAvailable, nil, kafka.LeaderNotAvailable}},
		{"timeout", context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startReceiver(t, testConfig("unused"), failingPublisher{tc.err})
			td := buildBatch(validSpecs(time.Now()))
			for _, useJSON := range []bool{false, true} {
				ct, body := "application/x-protobuf", marshalProto(t, td)
				if useJSON {
					ct, body = "application/json", marshalJSON(t, td)
				}
				resp := s.post(t, TracesPath, ct, "", bytes.NewReader(body))
				if resp.status != http.StatusServiceUnavailable {
					t.Fatalf("%s: status %d, want 503 (body %q)", ct, resp.status, resp.body)
				}
				if ra := resp.header.Get("Retry-After"); ra != "5" {
					t.Errorf("%s: Retry-After %q, want 5", ct, ra)
				}
				if got := resp.header.Get("Content-Type"); got != ct {
					t.Errorf("Content-Type %q, want %q", got, ct)
				}
				if !useJSON {
					if _, msg := rpcStatus(t, resp.body); !strings.Contains(msg, "Kafka") {
						t.Errorf("Status.message %q", msg)
					}
				}
			}
			if got := spansTotal(t, s, outcomeAccepted); got != 0 {
				t.Errorf("accepted spans metric %d, want 0", got)
			}
			if got := metricValue(t, s.r.m.publishErrors); got != 2 {
				t.Errorf("publish errors metric %v, want 2", got)
			}
		})
	}
}

// brokerBatchLimit passes writes to a real writer unless their total size
// exceeds limit; then it fails every message with MessageSizeTooLarge, as a
// broker does when a record batch is over its message.max.bytes.
type brokerBatchLimit struct {
	w     *kafka.Writer
	limit int
}

func (b brokerBatchLimit) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	size := 0
	for _, m := range msgs {
		size += len(m.Key) + len(m.Value)
	}
	if size <= b.limit {
		return b.w.WriteMessages(ctx, msgs...)
	}
	werrs := make(kafka.WriteErrors, len(msgs))
	for i := range werrs {
		werrs[i] = kafka.MessageSizeTooLarge
	}
	return werrs
}

// TestTraceTooLargeForKafka: a trace Kafka can never take is rejected in
// partial_success instead of failing, and so blocking, the whole request.
func TestTraceTooLargeForKafka(t *testing.T) {
	now := time.Now()
	specs := append(validSpecs(now), spanSpec{res: 0, scope: 0, trace: 6, id: 1, name: "huge", start: now, bigAttr: 20 << 10})
	for _, tc := range []struct {
		name string
		pub  func(t *testing.T) Publisher
	}{
		{"writer batch bytes", func(t *testing.T) Publisher {
			w := newWriter(t)
			w.BatchBytes = 16 << 10
			return w
		}},
		{"broker message.max.bytes", func(t *testing.T) Publisher {
			return brokerBatchLimit{newWriter(t), 16 << 10}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := newTopic(t)
			s := startReceiver(t, testConfig(topic), tc.pub(t))
			td := buildBatch(specs)
			resp := s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(marshalProto(t, td)))
			if resp.status != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.status, resp.body)
			}
			set, rejected, msg := partialSuccess(t, resp.body)
			if !set || rejected != 1 || !strings.Contains(msg, "Message Size Too Large") {
				t.Errorf("partial_success set=%v rejected=%d message=%q, want 1 span rejected as too large", set, rejected, msg)
			}
			checkPublished(t, topic, event.EncodingProto, td, 1, 2, 3)
			if got := metricValue(t, s.r.m.rejected.WithLabelValues(string(event.ReasonMessageTooLarge))); got != 1 {
				t.Errorf("rejected_traces_total{reason=message_too_large} = %v, want 1", got)
			}
		})
	}
}

// blockingPublisher holds every write until release is closed.
type blockingPublisher struct {
	entered chan struct{}
	release chan struct{}
	w       Publisher
}

func (b *blockingPublisher) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	b.entered <- struct{}{}
	<-b.release
	return b.w.WriteMessages(ctx, msgs...)
}

// TestConcurrencyLimit: over MaxConcurrentRequests, requests are answered
// 503 with Retry-After at once.
func TestConcurrencyLimit(t *testing.T) {
	topic := newTopic(t)
	cfg := testConfig(topic)
	cfg.MaxConcurrentRequests = 1
	pub := &blockingPublisher{entered: make(chan struct{}, 1), release: make(chan struct{}), w: newWriter(t)}
	s := startReceiver(t, cfg, pub)
	body := marshalProto(t, buildBatch(validSpecs(time.Now())))

	first := make(chan response, 1)
	go func() { first <- s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(body)) }()
	<-pub.entered
	resp := s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(body))
	if resp.status != http.StatusServiceUnavailable || resp.header.Get("Retry-After") != "1" {
		t.Errorf("second request: status %d Retry-After %q, want 503 and 1", resp.status, resp.header.Get("Retry-After"))
	}
	close(pub.release)
	if resp := <-first; resp.status != http.StatusOK {
		t.Errorf("first request: status %d, want 200", resp.status)
	}
	if msgs := consume(t, topic); len(msgs) != 3 {
		t.Errorf("%d messages published, want 3", len(msgs))
	}
}

// TestGracefulShutdown: a request in flight when Run's context is cancelled
// still completes its publish and gets its answer; then Run returns nil.
func TestGracefulShutdown(t *testing.T) {
	topic := newTopic(t)
	pub := &blockingPublisher{entered: make(chan struct{}, 1), release: make(chan struct{}), w: newWriter(t)}
	s := startReceiver(t, testConfig(topic), pub)
	body := marshalProto(t, buildBatch(validSpecs(time.Now())))

	first := make(chan response, 1)
	go func() { first <- s.post(t, TracesPath, "application/x-protobuf", "", bytes.NewReader(body)) }()
	<-pub.entered
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(pub.release)
	if resp := <-first; resp.status != http.StatusOK {
		t.Errorf("in-flight request: status %d, want 200", resp.status)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
	if msgs := consume(t, topic); len(msgs) != 3 {
		t.Errorf("%d messages published, want 3", len(msgs))
	}
}

func TestRunDisabled(t *testing.T) {
	cfg := testConfig("t")
	cfg.ListenAddress = ""
	r, err := New(cfg, failingPublisher{}, event.DefaultSpanOptions(), testLogger(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context()); err != nil {
		t.Errorf("Run of a disabled receiver: %v", err)
	}
	if err := r.Listen(); err == nil {
		t.Error("Listen of a disabled receiver succeeded")
	}
	if r.Addr() != "" {
		t.Errorf("Addr %q, want empty", r.Addr())
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New(testConfig("t"), nil, event.DefaultSpanOptions(), testLogger(), prometheus.NewRegistry()); err == nil {
		t.Error("New with a nil publisher succeeded")
	}
	cfg := testConfig("t")
	cfg.Encoding = "otlp_avro"
	if _, err := New(cfg, failingPublisher{}, event.DefaultSpanOptions(), testLogger(), prometheus.NewRegistry()); err == nil {
		t.Error("New with a bad encoding succeeded")
	}
}

// TestHandlerMounted: Handler works on a server of the caller's.
func TestHandlerMounted(t *testing.T) {
	r, err := New(testConfig("t"), failingPublisher{errors.New("down")}, event.DefaultSpanOptions(), testLogger(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, TracesPath, bytes.NewReader(marshalProto(t, buildBatch(validSpecs(time.Now())))))
	req.Header.Set("Content-Type", "application/x-protobuf")
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", rec.Code)
	}
}
