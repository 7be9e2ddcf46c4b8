package query

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// Problem type URNs: stable identifiers clients may switch on (RFC 9457).
const (
	ProblemUnauthenticated = "urn:agentaudit:problem:unauthenticated"
	ProblemForbidden       = "urn:agentaudit:problem:forbidden"
	ProblemTenantDenied    = "urn:agentaudit:problem:tenant-denied"
	ProblemNotFound        = "urn:agentaudit:problem:not-found"
	ProblemRouteNotFound   = "urn:agentaudit:problem:route-not-found"
	ProblemMethod          = "urn:agentaudit:problem:method-not-allowed"
	ProblemInvalidParam    = "urn:agentaudit:problem:invalid-parameter"
	ProblemInvalidCursor   = "urn:agentaudit:problem:invalid-cursor"
	ProblemRangeTooLarge   = "urn:agentaudit:problem:range-too-large"
	ProblemRateLimited     = "urn:agentaudit:problem:rate-limited"
	ProblemInternal        = "urn:agentaudit:problem:internal"
	ProblemUnavailable     = "urn:agentaudit:problem:unavailable"
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Param names the offending request parameter, for invalid-parameter.
	Param string `json:"param,omitempty"`
}

var problemTitles = map[string]string{
	ProblemUnauthenticated: "Authentication required",
	ProblemForbidden:       "Forbidden",
	ProblemTenantDenied:    "Tenant not granted",
	ProblemNotFound:        "Not found",
	ProblemRouteNotFound:   "No such route",
	ProblemMethod:          "Method not allowed",
	ProblemInvalidParam:    "Invalid parameter",
	ProblemInvalidCursor:   "Invalid cursor",
	ProblemRangeTooLarge:   "Time range too large",
	ProblemRateLimited:     "Too many requests",
	ProblemInternal:        "Internal error",
	ProblemUnavailable:     "Service unavailable",
}

// apiError is an error a handler turns into a problem response. Its detail
// is written by us, never copied from a lower layer (no ClickHouse text).
type apiError struct {
	typ    string
	status int
	detail string
	param  string
}

func (e *apiError) Error() string { return e.detail }

func paramErr(param, format string, args ...any) error {
	return &apiError{typ: ProblemInvalidParam, status: http.StatusBadRequest, param: param, detail: fmt.Sprintf(format, args...)}
}

var (
	errNotFound     = &apiError{typ: ProblemNotFound, status: http.StatusNotFound, detail: "no such resource in the tenants you may read"}
	errBadCursor    = &apiError{typ: ProblemInvalidCursor, status: http.StatusBadRequest, param: "cursor", detail: "the cursor is malformed, was signed by another key, or belongs to other filters"}
	errAdminOnly    = &apiError{typ: ProblemForbidden, status: http.StatusForbidden, detail: "this route is for admins"}
	errTenantDenied = &apiError{typ: ProblemTenantDenied, status: http.StatusForbidden, param: "tenant", detail: "a requested tenant is not granted to you"}
)

// writeProblem aborts the request with a problem response.
func writeProblem(c *gin.Context, typ string, status int, detail, param string) {
	p := Problem{Type: typ, Title: problemTitles[typ], Status: status, Detail: detail, Instance: c.Request.URL.Path, RequestID: c.GetString(ctxRequestID), Param: param}
	c.Set(ctxErrorType, typ)
	c.Header("Content-Type", "application/problem+json")
	c.Header("Cache-Control", "no-store")
	if c.Writer.Written() {
		// A stream already started: nothing can be said in its status line.
		c.Abort()
		return
	}
	c.AbortWithStatusJSON(status, p) // keeps the Content-Type set above
}

// fail turns err into the right problem: ours as is, a cancelled client as
// nothing, anything else (ClickHouse, I/O) as a generic 500 whose cause is
// logged with the request id and never sent.
func (s *Server) fail(c *gin.Context, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		writeProblem(c, ae.typ, ae.status, ae.detail, ae.param)
	case c.Request.Context().Err() != nil:
		c.Set(ctxErrorType, "client_gone")
		c.Abort()
	default:
		s.log.Error("query failed", "route", c.FullPath(), "request_id", c.GetString(ctxRequestID), "err", err)
		writeProblem(c, ProblemInternal, http.StatusInternalServerError, "the query failed; quote the request id to your operator", "")
	}
}

func retryAfter(c *gin.Context, secs int) {
	c.Header("Retry-After", strconv.Itoa(secs))
}
