package query

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTenantIsolationOnEveryRoute walks engine.Routes() — every route Gin
// has, not a hand-kept list — and for each one, as principals bound to
// tenant-a, checks that
//   - with tenant-a's ids the route answers 200 with tenant-a's rows and not
//     one row of tenant-b (every row the API returns carries a tenant_id
//     field, or a tenants list; the bodies are walked for them);
//   - with tenant-b's ids it answers 403/404, or 200 without tenant-b rows;
//   - naming tenant-b explicitly is 403.
//
// A new route with a path parameter this test has no ids for fails here,
// and a route whose SQL lacks the tenant condition leaks tenant-b's rows.
func TestTenantIsolationOnEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	a := seed(t, e.conn, e.db, "tenant-a", "a", 40, base)
	b := seed(t, e.conn, e.db, "tenant-b", "b", 40, base.Add(30*time.Minute))
	// Each tenant's events sealed in its own partition's log.
	signer := testSigner(t)
	sealedA := openLog(t, e.conn, signer, 0).add(t, e.conn, e.db, []string{"tenant-a"}, 3, true, true)
	sealedB := openLog(t, e.conn, signer, 1).add(t, e.conn, e.db, []string{"tenant-b"}, 3, true, true)
	ids := map[string][2]string{
		"agent_id":     {a.agent, b.agent},
		"trace_id":     {a.trace, b.trace},
		"detection_id": {a.detection.String(), b.detection.String()},
		"token_id":     {a.token, b.token},
		"event_id":     {sealedA[1].EventID.String(), sealedB[1].EventID.String()},
		"partition":    {"0", "1"},
	}
	byPath := map[string]*route{}
	for _, r := range e.srv.routes {
		byPath[r.Method+" "+r.Path] = r
	}
	// tenant-b's principal queries first, so query_audit holds tenant-b rows
	// the tenant-a admin must not see.
	for pass, who := range []string{"admin-b", "admin-a"} {
		tenant, other := "tenant-a", "tenant-b"
		side := 0
		if pass == 0 {
			tenant, other, side = "tenant-b", "tenant-a", 1
		}
		for _, gr := range e.srv.Engine().Routes() {
			r := byPath[gr.Method+" "+gr.Path]
			if r == nil {
				t.Errorf("%s %s: registered but not in the route table", gr.Method, gr.Path)
				continue
			}
			if r.Public {
				continue
			}
			build := func(which int, extra string) string {
				p := r.Path
				for _, prm := range r.Params {
					if prm.In != "path" {
						continue
					}
					v, ok := ids[prm.Name]
					if !ok {
						t.Fatalf("%s: no test ids for path parameter %q: teach this test (and the route its isolation)", r.Path, prm.Name)
					}
					p = strings.Replace(p, ":"+prm.Name, url.PathEscape(v[which]), 1)
				}
				var qs []string
				if r.param("from", "query") != nil {
					qs = append(qs, rangeQS())
				}
				if extra != "" {
					qs = append(qs, extra)
				}
				if len(qs) > 0 {
					p += "?" + strings.Join(qs, "&")
				}
				return p
			}
			if r.Path == "/v1/admin/query-audit" {
				// Wait for query_audit rows of this principal's own tenant.
				waitFor(t, "query_audit rows of "+tenant, func() bool {
					code, body, _ := e.get(who, build(side, ""))
					return code == 200 && tenantsIn(t, body)[tenant]
				})
			}
			own := build(side, "")
			code, body, _ := e.get(who, own)
			if code != http.StatusOK {
				t.Errorf("%s as %s: own ids: status %d: %s", own, who, code, body)
			} else if !r.Global && !tenantsIn(t, body)[tenant] {
				t.Errorf("%s as %s: own ids: no row of %s (the check below would be vacuous): %s", own, who, tenant, body)
			}
			if tenantsIn(t, body)[other] {
				t.Errorf("%s as %s: LEAK: body holds rows of %s: %.400s", own, who, other, body)
			}
			foreign := build(1-side, "")
			code, body, _ = e.get(who, foreign)
			switch {
			case code == http.StatusForbidden || code == http.StatusNotFound:
			case code == http.StatusOK && !tenantsIn(t, body)[other]:
			default:
				t.Errorf("%s as %s: foreign ids: status %d, body %.400s", foreign, who, code, body)
			}
			named := build(side, "tenant="+other)
			code, body, _ = e.get(who, named)
			switch {
			case r.param("tenant", "query") == nil:
				// Routes over data that is not per tenant (a Merkle log
				// spans a partition's tenants) take no tenant parameter.
				if code != http.StatusBadRequest || !strings.Contains(string(body), ProblemInvalidParam) {
					t.Errorf("%s as %s: tenant on a route without one: status %d, want 400 invalid-parameter: %s", named, who, code, body)
				}
			case code != http.StatusForbidden || !strings.Contains(string(body), ProblemTenantDenied):
				t.Errorf("%s as %s: naming the other tenant: status %d, want 403 tenant-denied: %s", named, who, code, body)
			}
		}
	}
	// Admin-only routes are 403 for auditors.
	for _, p := range []string{"/v1/admin/query-audit?" + rangeQS(), "/v1/integrity/logs/audit_events/0/consistency"} {
		if code, body, _ := e.get("auditor-a", p); code != http.StatusForbidden || !strings.Contains(string(body), ProblemForbidden) {
			t.Errorf("auditor on the admin route %s: %d %s", p, code, body)
		}
	}
}

// tenantsIn returns every tenant named by a tenant_id field or a tenants
// list anywhere in a JSON (or NDJSON) body.
func tenantsIn(t *testing.T, body []byte) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, v := range x {
				if s, ok := v.(string); ok && k == "tenant_id" {
					found[s] = true
				}
				if l, ok := v.([]any); ok && k == "tenants" {
					for _, s := range l {
						found[fmt.Sprint(s)] = true
					}
				}
				walk(v)
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("body is not JSON: %v: %.300s", err, body)
		}
		walk(v)
	}
	return found
}
