package schema_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentaudit/agentaudit/schema"
)

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.AuditEventV1))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schema.AuditEventV1ID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schema.AuditEventV1ID)
	if err != nil {
		t.Fatalf("schema does not compile: %v", err)
	}
	return sch
}

func TestAuditEventV1IDMatchesTheSchema(t *testing.T) {
	var doc struct {
		ID string `json:"$id"`
	}
	if err := json.Unmarshal(schema.AuditEventV1, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.ID != schema.AuditEventV1ID {
		t.Errorf("$id = %q, AuditEventV1ID = %q", doc.ID, schema.AuditEventV1ID)
	}
}

// validEvent returns a complete valid event as a map, for mutation.
func validEvent() map[string]any {
	return map[string]any{
		"schema_version":     "1",
		"event_id":           "0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17",
		"ts":                 "2026-03-14T15:00:00.123456789Z",
		"tenant_id":          "acme",
		"agent_id":           "agent-7",
		"parent_identity":    "alice@acme.example",
		"token_id":           "tok-1",
		"token_type":         "oauth",
		"delegation_scope":   []any{"crm:read", "mail:send"},
		"required_scopes":    []any{"crm:read"},
		"tool_name":          "crm.lookup",
		"tool_params_hash":   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"resource":           "crm://contacts/42",
		"resource_tenant_id": "acme",
		"policy_decision":    "allow",
		"trace_id":           "4bf92f3577b34da6a3ce929d0e0e4736",
		"span_id":            "00f067aa0ba902b7",
		"attributes":         map[string]any{"ip": "10.0.0.1", "retries": 3, "dry_run": false},
	}
}

// validate validates m as the instance a consumer would parse from JSON.
func validate(t *testing.T, sch *jsonschema.Schema, m map[string]any) error {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(doc)
}

func TestAuditEventV1AcceptsValidEvents(t *testing.T) {
	sch := compile(t)
	if err := validate(t, sch, validEvent()); err != nil {
		t.Errorf("complete event rejected: %v", err)
	}
	minimal := validEvent()
	for _, k := range []string{"schema_version", "parent_identity", "delegation_scope", "required_scopes",
		"tool_params_hash", "resource", "resource_tenant_id", "trace_id", "span_id", "attributes"} {
		delete(minimal, k)
	}
	if err := validate(t, sch, minimal); err != nil {
		t.Errorf("event with only the required fields rejected: %v", err)
	}
}

func TestAuditEventV1Rejects(t *testing.T) {
	sch := compile(t)
	type mutation struct {
		name string
		mod  func(m map[string]any)
	}
	var cases []mutation
	for _, k := range []string{"event_id", "ts", "tenant_id", "agent_id", "token_id", "token_type", "tool_name", "policy_decision"} {
		cases = append(cases, mutation{"missing " + k, func(m map[string]any) { delete(m, k) }})
	}
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	cases = append(cases,
		mutation{"token_type not in the enum", set("token_type", "password")},
		mutation{"policy_decision not in the enum", set("policy_decision", "maybe")},
		mutation{"upper-case tool_params_hash", set("tool_params_hash", strings.ToUpper("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"))},
		mutation{"tool_params_hash of 63 digits", set("tool_params_hash", strings.Repeat("a", 63))},
		mutation{"raw tool params", set("tool_params", map[string]any{"query": "select 1"})},
		mutation{"raw params under another name", set("params", "x")},
		mutation{"event_id not a uuid", set("event_id", "not-a-uuid")},
		mutation{"ts without offset", set("ts", "2026-03-14T15:00:00")},
		mutation{"empty tenant_id", set("tenant_id", "")},
		mutation{"schema_version 2", set("schema_version", "2")},
		mutation{"trace_id of the wrong length", set("trace_id", "abc")},
		mutation{"attribute value that is an object", set("attributes", map[string]any{"a": map[string]any{}})},
		mutation{"empty scope", set("delegation_scope", []any{""})},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := validEvent()
			tc.mod(m)
			if err := validate(t, sch, m); err == nil {
				t.Error("accepted")
			}
		})
	}
}
