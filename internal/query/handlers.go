package query

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"hash"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/agentaudit/agentaudit/internal/integrity"
)

// Handlers parse and validate, call the Service, and write JSON. No SQL.

func paramsOf(c *gin.Context) *params { return c.MustGet("agentaudit.params").(*params) }

func (p *params) eventFilter() (EventFilter, error) {
	var f EventFilter
	var err error
	if f.From, f.To, err = p.timeRange(); err != nil {
		return f, err
	}
	if f.Decision, err = p.oneOf("decision", "", "allow", "deny"); err != nil {
		return f, err
	}
	f.Agent, f.Token, f.Tool = p.str("agent"), p.str("token"), p.str("tool")
	f.TraceID, f.Rule, f.Text = p.str("trace_id"), p.str("rule"), p.str("q")
	return f, nil
}

func (s *Server) searchEvents(c *gin.Context, rc *reqCtx) error {
	p := paramsOf(c)
	f, err := p.eventFilter()
	if err != nil {
		return err
	}
	return servePage(s, c, rc, p, func(ctx context.Context, after *Cursor, limit int) ([]Event, bool, error) {
		return s.svc.SearchEvents(ctx, rc.scope, f, after, limit)
	}, func(r Event) Cursor { return Cursor{TS: r.TS, ID: r.EventID} })
}

// servePage reads the page size and cursor, fetches one keyset page and
// writes it with the cursor after its last row (when there are more).
func servePage[T any](s *Server, c *gin.Context, rc *reqCtx, p *params,
	fetch func(ctx context.Context, after *Cursor, limit int) ([]T, bool, error), key func(T) Cursor) error {
	limit, err := p.limit()
	if err != nil {
		return err
	}
	after, err := p.cursor(c)
	if err != nil {
		return err
	}
	items, more, err := fetch(c.Request.Context(), after, limit)
	if err != nil {
		return err
	}
	page := Page[T]{Items: items}
	if more {
		page.NextCursor = s.cursors.Encode(key(items[len(items)-1]), p.filterHash(c))
	}
	rc.rows = uint64(len(items))
	c.JSON(http.StatusOK, page)
	return nil
}

// csvHeader is the CSV export's columns; cursor is last.
var csvHeader = []string{"event_id", "ts", "tenant_id", "agent_id", "parent_identity", "token_id", "token_type",
	"delegation_scope", "required_scopes", "tool_name", "tool_params_hash", "resource", "resource_tenant_id",
	"policy_decision", "trace_id", "span_id", "attributes", "cursor"}

