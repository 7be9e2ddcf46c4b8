package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

func testEventOptions() EventOptions {
	o := DefaultEventOptions()
	o.Now = func() time.Time { return testNow }
	return o
}

// event returns a valid audit event as a JSON object, with mod applied.
func event(mod func(m map[string]any)) []byte {
	m := map[string]any{
		"event_id":        "0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17",
		"ts":              "2026-03-14T15:00:00.123456789Z",
		"tenant_id":       "acme",
		"agent_id":        "agent-7",
		"token_id":        "tok-1",
		"token_type":      "oauth",
		"tool_name":       "crm.lookup",
		"policy_decision": "allow",
	}
	if mod != nil {
		mod(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

const fullEvent = `{
  "schema_version": "1",
  "event_id": "0B8F6A3E-54C2-4D7E-9A61-2F0C4E8D9B17",
  "ts": "2026-03-14T16:00:00.5+01:00",
  "tenant_id": "acme",
  "agent_id": "agent-7",
  "parent_identity": "alice@acme.example",
  "token_id": "tok-1",
  "token_type": "m2m",
  "delegation_scope": ["crm:read", "mail:send"],
  "required_scopes": ["crm:read"],
  "tool_name": "crm.lookup",
  "tool_params_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  "resource": "crm://contacts/42",
  "resource_tenant_id": "globex",
  "policy_decision": "deny",
  "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
  "span_id": "00f067aa0ba902b7",
  "attributes": {"ip": "10.0.0.1", "retries": 3, "score": -1.50e2, "big": 12345678901234567890, "dry_run": false, "esc\u00e9": "a\nb\u00e9"}
}`

func TestDecodeAuditEventDecodesEveryField(t *testing.T) {
	want := AuditEvent{
		EventID:          uuid.MustParse("0b8f6a3e-54c2-4d7e-9a61-2f0c4e8d9b17"),
		TS:               time.Date(2026, 3, 14, 15, 0, 0, 5e8, time.UTC),
		TenantID:         "acme",
		AgentID:          "agent-7",
		ParentIdentity:   "alice@acme.example",
		TokenID:          "tok-1",
		TokenType:        "m2m",
		DelegationScope:  []string{"crm:read", "mail:send"},
		RequiredScopes:   []string{"crm:read"},
		ToolName:         "crm.lookup",
		ToolParamsHash:   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Resource:         "crm://contacts/42",
		ResourceTenantID: "globex",
		PolicyDecision:   "deny",
		TraceID:          "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:           "00f067aa0ba902b7",
		Attributes: map[string]string{
			"ip": "10.0.0.1", "retries": "3", "score": "-1.50e2", "big": "12345678901234567890",
			"dry_run": "false", "escé": "a\nbé",
		},
		SchemaVersion: "1",
	}
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	for name, decode := range map[string]func([]byte) (AuditEvent, error){
		"DecodeAuditEvent": func(b []byte) (AuditEvent, error) { return DecodeAuditEvent(b, testEventOptions()) },
		"AuditDecoder":     dec.Decode,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := decode([]byte(fullEvent))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if got.TS.Location() != time.UTC {
				t.Error("ts not in UTC")
			}
		})
	}
	if err := dec.ValidateSchema([]byte(fullEvent)); err != nil {
		t.Errorf("reference validator rejects the example: %v", err)
	}
}

func TestDecodeAuditEventDefaultsOptionalFields(t *testing.T) {
	got, err := DecodeAuditEvent(event(nil), testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got.SchemaVersion != "1" || got.DelegationScope != nil || got.RequiredScopes != nil ||
		got.Attributes != nil || got.ParentIdentity != "" || got.TraceID != "" {
		t.Errorf("optional fields: %+v", got)
	}
	if want := time.Date(2026, 3, 14, 15, 0, 0, 123456789, time.UTC); !got.TS.Equal(want) {
		t.Errorf("ts = %v", got.TS)
	}
}

func TestDecodeAuditEventTimestamps(t *testing.T) {
	for _, tc := range []struct {
		ts   string
		want time.Time
	}{
		{"2026-03-14T15:00:00Z", time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)},
		{"2026-03-14t15:00:00z", time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)},
		{"2026-03-14T10:30:00-04:30", time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)},
		{"2026-03-14T15:00:00.1Z", time.Date(2026, 3, 14, 15, 0, 0, 1e8, time.UTC)},
		{"2026-03-14T15:00:00.1234567891234Z", time.Date(2026, 3, 14, 15, 0, 0, 123456789, time.UTC)},
		// A leap second, only at 23:59 UTC, is the next second.
		{"2026-03-13T23:59:60Z", time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)},
		{"2026-03-14T01:59:60+02:00", time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)},
	} {
		got, err := DecodeAuditEvent(event(func(m map[string]any) { m["ts"] = tc.ts }), testEventOptions())
		if err != nil || !got.TS.Equal(tc.want) {
			t.Errorf("%s: got %v, %v; want %v", tc.ts, got.TS, err, tc.want)
		}
	}
}

