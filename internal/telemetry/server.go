package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of the Server options.
const (
	DefaultReadinessTimeout = 2 * time.Second
	DefaultShutdownTimeout  = 5 * time.Second
)

// Readiness status strings in the /readyz body.
const (
	StatusOK          = "ok"
	StatusFailed      = "failed"
	StatusUnavailable = "unavailable"
)

// Server is a service's admin HTTP server:
//
//   - /metrics: the injected registry in the Prometheus exposition format;
//     errors while gathering are logged and counted in
//     promhttp_metric_handler_errors_total, requests in
//     promhttp_metric_handler_requests_total;
//   - /healthz: liveness, 200 "ok" for as long as the process serves;
//   - /readyz: readiness, 200 when every check registered with
//     AddReadinessCheck passes and the server was not marked not ready,
//     otherwise 503; the JSON body lists every check (ReadinessReport).
//
// Create it with NewServer, optionally Listen to bind early, then Run.
type Server struct {
	logger           *slog.Logger
	addr             string
	readinessTimeout time.Duration
	shutdownTimeout  time.Duration
	srv              *http.Server

	mu       sync.Mutex
	ln       net.Listener
	started  bool             // Run was called; an http.Server runs once
	checks   []readinessCheck // in registration order
	failing  map[string]bool  // checks that failed last time, to log transitions
	notReady string           // reason set by SetNotReady, "" when ready
}

type readinessCheck struct {
	name string
	fn   func(ctx context.Context) error
}

// Option configures a Server.
type Option func(*Server)

// WithReadinessTimeout bounds each readiness check (default
// DefaultReadinessTimeout); a check that takes longer fails.
func WithReadinessTimeout(d time.Duration) Option {
	return func(s *Server) { s.readinessTimeout = d }
}

// WithShutdownTimeout bounds the graceful shutdown in Run (default
// DefaultShutdownTimeout); connections still open after it are closed.
func WithShutdownTimeout(d time.Duration) Option {
	return func(s *Server) { s.shutdownTimeout = d }
}

// NewServer returns a server for addr (host:port; port 0 picks a free port)
// exposing reg, which must not be nil, and logging to logger.
func NewServer(addr string, reg *prometheus.Registry, logger *slog.Logger, opts ...Option) *Server {
	s := &Server{
		logger:           logger,
		addr:             addr,
		readinessTimeout: DefaultReadinessTimeout,
		shutdownTimeout:  DefaultShutdownTimeout,
		failing:          map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{logger},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg, // counts its own errors in promhttp_metric_handler_errors_total
	})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReadyz)
	// Profiling on the admin port (which listens on loopback by default):
	// how "where does the time go" questions get answered in production.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler returns the server's HTTP handler, for tests and for mounting the
