package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentaudit/agentaudit/internal/integrity"
	"github.com/agentaudit/agentaudit/internal/query/auth"
)

// Gin context keys.
const (
	ctxRequestID = "agentaudit.request_id"
	ctxErrorType = "agentaudit.error_type"
)

// Server is the query API.
type Server struct {
	cfg     Config
	svc     *Service
	auth    *auth.Authenticator
	limits  *limiters
	audit   *auditWriter
	m       *metrics
	cursors *cursorSigner
	// manifest signs export manifests; nil: not offered.
	manifest *integrity.Signer
	log      *slog.Logger
	gather   prometheus.Gatherer // nil: /metrics answers 404
	engine   *gin.Engine
	routes   []*route
	openAPI  []byte
	srv      *http.Server

	mu sync.Mutex
	ln net.Listener
}

// New builds the server: it loads the API keys and the JWKS (failing fast
// on bad ones), registers the routes and metrics. reg may also be a
// prometheus.Gatherer, then /metrics is served on the API port too.
func New(ctx context.Context, cfg Config, conn driver.Conn, db string, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	svc, err := NewService(conn, db, cfg.QueryTimeout, cfg.ExportTimeout, cfg.MaxTraceSpans)
	if err != nil {
		return nil, err
	}
	svc.maxThreads = cfg.MaxQueryThreads
	a, err := newAuthenticator(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if a.Keys == nil && a.JWT == nil {
		log.Warn("query API has no API keys and no JWT keys: every request will be 401")
	}
	cs, err := newCursorSigner(cfg.CursorKey.Reveal())
	if err != nil {
		return nil, err
	}
	if cfg.CursorKey == "" {
		log.Warn("query cursor key not set: cursors are signed with a random key and do not survive a restart or cross replicas")
	}
	ms, err := cfg.Manifest.signer()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, svc: svc, auth: a, cursors: cs, manifest: ms, log: log,
		limits: newLimiters(cfg.RateLimit.RequestsPerSecond, cfg.RateLimit.Burst, time.Now),
		audit:  newAuditWriter(conn, db+".query_audit", cfg.Audit, log),
	}
	s.m = newMetrics(reg, s.audit.queueLen)
	s.audit.m = s.m
	if g, ok := reg.(prometheus.Gatherer); ok {
		s.gather = g
	}
	s.engine = s.buildEngine()
	if s.openAPI, err = s.buildOpenAPI(); err != nil {
		return nil, err
	}
	s.srv = &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func newAuthenticator(ctx context.Context, cfg Config) (*auth.Authenticator, error) {
	a := &auth.Authenticator{}
	var entries []auth.APIKeyEntry
	if cfg.APIKeysFile != "" {
		es, err := auth.LoadKeyFile(cfg.APIKeysFile)
		if err != nil {
			return nil, err
		}
		entries = append(entries, es...)
	}
	if cfg.APIKeys != "" {
		es, err := auth.ParseKeys([]byte(cfg.APIKeys.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("api keys from the environment: %w", err)
		}
		entries = append(entries, es...)
	}
	if len(entries) > 0 {
		ks, err := auth.NewKeyStore(entries)
		if err != nil {
			return nil, err
		}
		a.Keys = ks
	}
	jc := auth.JWTConfig{
		HMACSecret: []byte(cfg.JWT.HMACSecret.Reveal()), JWKSFile: cfg.JWT.JWKSFile, JWKSURL: cfg.JWT.JWKSURL,
		JWKSRefresh: cfg.JWT.JWKSRefresh, Issuer: cfg.JWT.Issuer, Audience: cfg.JWT.Audience, Leeway: cfg.JWT.Leeway,
		RoleClaim: cfg.JWT.RoleClaim, TenantsClaim: cfg.JWT.TenantsClaim,
	}
	if jc.Enabled() {
		v, err := auth.NewJWTVerifier(ctx, jc)
		if err != nil {
			return nil, err
		}
		a.JWT = v
	}
	return a, nil
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

// Engine is the Gin engine, for tests that walk its routes.
func (s *Server) Engine() *gin.Engine { return s.engine }

// reqCtx is what the middleware learns and the handler reports back.
type reqCtx struct {
	principal auth.Principal
	scope     Scope
	hasScope  bool
	rows      uint64
}

func (s *Server) buildEngine() *gin.Engine {
	// gin's mode is process-wide; debug mode only prints route dumps on
	// stdout, which a JSON-logging service never wants.
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	_ = e.SetTrustedProxies(nil) // client_ip is the peer unless a proxy list is configured
	e.Use(s.recovery)
	e.NoRoute(func(c *gin.Context) {
		writeProblem(c, ProblemRouteNotFound, http.StatusNotFound, "no route "+c.Request.Method+" "+truncate(c.Request.URL.Path), "")
	})
	e.NoMethod(func(c *gin.Context) {
		writeProblem(c, ProblemMethod, http.StatusMethodNotAllowed, "method not allowed", "")
	})
	s.routes = routes()
	for _, r := range s.routes {
		e.Handle(r.Method, r.Path, s.wrap(r))
	}
	return e
}

// recovery turns a panic into a 500 problem, logged with its request id.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "route", c.FullPath(), "request_id", c.GetString(ctxRequestID), "panic", fmt.Sprint(v))
			writeProblem(c, ProblemInternal, http.StatusInternalServerError, "internal error; quote the request id to your operator", "")
		}
	}()
	c.Next()
}