func TestDecodeAuditEventRejects(t *testing.T) {
	set := func(k string, v any) jsonBytes { return event(func(m map[string]any) { m[k] = v }) }
	del := func(k string) []byte { return event(func(m map[string]any) { delete(m, k) }) }
	manyAttrs := func(n int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[strings.Repeat("k", i+1)] = i
		}
		return m
	}
	scopes := make([]string, 257)
	for i := range scopes {
		scopes[i] = "s"
	}
	for _, tc := range []struct {
		name    string
		msg     []byte
		opts    func(*EventOptions)
		reason  Reason
		pointer string // must appear in the message
	}{
		{name: "message over the limit", msg: event(nil), opts: func(o *EventOptions) { o.Limits.MaxMessageBytes = 64 }, reason: ReasonMessageTooLarge},
		{name: "invalid UTF-8 bytes", msg: []byte(strings.Replace(string(event(nil)), "acme", "ac\xffme", 1)), reason: ReasonInvalidUTF8},
		{name: "lone surrogate escape", msg: set("agent_id", "x").replaceAll(`"x"`, `"\ud800"`), reason: ReasonInvalidUTF8},
		{name: "empty", msg: []byte(""), reason: ReasonInvalidJSON},
		{name: "truncated", msg: event(nil)[:40], reason: ReasonInvalidJSON},
		{name: "trailing data", msg: append(event(nil), []byte(" {}")...), reason: ReasonInvalidJSON},
		{name: "trailing comma", msg: []byte(strings.Replace(string(event(nil)), "}", ",}", 1)), reason: ReasonInvalidJSON},
		{name: "bad literal", msg: set("attributes", map[string]any{"a": true}).replaceAll("true", "tru"), reason: ReasonInvalidJSON},
		{name: "duplicate key", msg: []byte(strings.Replace(string(event(nil)), "{", `{"tenant_id":"evil",`, 1)), reason: ReasonInvalidJSON},
		{name: "duplicate attribute key", msg: set("attributes", map[string]any{"a": 1, "b": 2}).replaceAll(`"b"`, `"a"`), reason: ReasonInvalidJSON},
		{name: "syntax error after a schema violation", msg: []byte(`{"nope": 1, "x": }`), reason: ReasonInvalidJSON},
		{name: "not an object", msg: []byte(`["event"]`), reason: ReasonSchemaViolation, pointer: "/:"},
		{name: "missing event_id", msg: del("event_id"), reason: ReasonSchemaViolation, pointer: "event_id"},
		{name: "missing ts", msg: del("ts"), reason: ReasonSchemaViolation, pointer: "ts"},
		{name: "missing tenant_id", msg: del("tenant_id"), reason: ReasonSchemaViolation, pointer: "tenant_id"},
		{name: "missing agent_id", msg: del("agent_id"), reason: ReasonSchemaViolation, pointer: "agent_id"},
		{name: "missing token_id", msg: del("token_id"), reason: ReasonSchemaViolation, pointer: "token_id"},
		{name: "missing token_type", msg: del("token_type"), reason: ReasonSchemaViolation, pointer: "token_type"},
		{name: "missing tool_name", msg: del("tool_name"), reason: ReasonSchemaViolation, pointer: "tool_name"},
		{name: "missing policy_decision", msg: del("policy_decision"), reason: ReasonSchemaViolation, pointer: "policy_decision"},
		{name: "raw tool params", msg: set("tool_params", map[string]any{"q": "x"}), reason: ReasonSchemaViolation, pointer: "tool_params"},
		{name: "bad token_type", msg: set("token_type", "password"), reason: ReasonSchemaViolation, pointer: "/token_type"},
		{name: "bad policy_decision", msg: set("policy_decision", "maybe"), reason: ReasonSchemaViolation, pointer: "/policy_decision"},
		{name: "upper-case hash", msg: set("tool_params_hash", strings.Repeat("A", 64)), reason: ReasonSchemaViolation, pointer: "/tool_params_hash"},
		{name: "short hash", msg: set("tool_params_hash", "abc"), reason: ReasonSchemaViolation, pointer: "/tool_params_hash"},
		{name: "bad uuid", msg: set("event_id", "0b8f6a3e54c24d7e9a612f0c4e8d9b17"), reason: ReasonSchemaViolation, pointer: "/event_id"},
		{name: "ts without offset", msg: set("ts", "2026-03-14T15:00:00"), reason: ReasonSchemaViolation, pointer: "/ts"},
		{name: "ts on February 30", msg: set("ts", "2026-02-30T15:00:00Z"), reason: ReasonSchemaViolation, pointer: "/ts"},
		{name: "leap second not at 23:59 UTC", msg: set("ts", "2026-03-14T15:00:60Z"), reason: ReasonSchemaViolation, pointer: "/ts"},
		{name: "empty tenant", msg: set("tenant_id", ""), reason: ReasonSchemaViolation, pointer: "/tenant_id"},
		{name: "tenant of 257 characters", msg: set("tenant_id", strings.Repeat("é", 257)), reason: ReasonSchemaViolation, pointer: "/tenant_id"},
		{name: "number as tenant", msg: set("tenant_id", 7), reason: ReasonSchemaViolation, pointer: "/tenant_id"},
		{name: "schema_version 2", msg: set("schema_version", "2"), reason: ReasonSchemaViolation, pointer: "/schema_version"},
		{name: "schema_version as number", msg: set("schema_version", 1), reason: ReasonSchemaViolation, pointer: "/schema_version"},
		{name: "scopes not an array", msg: set("delegation_scope", "crm:read"), reason: ReasonSchemaViolation, pointer: "/delegation_scope"},
		{name: "empty scope", msg: set("required_scopes", []string{"a", ""}), reason: ReasonSchemaViolation, pointer: "/required_scopes/1"},
		{name: "257 scopes", msg: set("delegation_scope", scopes), reason: ReasonSchemaViolation, pointer: "/delegation_scope"},
		{name: "trace_id of wrong length", msg: set("trace_id", "4bf92f35"), reason: ReasonSchemaViolation, pointer: "/trace_id"},
		{name: "attribute null", msg: set("attributes", map[string]any{"a": nil}), reason: ReasonSchemaViolation, pointer: "/attributes/a"},
		{name: "attribute object", msg: set("attributes", map[string]any{"a/b": map[string]any{}}), reason: ReasonSchemaViolation, pointer: "/attributes/a~1b"},
		{name: "129 attributes", msg: set("attributes", manyAttrs(129)), reason: ReasonSchemaViolation, pointer: "/attributes"},
		{name: "attribute name of 257 characters", msg: set("attributes", map[string]any{strings.Repeat("n", 257): 1}), reason: ReasonSchemaViolation, pointer: "/attributes"},
		{name: "ts too old", msg: set("ts", "2024-01-01T00:00:00Z"), reason: ReasonTimestampOutOfRange, pointer: "/ts"},
		{name: "ts in the future", msg: set("ts", "2026-03-14T17:00:00Z"), reason: ReasonTimestampOutOfRange, pointer: "/ts"},
		{name: "more attributes than configured", msg: set("attributes", manyAttrs(3)), opts: func(o *EventOptions) { o.Limits.MaxAttributes = 2 }, reason: ReasonTooManyAttributes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testEventOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, err := DecodeAuditEvent(tc.msg, opts)
			if r, ok := ReasonOf(err); !ok || r != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.pointer) {
				t.Errorf("error %q does not name %q", err, tc.pointer)
			}
			t.Log(err)
			if len(err.Error()) > 200 {
				t.Errorf("error text of %d bytes", len(err.Error()))
			}
		})
	}
}