// admin endpoints elsewhere.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// AddReadinessCheck registers a readiness check run on every /readyz request
// with a context bounded by the readiness timeout; a non-nil error makes the
// service not ready. Checks run concurrently, so they must be safe for that.
// Names must be unique (they appear in the /readyz body and the logs);
// AddReadinessCheck panics on a duplicate name or a nil fn.
func (s *Server) AddReadinessCheck(name string, fn func(ctx context.Context) error) {
	if fn == nil {
		panic("telemetry: nil readiness check " + name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.checks {
		if c.name == name {
			panic("telemetry: duplicate readiness check " + name)
		}
	}
	s.checks = append(s.checks, readinessCheck{name: name, fn: fn})
}

// SetNotReady makes /readyz answer 503 with reason, without running the
// checks, until SetReady: use it while warming up or draining. Run calls it
// when its context is cancelled.
func (s *Server) SetNotReady(reason string) {
	if reason == "" {
		reason = "not ready"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notReady = reason
}

// SetReady undoes SetNotReady: readiness is decided by the checks again.
func (s *Server) SetReady() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notReady = ""
}

// Listen binds the listen address, so that a port already in use fails at
// start-up and Addr reports the port picked for ":0". Run calls it if needed;
// after Listen, Run must be called to serve and close the listener.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listenLocked()
}

func (s *Server) listenLocked() error {
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address once Listen (or Run) has bound it, e.g.
// "127.0.0.1:41234" for "127.0.0.1:0", and the configured address before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Run serves until ctx is cancelled, then marks the server not ready and
// shuts it down gracefully, closing connections still open after the shutdown
// timeout. It returns nil after a shutdown caused by ctx, and an error if the
// server could not listen or serve. A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("telemetry server already started")
	}
	s.started = true
	err := s.listenLocked()
	ln := s.ln
	s.mu.Unlock()
	if err != nil {
		return err
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.srv.Serve(ln) }()
	s.logger.Info("telemetry server listening", "addr", ln.Addr().String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve telemetry on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	s.SetNotReady("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	if err = s.srv.Shutdown(shutdownCtx); err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("shut down telemetry server: %w", err)
	}
	if serr := <-serveErr; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve telemetry on %s: %w", ln.Addr(), serr))
	}
	s.logger.Info("telemetry server stopped", "addr", ln.Addr().String())
	return err
}

// ReadinessReport is the JSON body of /readyz.
type ReadinessReport struct {
	// Status is StatusOK or StatusUnavailable.
	Status string `json:"status"`
	// Reason is set when the server was marked not ready (SetNotReady).
	Reason string        `json:"reason,omitempty"`
	Checks []CheckResult `json:"checks"`
}

// CheckResult is the outcome of one readiness check.
type CheckResult struct {
	Name string `json:"name"`
	// Status is StatusOK or StatusFailed.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	report := s.checkReadiness(r.Context())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if report.Status != StatusOK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(report)
}

func (s *Server) checkReadiness(ctx context.Context) ReadinessReport {
	s.mu.Lock()
	checks := append([]readinessCheck(nil), s.checks...)
	reason := s.notReady
	s.mu.Unlock()

	report := ReadinessReport{Status: StatusOK, Checks: []CheckResult{}}
	if reason != "" {
		// Draining or warming up: dependencies may be going away, don't probe.
		report.Status, report.Reason = StatusUnavailable, reason
		return report
	}

	ctx, cancel := context.WithTimeout(ctx, s.readinessTimeout)
	defer cancel()
	results := make([]chan error, len(checks))
	for i, c := range checks {
		results[i] = make(chan error, 1) // buffered: a check that overruns must not block forever
		go func() { results[i] <- runCheck(ctx, c.fn) }()
	}
	for i, c := range checks {
		var err error
		select {
		case err = <-results[i]:
		case <-ctx.Done():
			select {
			case err = <-results[i]: // answered just in time
			default:
				// The check ignores its context; report it and stop waiting.
				err = fmt.Errorf("no answer within %s: %w", s.readinessTimeout, ctx.Err())
			}
		}
		res := CheckResult{Name: c.name, Status: StatusOK}
		if err != nil {
			res.Status, res.Error = StatusFailed, err.Error()
			report.Status = StatusUnavailable
		}
		report.Checks = append(report.Checks, res)
		s.logTransition(c.name, err)
	}
	return report
}

func runCheck(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check panicked: %v", r)
		}
	}()
	return fn(ctx)
}

// logTransition logs when a check starts or stops failing, not on every probe.
func (s *Server) logTransition(name string, err error) {
	s.mu.Lock()
	was := s.failing[name]
	s.failing[name] = err != nil
	s.mu.Unlock()
	switch {
	case err != nil && !was:
		s.logger.Warn("readiness check failing", "check", name, "err", err)
	case err == nil && was:
		s.logger.Info("readiness check recovered", "check", name)
	}
}

// promLogger routes promhttp's error log to slog.
type promLogger struct{ logger *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.logger.Error("serve metrics", "err", fmt.Sprint(v...))
}