// wrap is the per-route pipeline: request id → metrics and query_audit
// (deferred, so they see the final status) → authentication → admin check
// → rate limit → parameter whitelist → handler.
func (s *Server) wrap(r *route) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		id := uuid.New().String()
		c.Set(ctxRequestID, id)
		c.Header("X-Request-Id", id)
		rc := &reqCtx{}
		if !r.Public {
			defer s.record(c, r, rc, id, start)
		}
		defer func() {
			code := strconv.Itoa(c.Writer.Status())
			s.m.requests.WithLabelValues(r.Path, code).Inc()
			s.m.duration.WithLabelValues(r.Path).Observe(time.Since(start).Seconds())
			if rc.rows > 0 {
				s.m.rows.WithLabelValues(r.Path).Add(float64(rc.rows))
			}
		}()
		if !r.Public {
			p, err := s.auth.Authenticate(c.Request.Context(), c.Request)
			if err != nil {
				s.unauthenticated(c, err)
				return
			}
			rc.principal = p
			if r.Admin && !p.IsAdmin() {
				writeProblem(c, errAdminOnly.typ, errAdminOnly.status, errAdminOnly.detail, "")
				return
			}
			d := s.limits.allow(p.Method + ":" + p.Name)
			d.headers(c.Header)
			if !d.allowed {
				s.m.rateLimited.Inc()
				retryAfter(c, d.retryAfter)
				writeProblem(c, ProblemRateLimited, http.StatusTooManyRequests, "rate limit exceeded; retry after "+strconv.Itoa(d.retryAfter)+" s", "")
				return
			}
		}
		pr, err := s.checkParams(c, r)
		if err != nil {
			s.fail(c, err)
			return
		}
		if !r.Public {
			sc, err := scopeFor(rc.principal, pr.v["tenant"])
			if err != nil {
				s.fail(c, err)
				return
			}
			rc.scope, rc.hasScope = sc, true
		}
		c.Set("agentaudit.params", pr)
		if err := r.handler(s, c, rc); err != nil {
			s.fail(c, err)
		}
	}
}

