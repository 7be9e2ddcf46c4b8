// Package otlphttp is an OTLP/HTTP trace receiver that publishes to Kafka, so
// that OpenTelemetry SDKs can export to agentaudit without a Collector.
//
// It serves POST /v1/traces as the OTLP/HTTP specification describes it
// (opentelemetry-proto docs/specification.md): binary protobuf
// (application/x-protobuf) or JSON (application/json) bodies, optionally
// gzip-compressed, answered in the request's encoding.
//
// # What is published
//
// Exactly what the Collector's kafkaexporter writes with
// partition_traces_by_id: one ExportTraceServiceRequest per trace id, keyed
// by the trace id in lower-case hex, encoded as Config.Encoding (otlp_proto
// or otlp_json). Each span keeps its resource and scope. A trace spread over
// several resources or scopes of one request is one message (the exporter
// would write one per resource and scope); see splitByTrace.
//
// # Validation
//
// Every trace's message is checked with event.DecodeSpans, with the span
// options ingest uses, before it is published: what the receiver accepts,
// ingest stores instead of dead-lettering. (Timestamps are checked against
// the clock here and again in ingest; a span accepted at the edge of the
// MaxAge window can still be dead-lettered if ingest lags behind.) A trace
// that fails is rejected as a whole and reported in partial_success
// (HTTP 200, the client must not retry it); the other traces are published.
//
// # Delivery
//
// A 200 answer means every accepted trace was acknowledged by Kafka (with a
// kafka.Writer as the Publisher, with its RequiredAcks). If the publish fails
// or times out the answer is 503 with Retry-After and nothing is claimed as
// accepted; the client retries the whole request. Traces of that request
// that did reach Kafka are then published twice: ingest stores spans by
// (trace_id, span_id) and does not show duplicates, so at-least-once is
// enough here.
package otlphttp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/agentaudit/agentaudit/internal/event"
)

// TracesPath is the URL path of trace exports.
const TracesPath = "/v1/traces"

// Retry-After of 503 answers: when Kafka failed, and when the receiver has
// MaxConcurrentRequests requests in flight already.
const (
	retryAfterPublish = 5 * time.Second
	retryAfterBusy    = time.Second
)

// Publisher writes messages to Kafka; *kafka.Writer implements it. A nil
// return must mean that every message was acknowledged. Messages carry their
// topic (Config.Topic), so a kafka.Writer must have no Topic of its own.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

var _ Publisher = (*kafka.Writer)(nil)

// NewKafkaWriter returns a kafka.Writer suited to the receiver: no topic of
// its own, keys hashed like the Java client's default partitioner (murmur2)
// so one trace id always lands on one partition, acknowledgement by all
// in-sync replicas, and a short batch timeout (kafka-go's default of 1s would
// add up to a second to every request). Its BatchBytes is kafka-go's default
// of 1 MiB, the broker's default message.max.bytes: a larger trace is
// rejected in partial_success. Close it after Run returned; its transport is
// its own, so close that too: w.Transport.(*kafka.Transport).CloseIdleConnections().
func NewKafkaWriter(brokers []string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		Transport:    &kafka.Transport{},
	}
}

// Receiver is the OTLP/HTTP receiver. It is safe for concurrent use; Run
// runs once.
type Receiver struct {
	cfg      Config
	enc      event.Encoding
	pub      Publisher
	spanOpts event.SpanOptions
	log      *slog.Logger
	m        *metrics
	sem      chan struct{}
	gzPool   sync.Pool // *gzip.Reader

	mu      sync.Mutex
	ln      net.Listener
	started bool
}

// New builds a receiver that publishes through w. spanOpts must be the span
// options ingest decodes the topic with.
func New(cfg Config, w Publisher, spanOpts event.SpanOptions, log *slog.Logger, reg prometheus.Registerer) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, errors.New("otlphttp: nil publisher")
	}
	if err := spanOpts.Validate(); err != nil {
		return nil, fmt.Errorf("otlphttp: span options: %w", err)
	}
	if err := spanOpts.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("otlphttp: span options: %w", err)
	}
	return &Receiver{
		cfg:      cfg,
		enc:      event.Encoding(cfg.Encoding),
		pub:      w,
		spanOpts: spanOpts,
		log:      log,
		m:        newMetrics(reg),
		sem:      make(chan struct{}, cfg.MaxConcurrentRequests),
	}, nil
}

// Handler returns the HTTP handler: POST /v1/traces, 405 for other methods
// on that path, 404 elsewhere. It can be mounted on another server.
func (r *Receiver) Handler() http.Handler { return http.HandlerFunc(r.serveHTTP) }

