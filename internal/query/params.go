package query

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/agentaudit/agentaudit/internal/query/auth"
)

// Limits on request values: anything longer is a 400, never a query.
const (
	maxValueLen = 256
	maxTenants  = 100
)

// params is a request's validated query string.
type params struct {
	v   url.Values
	srv *Server
}

// checkParams rejects unknown parameters (a mistyped filter silently
// ignored would widen an auditor's result), repeated single-valued ones,
// and values that are too long or not UTF-8. Path parameters get the same
// length and encoding checks.
func (s *Server) checkParams(c *gin.Context, r *route) (*params, error) {
	v := c.Request.URL.Query()
	for name, vals := range v {
		p := r.param(name, "query")
		if p == nil {
			return nil, paramErr(name, "unknown parameter %q", truncate(name))
		}
		if len(vals) > 1 && !p.Repeated {
			return nil, paramErr(name, "parameter %q given more than once", name)
		}
		if p.Repeated && len(vals) > maxTenants {
			return nil, paramErr(name, "at most %d values", maxTenants)
		}
		for _, x := range vals {
			if err := checkValue(name, x); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range c.Params {
		if err := checkValue(p.Key, p.Value); err != nil {
			return nil, err
		}
		if p.Value == "" {
			return nil, paramErr(p.Key, "must not be empty")
		}
	}
	return &params{v: v, srv: s}, nil
}

func checkValue(name, x string) error {
	if len(x) > maxValueLen {
		return paramErr(name, "value longer than %d bytes", maxValueLen)
	}
	if !utf8.ValidString(x) {
		return paramErr(name, "value is not UTF-8")
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func (p *params) str(name string) string { return p.v.Get(name) }

// timeRange parses the required from/to (RFC 3339) and bounds it.
func (p *params) timeRange() (time.Time, time.Time, error) {
	from, err := p.time("from", true)
	if err != nil {
		return from, from, err
	}
	to, err := p.time("to", true)
	if err != nil {
		return from, to, err
	}
	if !from.Before(to) {
		return from, to, paramErr("to", "to must be after from")
	}
	if to.Sub(from) > p.srv.cfg.MaxRange {
		return from, to, &apiError{typ: ProblemRangeTooLarge, status: 400, param: "to", detail: "to - from exceeds " + p.srv.cfg.MaxRange.String()}
	}
	return from, to, nil
}

// optTimeRange is timeRange when from or to is given, else the zero range.
func (p *params) optTimeRange() (time.Time, time.Time, error) {
	if p.v.Has("from") || p.v.Has("to") {
		return p.timeRange()
	}
	return time.Time{}, time.Time{}, nil
}

func (p *params) time(name string, required bool) (time.Time, error) {
	s := p.v.Get(name)
	if s == "" {
		if required {
			return time.Time{}, paramErr(name, "required (RFC 3339 time)")
		}
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, paramErr(name, "not an RFC 3339 time")
	}
	if t.Year() < 1970 || t.Year() > 2261 {
		return t, paramErr(name, "out of range")
	}
	return t.UTC(), nil
}

func (p *params) limit() (int, error) {
	s := p.v.Get("limit")
	if s == "" {
		return p.srv.cfg.DefaultPageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > p.srv.cfg.MaxPageSize {
		return 0, paramErr("limit", "an integer from 1 to %d", p.srv.cfg.MaxPageSize)
	}
	return n, nil
}

// oneOf returns the value of name if it is one of allowed (or def if absent).
func (p *params) oneOf(name, def string, allowed ...string) (string, error) {
	s := p.v.Get(name)
	if s == "" {
		return def, nil
	}
	if !slices.Contains(allowed, s) {
		return "", paramErr(name, "one of %s", strings.Join(allowed, ", "))
	}
	return s, nil
}

// filterHash identifies the request's filters (everything but cursor,
// limit and manifest, plus the route and the path) for cursors.
func (p *params) filterHash(c *gin.Context) string {
	keys := make([]string, 0, len(p.v))
	for k := range p.v {
		if k != "cursor" && k != "limit" && k != "manifest" { // a manifest does not change the rows
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	h := sha256.New()
	h.Write([]byte(c.FullPath() + "\x00" + c.Request.URL.Path + "\x00"))
	for _, k := range keys {
		vals := slices.Clone(p.v[k])
		slices.Sort(vals)
		h.Write([]byte(k + "=" + strings.Join(vals, "\x01") + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func (p *params) cursor(c *gin.Context) (*Cursor, error) {
	s := p.v.Get("cursor")
	if s == "" {
		return nil, nil
	}
	cur, err := p.srv.cursors.Decode(s, p.filterHash(c))
	if err != nil {
		return nil, err
	}
	return &cur, nil
}

// Scope is the set of tenants a statement may read: the principal's grant,
// narrowed to the tenants the request names. Every Service method takes
// one and puts it into its SQL as a bound `tenant_id IN (?)`.
type Scope struct {
	all     bool
	tenants []string
}

// scope builds the request's scope: requested tenants must all be granted
// (403 otherwise, even if some are), none requested means all granted.
func scopeFor(p auth.Principal, requested []string) (Scope, error) {
	if len(requested) == 0 {
		if p.All {
			return Scope{all: true}, nil
		}
		return Scope{tenants: p.Tenants}, nil
	}
	for _, t := range requested {
		if t == "" || !p.MayRead(t) {
			return Scope{}, errTenantDenied
		}
	}
	ts := slices.Clone(requested)
	slices.Sort(ts)
	return Scope{tenants: slices.Compact(ts)}, nil
}

// auditTenant is the query_audit tenant_id of a scope: the tenant when it is
// exactly one, else "".
func (s Scope) auditTenant() string {
	if !s.all && len(s.tenants) == 1 {
		return s.tenants[0]
	}
	return ""
}

func (s Scope) list() []string {
	if s.all {
		return []string{auth.AllTenants}
	}
	return s.tenants
}