type jsonBytes []byte

func (b jsonBytes) replaceAll(old, new string) []byte {
	return []byte(strings.ReplaceAll(string(b), old, new))
}

func TestAuditDecoderValidateWithSchemaChecksBoth(t *testing.T) {
	opts := testEventOptions()
	opts.ValidateWithSchema = true
	dec, err := NewAuditDecoder(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Decode(event(nil)); err != nil {
		t.Errorf("valid event rejected: %v", err)
	}
	_, err = dec.Decode(event(func(m map[string]any) { m["token_type"] = "x" }))
	if r, _ := ReasonOf(err); r != ReasonSchemaViolation {
		t.Errorf("err = %v", err)
	}
	err = dec.ValidateSchema(event(func(m map[string]any) { m["token_type"] = "x" }))
	if r, _ := ReasonOf(err); r != ReasonSchemaViolation || !strings.Contains(err.Error(), "/token_type") {
		t.Errorf("reference: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Unwrap() == nil {
		t.Error("not an *Error")
	}
}

// One AuditDecoder used from many goroutines (it reuses scratch space
// between decodes) gives each caller exactly its own event, attributes
// included; run with -race.
func TestAuditDecoderConcurrentDecodesStaySeparate(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = event(func(m map[string]any) {
			m["agent_id"] = fmt.Sprintf("agent-%d", i)
			attrs := map[string]any{"k": fmt.Sprint(i)}
			for j := range i % 9 {
				attrs[fmt.Sprintf("x%d", j)] = strings.Repeat("v", j)
			}
			m["attributes"] = attrs
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 50 {
				i := (w*7 + r) % n
				ev, err := dec.Decode(msgs[i])
				if err != nil {
					errs <- err
					return
				}
				if ev.AgentID != fmt.Sprintf("agent-%d", i) || ev.Attributes["k"] != fmt.Sprint(i) || len(ev.Attributes) != 1+i%9 {
					errs <- fmt.Errorf("message %d decoded as agent %q, attributes %v", i, ev.AgentID, ev.Attributes)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The two scope lists share one allocation: appending to one must not
// change the other, and a decoder reused for the next event must not
// change the lists of the previous one.
func TestDecodeAuditEventScopeListsAreIndependent(t *testing.T) {
	dec, err := NewAuditDecoder(testEventOptions())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dec.Decode([]byte(fullEvent))
	if err != nil {
		t.Fatal(err)
	}
	_ = append(ev.DelegationScope, "admin:org")
	if !slices.Equal(ev.RequiredScopes, []string{"crm:read"}) {
		t.Fatalf("required scopes = %q after appending to the delegation scope", ev.RequiredScopes)
	}
	next, err := dec.Decode(event(func(m map[string]any) {
		m["delegation_scope"] = []string{"x:1", "x:2", "x:3"}
		m["required_scopes"] = []string{"y:1", "y:2"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ev.DelegationScope, []string{"crm:read", "mail:send"}) || !slices.Equal(ev.RequiredScopes, []string{"crm:read"}) {
		t.Fatalf("first event's scopes changed by the next decode: %q %q", ev.DelegationScope, ev.RequiredScopes)
	}
	if !slices.Equal(next.DelegationScope, []string{"x:1", "x:2", "x:3"}) || !slices.Equal(next.RequiredScopes, []string{"y:1", "y:2"}) {
		t.Fatalf("next event's scopes = %q %q", next.DelegationScope, next.RequiredScopes)
	}
	only, err := dec.Decode(event(func(m map[string]any) { m["required_scopes"] = []string{"z:1"} }))
	if err != nil {
		t.Fatal(err)
	}
	if only.DelegationScope != nil || !slices.Equal(only.RequiredScopes, []string{"z:1"}) {
		t.Fatalf("one list only: %q %q", only.DelegationScope, only.RequiredScopes)
	}
}