// exportEvents streams rows straight from the ClickHouse result to the
// response (constant memory), flushing every 1,000 rows or second. Every
// row carries the cursor that resumes the export after it, so a client cut
// off mid-stream continues with the cursor of its last complete row.
func (s *Server) exportEvents(c *gin.Context, rc *reqCtx) error {
	p := paramsOf(c)
	f, err := p.eventFilter()
	if err != nil {
		return err
	}
	format, err := p.oneOf("format", "ndjson", "ndjson", "csv")
	if err != nil {
		return err
	}
	after, err := p.cursor(c)
	if err != nil {
		return err
	}
	withManifest, err := p.oneOf("manifest", "", "1")
	if err != nil {
		return err
	}
	if withManifest != "" && s.manifest == nil {
		return paramErr("manifest", "this server signs no export manifests (query.manifest.key is not set)")
	}
	fh := p.filterHash(c)
	var body io.Writer = c.Writer
	var sum hash.Hash
	if withManifest != "" {
		// The manifest hashes exactly the bytes of the body, so it can only
		// follow it: an HTTP trailer, announced before the first byte.
		sum = sha256.New()
		body = io.MultiWriter(c.Writer, sum)
		c.Header("Trailer", ManifestTrailer)
	}
	w := bufio.NewWriterSize(body, 64<<10)
	var enc *json.Encoder
	var cw *csv.Writer
	if format == "csv" {
		c.Header("Content-Type", "text/csv; charset=utf-8")
		cw = csv.NewWriter(w)
	} else {
		c.Header("Content-Type", "application/x-ndjson")
		enc = json.NewEncoder(w)
	}
	c.Header("Cache-Control", "no-store")
	c.Header("X-Content-Type-Options", "nosniff")
	started := false
	start := func() error {
		started = true
		c.Status(http.StatusOK)
		if cw != nil {
			return cw.Write(csvHeader)
		}
		return nil
	}
	lastFlush := time.Now()
	var n int64
	type line struct {
		*Event
		Cursor string `json:"cursor"`
	}
	rec := make([]string, len(csvHeader))
	emit := func(e *Event) error {
		if !started {
			if err := start(); err != nil {
				return err
			}
		}
		cur := s.cursors.Encode(Cursor{TS: e.TS, ID: e.EventID}, fh)
		if cw != nil {
			rec = csvRecord(rec[:0], e, cur)
			if err := cw.Write(rec); err != nil {
				return err
			}
		} else if err := enc.Encode(line{e, cur}); err != nil {
			return err
		}
		n++
		if n%1000 == 0 || time.Since(lastFlush) > time.Second {
			if cw != nil {
				cw.Flush()
			}
			if err := w.Flush(); err != nil {
				return err
			}
			c.Writer.Flush()
			lastFlush = time.Now()
		}
		return nil
	}
	_, err = s.svc.ExportEvents(c.Request.Context(), rc.scope, f, after, s.cfg.MaxExportRows, emit)
	rc.rows = uint64(n)
	if err != nil {
		if started {
			// The status line is gone: cut the stream so the client sees a
			// truncated body (no terminating chunk), never a silent end.
			s.fail(c, err)
			panic(http.ErrAbortHandler)
		}
		return err
	}
	if !started {
		if err := start(); err != nil {
			return err
		}
	}
	if cw != nil {
		cw.Flush()
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if sum != nil {
		note, err := s.signManifest(c.Request.Context(), rc.scope, sum.Sum(nil), n)
		if err != nil {
			// The body is complete but unsigned: cut the stream so a client
			// that asked for a signed export cannot take it for one.
			s.fail(c, err)
			panic(http.ErrAbortHandler)
		}
		c.Writer.Header().Set(ManifestTrailer, base64.StdEncoding.EncodeToString([]byte(note)))
	}
	return nil
}

// ManifestTrailer is the HTTP trailer of an export with ?manifest=1: the
// base64 of the signed manifest note (integrity.VerifyManifest), which
// holds the SHA-256 of the body, its row count and the latest checkpoint of
// every log that holds events of the caller's tenants.
const ManifestTrailer = "Agentaudit-Manifest"

// signManifest signs the manifest of an export of rows rows whose body has
// SHA-256 sum. The checkpoints are read after the body was written, so
// every exported event that was already sealed is in a listed tree unless
// its log's next checkpoint (about a second away) was not signed yet.
func (s *Server) signManifest(ctx context.Context, sc Scope, sum []byte, rows int64) (string, error) {
	cps, err := s.svc.ManifestCheckpoints(ctx, sc)
	if err != nil {
		return "", err
	}
	return s.manifest.SignManifest(&integrity.Manifest{SHA256: sum, Rows: rows, Checkpoints: cps, TS: time.Now()})
}

func csvRecord(rec []string, e *Event, cur string) []string {
	attrs, _ := json.Marshal(e.Attributes)
	return append(rec, e.EventID, e.TS.Format(time.RFC3339Nano), e.TenantID, e.AgentID, e.ParentIdentity, e.TokenID, e.TokenType,
		strings.Join(e.DelegationScope, " "), strings.Join(e.RequiredScopes, " "), e.ToolName, e.ToolParamsHash, e.Resource,
		e.ResourceTenantID, e.PolicyDecision, e.TraceID, e.SpanID, string(attrs), cur)
}

func (s *Server) timeline(c *gin.Context, rc *reqCtx) error {
	p := paramsOf(c)
	from, to, err := p.timeRange()
	if err != nil {
		return err
	}
	limit, err := p.limit()
	if err != nil {
		return err
	}
	after, err := p.cursor(c)
	if err != nil {
		return err
	}
	agent := c.Param("agent_id")
	items, chain, more, err := s.svc.Timeline(c.Request.Context(), rc.scope, agent, from, to, after, limit)
	if err != nil {
		return err
	}
	t := Timeline{AgentID: agent, Items: items, Delegation: chain}
	if t.Delegation == nil {
		t.Delegation = []Delegation{}
	}
	if more {
		last := items[len(items)-1]
		t.NextCursor = s.cursors.Encode(Cursor{TS: last.TS, Kind: last.Kind, ID: last.ID}, p.filterHash(c))
	}
	rc.rows = uint64(len(items))
	c.JSON(http.StatusOK, t)
	return nil
}

func (s *Server) trace(c *gin.Context, rc *reqCtx) error {
	p := paramsOf(c)
	from, to, err := p.optTimeRange()
	if err != nil {
		return err
	}
	tr, err := s.svc.Trace(c.Request.Context(), rc.scope, c.Param("trace_id"), from, to)
	if err != nil {
		return err
	}
	rc.rows = uint64(tr.SpanCount + len(tr.Events))
	c.JSON(http.StatusOK, tr)
	return nil
}

func (s *Server) listDetections(c *gin.Context, rc *reqCtx) error {
	p := paramsOf(c)
	var f DetectionFilter
	var err error
	if f.From, f.To, err = p.timeRange(); err != nil {
		return err
	}
	if f.Severity, err = p.oneOf("severity", "", "low", "medium", "high", "critical"); err != nil {
		return err
	}
	f.Rule, f.Agent, f.Token = p.str("rule"), p.str("agent"), p.str("token")
	return servePage(s, c, rc, p, func(ctx context.Context, after *Cursor, limit int) ([]Detection, bool, error) {
		return s.svc.Detections(ctx, rc.scope, f, after, limit)
	}, func(r Detection) Cursor { return Cursor{TS: r.TS, ID: r.DetectionID} })
}

func (s *Server) getDetection(c *gin.Context, rc *reqCtx) error {
	d, err := s.svc.Detection(c.Request.Context(), rc.scope, c.Param("detection_id"))
	if err != nil {
		return err
	}
	rc.rows = 1
	c.JSON(http.StatusOK, d)
	return nil
}

func (s *Server) getDeliveries(c *gin.Context, rc *reqCtx) error {
	ds, err := s.svc.Deliveries(c.Request.Context(), rc.scope, c.Param("detection_id"))
	if err != nil {
		return err
	}
	rc.rows = uint64(len(ds))
	c.JSON(http.StatusOK, gin.H{"items": ds})
	return nil
}

func (s *Server) getRevocations(c *gin.Context, rc *reqCtx) error {
	rs, err := s.svc.Revocations(c.Request.Context(), rc.scope, c.Param("token_id"))
	if err != nil {
		return err
	}
	rc.rows = uint64(len(rs))
	c.JSON(http.StatusOK, gin.H{"items": rs})
	return nil
}

func (s *Server) report(c *gin.Context, rc *reqCtx) error {
	p := paramsOf(c)
	var rp ReportParams
	var err error
	if rp.From, rp.To, err = p.timeRange(); err != nil {
		return err
	}
	if rp.Bucket, err = p.oneOf("bucket", "day", "hour", "day", "week"); err != nil {
		return err
	}
	if rp.GroupBy, err = p.oneOf("group_by", "tenant", "tenant", "agent", "tool"); err != nil {
		return err
	}
	if rp.Bucket == "hour" && rp.To.Sub(rp.From) > 8*24*time.Hour {
		return paramErr("bucket", "hourly buckets are for ranges up to 8 days")
	}
	r, err := s.svc.Report(c.Request.Context(), rc.scope, rp)
	if err != nil {
		return err
	}
	rc.rows = uint64(len(r.Rows))
	c.JSON(http.StatusOK, r)
	return nil
}

func (s *Server) queryAudit(c *gin.Context, rc *reqCtx) error {
	p := paramsOf(c)
	var f AuditFilter
	var err error
	if f.From, f.To, err = p.timeRange(); err != nil {
		return err
	}
	f.Principal, f.Route = p.str("principal"), p.str("route")
	return servePage(s, c, rc, p, func(ctx context.Context, after *Cursor, limit int) ([]AuditRecord, bool, error) {
		return s.svc.QueryAudit(ctx, rc.scope, f, after, limit)
	}, func(r AuditRecord) Cursor { return Cursor{TS: r.TS, ID: r.RequestID} })
}

func (s *Server) openapi(c *gin.Context, _ *reqCtx) error {
	c.Data(http.StatusOK, "application/json", s.openAPI)
	return nil
}