// Listen binds Config.ListenAddress, so that a port in use fails at start-up
// and Addr reports the port picked for port 0. Run calls it if needed; after
// Listen, Run must be called to serve and close the listener. It fails if the
// receiver is disabled (empty ListenAddress).
func (r *Receiver) Listen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listenLocked()
}

func (r *Receiver) listenLocked() error {
	if r.ln != nil {
		return nil
	}
	if r.cfg.ListenAddress == "" {
		return errors.New("otlphttp: receiver disabled (empty listen address)")
	}
	ln, err := net.Listen("tcp", r.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", r.cfg.ListenAddress, err)
	}
	r.ln = ln
	return nil
}

// Addr returns the bound address once Listen (or Run) has bound it, e.g.
// "127.0.0.1:41234" for "127.0.0.1:0", and "" before.
func (r *Receiver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		return r.ln.Addr().String()
	}
	return ""
}

// Run serves until ctx is cancelled, then shuts down gracefully: it stops
// accepting, lets requests in flight finish (their publish included) within
// Config.ShutdownTimeout and closes what is left. It returns nil after a
// shutdown caused by ctx, and nil at once if the receiver is disabled. The
// Publisher is not closed.
func (r *Receiver) Run(ctx context.Context) error {
	if r.cfg.ListenAddress == "" {
		r.log.Info("otlp/http receiver disabled")
		return nil
	}
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("otlphttp: receiver already started")
	}
	r.started = true
	err := r.listenLocked()
	ln := r.ln
	r.mu.Unlock()
	if err != nil {
		return err
	}

	// No timeout covers the handler as a whole: reading is bounded by
	// ReadTimeout, publishing by PublishTimeout.
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute + r.cfg.PublishTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	r.log.Info("otlp/http receiver listening", "addr", ln.Addr().String(), "topic", r.cfg.Topic, "encoding", r.cfg.Encoding)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve otlp/http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	if err = srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		err = fmt.Errorf("shut down otlp/http receiver: %w", err)
	}
	if serr := <-serveErr; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve otlp/http on %s: %w", ln.Addr(), serr))
	}
	r.log.Info("otlp/http receiver stopped", "addr", ln.Addr().String())
	return err
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	code := r.serve(w, req)
	r.m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	r.m.duration.Observe(time.Since(start).Seconds())
}

// serve handles one request and returns the HTTP status it answered with.
func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) int {
	f, fOK := requestFormat(req.Header.Get("Content-Type"))
	if req.URL.Path != TracesPath {
		return writeStatus(w, f, http.StatusNotFound, "not found: "+TracesPath+" is the only path served", 0)
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeStatus(w, f, http.StatusMethodNotAllowed, "method "+req.Method+" not allowed, use POST", 0)
	}
	if !fOK {
		return writeStatus(w, f, http.StatusUnsupportedMediaType,
			fmt.Sprintf("unsupported Content-Type %q, want %s or %s", req.Header.Get("Content-Type"), contentTypeProto, contentTypeJSON), 0)
	}
	var gz bool
	switch ce := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
	case "gzip", "x-gzip":
		gz = true
	default:
		return writeStatus(w, f, http.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %q, want gzip or none", ce), 0)
	}

	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	default:
		return writeStatus(w, f, http.StatusServiceUnavailable, "too many concurrent requests, retry later", retryAfterBusy)
	}

	body, status, err := r.readBody(w, req, gz)
	if err != nil {
		r.log.Debug("otlp/http request refused", "status", status, "error", err)
		return writeStatus(w, f, status, err.Error(), 0)
	}

	// An ExportTraceServiceRequest has the fields (and so the encoding) of
	// TracesData, which is what pdata's ptrace unmarshalers read; the
	// kafkaexporter and event.DecodeSpans rely on the same equivalence.
	var td ptrace.Traces
	if f == formatJSON {
		td, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(body)
	} else {
		td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(body)
	}
	if err != nil {
		r.log.Debug("otlp/http request refused", "status", http.StatusBadRequest, "error", err)
		return writeStatus(w, f, http.StatusBadRequest, "decode ExportTraceServiceRequest: "+err.Error(), 0)
	}

	res, err := r.export(req.Context(), td)
	if err != nil {
		if _, ok := errors.AsType[*publishError](err); ok {
			if req.Context().Err() != nil {
				// The client went away mid-publish; nobody reads the answer.
				r.log.Debug("otlp/http client gone during publish", "error", err)
				return writeStatus(w, f, http.StatusServiceUnavailable, "request cancelled", retryAfterPublish)
			}
			r.m.publishErrors.Inc()
			r.log.Warn("publish to kafka failed, answering 503", "topic", r.cfg.Topic, "error", err)
			return writeStatus(w, f, http.StatusServiceUnavailable, "publishing to Kafka failed, retry later", retryAfterPublish)
		}
		r.log.Error("otlp/http export failed", "error", err)
		return writeStatus(w, f, http.StatusInternalServerError, "internal error", 0)
	}
	r.m.spans.WithLabelValues(outcomeAccepted).Add(float64(res.acceptedSpans))
	r.m.spans.WithLabelValues(outcomeRejected).Add(float64(res.rejectedSpans))
	for _, rej := range res.rejected {
		r.m.rejected.WithLabelValues(string(rej.reason)).Inc()
	}
	r.m.published.Add(float64(res.publishedTraces))

	if res.rejectedSpans == 0 {
		return writeResponse(w, f, 0, "")
	}
	msg := res.errorMessage()
	r.log.Debug("otlp/http traces rejected", "rejected_spans", res.rejectedSpans, "rejected_traces", len(res.rejected), "error", msg)
	return writeResponse(w, f, int64(res.rejectedSpans), msg)
}

