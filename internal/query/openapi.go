package query

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// resultTypes name the JSON bodies routes return (route.Result).
var resultTypes = map[string]reflect.Type{
	"EventPage":     reflect.TypeFor[Page[Event]](),
	"Timeline":      reflect.TypeFor[Timeline](),
	"Trace":         reflect.TypeFor[Trace](),
	"DetectionPage": reflect.TypeFor[Page[Detection]](),
	"Detection":     reflect.TypeFor[Detection](),
	"DeliveryList": reflect.TypeFor[struct {
		Items []Delivery `json:"items"`
	}](),
	"RevocationList": reflect.TypeFor[struct {
		Items []Revocation `json:"items"`
	}](),
	"Report":    reflect.TypeFor[Report](),
	"AuditPage": reflect.TypeFor[Page[AuditRecord]](),
	"Problem":   reflect.TypeFor[Problem](),

	"RetentionStatus":  reflect.TypeFor[RetentionStatus](),
	"InclusionProof":   reflect.TypeFor[InclusionProof](),
	"ConsistencyProof": reflect.TypeFor[ConsistencyProof](),
}

// buildOpenAPI renders the OpenAPI 3.1 document from the route table, the
// same table that registered the routes.
func (s *Server) buildOpenAPI() ([]byte, error) {
	schemas := map[string]any{}
	for name, t := range resultTypes {
		schemas[name] = jsonSchema(t, 0)
	}
	problem := map[string]any{"description": "RFC 9457 problem", "content": map[string]any{
		"application/problem+json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Problem"}}}}
	paths := map[string]any{}
	for _, r := range s.routes {
		op := map[string]any{"operationId": r.ID, "summary": r.Summary}
		var ps []any
		for _, p := range r.Params {
			sch := map[string]any{"type": p.Type}
			if p.Format != "" {
				sch["format"] = p.Format
			}
			if len(p.Enum) > 0 {
				sch["enum"] = p.Enum
			}
			if p.Type == "string" {
				sch["maxLength"] = maxValueLen
			}
			if p.Repeated {
				sch = map[string]any{"type": "array", "items": sch, "maxItems": maxTenants}
			}
			x := map[string]any{"name": p.Name, "in": p.In, "required": p.Required || p.In == "path", "schema": sch}
			if p.Desc != "" {
				x["description"] = p.Desc
			}
			if p.Repeated {
				x["style"], x["explode"] = "form", true
			}
			ps = append(ps, x)
		}
		if len(ps) > 0 {
			op["parameters"] = ps
		}
		ok := map[string]any{"description": "OK"}
		switch {
		case r.Result != "":
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/" + r.Result}}}
		case len(r.Produce) > 0:
			content := map[string]any{}
			for _, m := range r.Produce {
				content[m] = map[string]any{"schema": map[string]any{"type": "string"}}
			}
			ok["content"] = content
		}
		resp := map[string]any{"200": ok}
		if r.Public {
			op["security"] = []any{}
			if r.Path == "/readyz" {
				resp["503"] = problem
			}
		} else {
			for _, code := range append([]string{"400", "401", "403", "404", "429", "500"}, r.Problems...) {
				resp[code] = problem
			}
			if r.Admin {
				op["description"] = "Requires the admin role."
			}
		}
		op["responses"] = resp
		path := openAPIPath(r.Path)
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		item[strings.ToLower(r.Method)] = op
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "agentaudit query API",
			"version": "1",
			"description": "Tenant-isolated compliance queries over agent audit events, GenAI spans, detections and webhook deliveries. " +
				"Errors are RFC 9457 problem+json with stable type URNs (urn:agentaudit:problem:*). Rate limits are per principal: every " +
				"authenticated response carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds until the bucket is full); " +
				"429 responses carry Retry-After. Every call is recorded in the query audit trail.",
		},
		"paths": paths,
		"components": map[string]any{
			"schemas": schemas,
			"securitySchemes": map[string]any{
				"apiKey": map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key"},
			},
		},
		"security": []any{map[string]any{"apiKey": []any{}}, map[string]any{"bearer": []any{}}},
	}
	return json.MarshalIndent(doc, "", "  ")
}

// openAPIPath turns /a/:b into /a/{b}.
func openAPIPath(p string) string {
	parts := strings.Split(p, "/")
	for i, x := range parts {
		if strings.HasPrefix(x, ":") || strings.HasPrefix(x, "*") {
			parts[i] = "{" + x[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

// jsonSchema describes a Go type as its encoding/json output.
func jsonSchema(t reflect.Type, depth int) map[string]any {
	if depth > 6 {
		return map[string]any{}
	}
	if t == reflect.TypeFor[time.Time]() {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonSchema(t.Elem(), depth)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"} // encoding/json's []byte
		}
		if t.Elem() == t || (t.Elem().Kind() == reflect.Pointer && t.Elem().Elem().Kind() == reflect.Struct && depth > 2) {
			return map[string]any{"type": "array", "items": map[string]any{"type": "object"}}
		}
		return map[string]any{"type": "array", "items": jsonSchema(t.Elem(), depth+1)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": jsonSchema(t.Elem(), depth+1)}
	case reflect.Struct:
		props := map[string]any{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if f.Anonymous && f.Tag.Get("json") == "" {
				for k, v := range jsonSchema(f.Type, depth)["properties"].(map[string]any) {
					props[k] = v
				}
				continue
			}
			props[name] = jsonSchema(f.Type, depth+1)
		}
		return map[string]any{"type": "object", "properties": props}
	}
	return map[string]any{}
}