func (s *Server) unauthenticated(c *gin.Context, err error) {
	var challenge []string
	if s.auth.JWT != nil || s.auth.Keys != nil {
		challenge = append(challenge, `Bearer realm="agentaudit"`)
	}
	if s.auth.Keys != nil {
		challenge = append(challenge, `ApiKey realm="agentaudit", header="X-API-Key"`)
	}
	detail := "credentials required (Authorization: Bearer, or X-API-Key)"
	if errors.Is(err, auth.ErrBadCredentials) {
		detail = "invalid credentials"
		if len(challenge) > 0 && strings.HasPrefix(challenge[0], "Bearer") {
			challenge[0] = `Bearer realm="agentaudit", error="invalid_token"`
		}
		s.log.Info("authentication failed", "route", c.FullPath(), "request_id", c.GetString(ctxRequestID), "reason", err.Error())
	}
	if len(challenge) == 0 {
		challenge = []string{`Bearer realm="agentaudit"`}
	}
	c.Header("WWW-Authenticate", strings.Join(challenge, ", "))
	writeProblem(c, ProblemUnauthenticated, http.StatusUnauthorized, detail, "")
}

// record queues the call's query_audit row.
func (s *Server) record(c *gin.Context, r *route, rc *reqCtx, id string, start time.Time) {
	filters := map[string]string{}
	for k, v := range c.Request.URL.Query() {
		if k == "cursor" {
			filters[k] = "(set)"
			continue
		}
		x := strings.Join(v, ",")
		if len(x) > 512 {
			x = x[:512]
		}
		filters[truncate(k)] = x
	}
	pathParams := map[string]string{}
	for _, p := range c.Params {
		pathParams[p.Key] = truncate(p.Value)
	}
	rec := AuditRecord{
		TS: start.UTC(), RequestID: id, Principal: rc.principal.Name, AuthMethod: rc.principal.Method, Role: string(rc.principal.Role),
		Method: c.Request.Method, Route: r.Path, PathParams: pathParams, Filters: filters, Rows: rc.rows,
		Status: uint16(c.Writer.Status()), DurationMS: float64(time.Since(start).Microseconds()) / 1000,
		ClientIP: c.ClientIP(), UserAgent: truncate(c.Request.UserAgent()), ErrorType: c.GetString(ctxErrorType),
	}
	switch {
	case rc.hasScope:
		rec.TenantID, rec.Tenants = rc.scope.auditTenant(), rc.scope.list()
	case rc.principal.Name != "":
		sc, _ := scopeFor(rc.principal, nil)
		rec.TenantID, rec.Tenants = sc.auditTenant(), sc.list()
	default:
		rec.Tenants = []string{}
	}
	s.audit.Record(rec)
}

// Listen binds the listen address (Run calls it if needed).
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("query api listen on %s: %w", s.cfg.ListenAddress, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address after Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.cfg.ListenAddress
}

// Run serves until ctx is cancelled, then shuts down: requests in flight get
// ShutdownTimeout to finish, then every queued query_audit row is flushed
// (retrying a failing insert until the same deadline).
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	stopAudit, cancelAudit := context.WithCancel(context.Background())
	defer cancelAudit()
	go s.audit.run(stopAudit)
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	deadline := time.AfterFunc(s.cfg.ShutdownTimeout, cancelAudit)
	defer deadline.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.log.Warn("query API shutdown: requests still running were cut", "err", err)
		_ = s.srv.Close()
	}
	s.audit.Close()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("query api serve: %w", serveErr)
	}
	return nil
}

func (s *Server) healthz(c *gin.Context, _ *reqCtx) error {
	c.String(http.StatusOK, "ok\n")
	return nil
}

func (s *Server) readyz(c *gin.Context, _ *reqCtx) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.svc.Ping(ctx); err != nil {
		s.log.Warn("readyz: clickhouse unreachable", "err", err)
		writeProblem(c, ProblemUnavailable, http.StatusServiceUnavailable, "clickhouse unreachable", "")
		return nil
	}
	c.String(http.StatusOK, "ok\n")
	return nil
}

func (s *Server) metricsHandler(c *gin.Context, _ *reqCtx) error {
	if s.gather == nil {
		writeProblem(c, ProblemNotFound, http.StatusNotFound, "metrics are served on the admin port", "")
		return nil
	}
	promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}).ServeHTTP(c.Writer, c.Request)
	return nil
}