// requestFormat maps the Content-Type to a format; ok is false for a type
// other than the two of OTLP/HTTP (the format is then protobuf, the default
// to answer in).
func requestFormat(ct string) (f format, ok bool) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return formatProto, false
	}
	switch mt {
	case contentTypeProto:
		return formatProto, true
	case contentTypeJSON:
		return formatJSON, true
	}
	return formatProto, false
}

// readBody reads the body, decompressing it if gz, within MaxRequestBytes
// both before and after decompression. On error it returns the HTTP status
// to answer with.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request, gz bool) ([]byte, int, error) {
	limit := int64(r.cfg.MaxRequestBytes)
	if req.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body of %d bytes exceeds the limit of %d bytes", req.ContentLength, limit)
	}
	// MaxBytesReader also tells the server to close the connection once the
	// limit is hit, instead of draining an oversized body.
	raw := http.MaxBytesReader(w, req.Body, limit)
	src := io.Reader(raw)
	size := int64(64 << 10)
	if req.ContentLength > 0 {
		size = req.ContentLength
	}
	if gz {
		zr, err := r.gzipReader(raw)
		if err != nil {
			return readError(err, "decompress gzip body")
		}
		defer r.gzPool.Put(zr)
		src = zr
		size = min(4*size, limit) // a guess at the compression ratio
	}
	// One byte more than the limit tells "exactly the limit" from "more".
	body, err := readAll(io.LimitReader(src, limit+1), size)
	if err != nil {
		if gz {
			return readError(err, "decompress gzip body")
		}
		return readError(err, "read request body")
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("decompressed request body exceeds the limit of %d bytes", limit)
	}
	return body, 0, nil
}

// readError returns the status for a body that could not be read: 413 if
// the body was over the limit, else 400 (the client's gzip is broken, or it
// went away and will not see the answer).
func readError(err error, what string) ([]byte, int, error) {
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body exceeds the limit of %d bytes", mbe.Limit)
	}
	return nil, http.StatusBadRequest, fmt.Errorf("%s: %w", what, err)
}

func (r *Receiver) gzipReader(src io.Reader) (*gzip.Reader, error) {
	if zr, ok := r.gzPool.Get().(*gzip.Reader); ok {
		if err := zr.Reset(src); err != nil {
			r.gzPool.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(src)
}

// readAll is io.ReadAll starting with a buffer of size bytes.
func readAll(src io.Reader, size int64) ([]byte, error) {
	b := make([]byte, 0, size+1)
	for {
		n, err := src.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				return b, nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
	}
}

// publishError is a retryable failure to publish to Kafka.
type publishError struct{ err error }

func (e *publishError) Error() string { return "publish to kafka: " + e.err.Error() }

func (e *publishError) Unwrap() error { return e.err }

// rejection is one trace rejected in partial_success.
type rejection struct {
	traceID string
	spans   int
	reason  event.Reason
	err     error
}

// exportResult is what became of the spans of one request.
type exportResult struct {
	acceptedSpans   int
	rejectedSpans   int
	publishedTraces int
	rejected        []rejection
}

// maxErrorsInMessage bounds the traces described in partial_success's
// error_message.
const maxErrorsInMessage = 5

func (res *exportResult) errorMessage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rejected %d of %d spans (%d traces, each rejected as a whole, not to be retried)",
		res.rejectedSpans, res.rejectedSpans+res.acceptedSpans, len(res.rejected))
	for i, rej := range res.rejected {
		if i == maxErrorsInMessage {
			fmt.Fprintf(&b, "; and %d more traces", len(res.rejected)-i)
			break
		}
		fmt.Fprintf(&b, "; trace %s: %v", rej.traceID, rej.err)
	}
	return b.String()
}

