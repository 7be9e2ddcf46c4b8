package query

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOpenAPIMatchesTheRegisteredRoutes compares the served /openapi.json
// with engine.Routes(): a route registered on the engine any other way than
// through the route table, or a documented path that is not served, fails.
func TestOpenAPIMatchesTheRegisteredRoutes(t *testing.T) {
	e := newEnv(t, nil)
	code, body, h := e.get("", "/openapi.json")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", code, h.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	served := map[string]bool{}
	for _, r := range e.srv.Engine().Routes() {
		k := r.Method + " " + openAPIPath(r.Path)
		served[k] = true
		if !documented[k] {
			t.Errorf("%s is served but not in /openapi.json", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("%s is in /openapi.json but not served", k)
		}
	}
	if _, ok := doc.Paths["/v1/integrity/events/{event_id}/proof"]["get"]["responses"].(map[string]any)["409"]; !ok {
		t.Error("the inclusion proof's 409 not-committed is not documented")
	}
	if len(served) < 14 {
		t.Errorf("only %d routes served", len(served))
	}
	// Every documented path parameter exists in its path, and back.
	for p, ops := range doc.Paths {
		for m, op := range ops {
			params, _ := op["parameters"].([]any)
			n := 0
			for _, x := range params {
				pm := x.(map[string]any)
				if pm["in"] == "path" {
					n++
					if !strings.Contains(p, "{"+pm["name"].(string)+"}") {
						t.Errorf("%s %s: path parameter %v not in the path", m, p, pm["name"])
					}
				}
			}
			if n != strings.Count(p, "{") {
				t.Errorf("%s %s: %d path parameters documented", m, p, n)
			}
		}
	}
}