// export splits td by trace, validates each trace's message and publishes
// the valid ones. A *publishError means nothing may be claimed as accepted.
func (r *Receiver) export(ctx context.Context, td ptrace.Traces) (*exportResult, error) {
	res := &exportResult{}
	if td.SpanCount() == 0 {
		return res, nil // an empty request is a success (OTLP/HTTP "Full Success")
	}
	traces := splitByTrace(td)
	var (
		msgs     []kafka.Message
		accepted []*trace
		rows     []event.Span // DecodeSpans' output is only a check; reused
	)
	for _, t := range traces {
		key := hex.EncodeToString(t.id[:])
		value, err := r.marshal(t.td)
		if err != nil {
			return nil, fmt.Errorf("marshal trace %s: %w", key, err)
		}
		rows, _, err = event.DecodeSpans(value, r.enc, r.spanOpts, rows[:0])
		clear(rows) // drop references to the message
		if err != nil {
			reason, ok := event.ReasonOf(err)
			if !ok {
				return nil, fmt.Errorf("validate trace %s: %w", key, err)
			}
			res.reject(key, t.spans, reason, err)
			continue
		}
		msgs = append(msgs, kafka.Message{Topic: r.cfg.Topic, Key: []byte(key), Value: value})
		accepted = append(accepted, t)
	}
	if len(msgs) == 0 {
		return res, nil
	}

	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	tooLarge, err := r.publish(pctx, msgs)
	if err != nil {
		return nil, &publishError{err}
	}
	for i, t := range accepted {
		if tooLarge[i] {
			res.reject(string(msgs[i].Key), t.spans, event.ReasonMessageTooLarge,
				fmt.Errorf("%w: message of %d bytes is larger than Kafka accepts", kafka.MessageSizeTooLarge, len(msgs[i].Value)))
			continue
		}
		res.acceptedSpans += t.spans
		res.publishedTraces++
	}
	return res, nil
}

func (res *exportResult) reject(traceID string, spans int, reason event.Reason, err error) {
	res.rejectedSpans += spans
	res.rejected = append(res.rejected, rejection{traceID: traceID, spans: spans, reason: reason, err: err})
}

func (r *Receiver) marshal(td ptrace.Traces) ([]byte, error) {
	if r.enc == event.EncodingJSON {
		return (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	}
	return (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
}

// publish writes msgs and returns, per message, whether Kafka can never take
// it because it is too large; every other message was acknowledged. Any
// other failure is returned as is (retryable): some messages may have been
// written by then, and the client's retry writes them again.
//
// A message too large is a permanent failure and must not fail the whole
// request, or one oversized trace would make the client retry its request,
// with all the other traces in it, until it gives up. kafka-go refuses a
// message larger than its BatchBytes before writing anything
// (MessageTooLargeError): that message is dropped and the rest retried. The
// broker refuses a whole record batch over its message.max.bytes
// (MessageSizeTooLarge for every message of the batch, small ones too):
// those messages are written again one by one to tell which is too large.
func (r *Receiver) publish(ctx context.Context, msgs []kafka.Message) ([]bool, error) {
	tooLarge := make([]bool, len(msgs))
	idx := make([]int, len(msgs)) // position in msgs of each pending message
	for i := range idx {
		idx[i] = i
	}
	pending := slices.Clone(msgs)
	for len(pending) > 0 {
		err := r.pub.WriteMessages(ctx, pending...)
		if err == nil {
			return tooLarge, nil
		}
		if mtl, ok := errors.AsType[kafka.MessageTooLargeError](err); ok {
			k := slices.IndexFunc(pending, func(m kafka.Message) bool { return bytes.Equal(m.Key, mtl.Message.Key) })
			if k < 0 {
				return nil, err
			}
			tooLarge[idx[k]] = true
			pending = slices.Delete(pending, k, k+1)
			idx = slices.Delete(idx, k, k+1)
			continue
		}
		werrs, ok := errors.AsType[kafka.WriteErrors](err)
		if !ok || len(werrs) != len(pending) {
			return nil, err
		}
		var again []int // indexes into pending
		for i, e := range werrs {
			switch {
			case e == nil:
			case !errors.Is(e, kafka.MessageSizeTooLarge):
				return nil, err
			case len(pending) == 1:
				tooLarge[idx[i]] = true
			default:
				again = append(again, i)
			}
		}
		for _, i := range again {
			one, err := r.publish(ctx, pending[i:i+1])
			if err != nil {
				return nil, err
			}
			tooLarge[idx[i]] = one[0]
		}
		return tooLarge, nil
	}
	return tooLarge, nil
}
